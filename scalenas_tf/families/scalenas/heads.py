"""Task heads on the multi-resolution features: classification (HRNet), segmentation (HRNetV2), pose."""

import keras
import tensorflow as tf

from scalenas_tf import tasks
from scalenas_tf.families.scalenas.bottleneck import Bottleneck
from scalenas_tf.layers import common


@keras.saving.register_keras_serializable(package="scalenas")
class PoseHead(keras.layers.Layer):
    """Top-down pose heatmaps: a 1x1 conv with bias from branch 0 to one map per joint.

    Args:
        branch_channels: tuple of ints (only branch 0 is read).
        num_classes: int. Number of joints (COCO: 17).

    Call arguments:
        inputs: list of branch tensors; returns `(batch, h/4, w/4, num_classes)` heatmaps.
    """

    def __init__(self, branch_channels, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.branch_channels = tuple(branch_channels)
        self.num_classes = num_classes
        self.conv = common.conv2d(num_classes, 1, use_bias=True, name=f"{self.name}_conv")

    def build(self, input_shape):
        self.conv.build(common.channels_shape(self.branch_channels[0]))

    def call(self, inputs, training=None):
        return self.conv(inputs[0])

    def extract(self, xs):
        return common.clone_layer(self.conv, xs[0])

    def get_config(self):
        config = super().get_config()
        config.update({"branch_channels": self.branch_channels, "num_classes": self.num_classes})
        return config


@keras.saving.register_keras_serializable(package="scalenas")
class SegmentationHead(keras.layers.Layer):
    """HRNetV2: bilinear-upsample every branch to branch 0, concat, 1x1 conv + BN + ReLU, 1x1 conv.

    Args:
        branch_channels: tuple of ints.
        num_classes: int (Cityscapes: 19).
        bn_momentum: float. Keras momentum of the BN layers (PyTorch's is `1 - bn_momentum`).

    Call arguments:
        inputs: list of branch tensors; returns `(batch, h/4, w/4, num_classes)` logits.
    """

    def __init__(self, branch_channels, num_classes, bn_momentum=common.BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        self.branch_channels = tuple(branch_channels)
        self.num_classes = num_classes
        self.bn_momentum = bn_momentum
        total = sum(self.branch_channels)
        self.conv1 = common.conv2d(total, 1, use_bias=True, name=f"{self.name}_conv1")
        self.bn1 = common.batch_norm(f"{self.name}_bn1", bn_momentum)
        self.conv2 = common.conv2d(num_classes, 1, use_bias=True, name=f"{self.name}_conv2")

    def build(self, input_shape):
        total = sum(self.branch_channels)
        for layer in (self.conv1, self.bn1, self.conv2):
            layer.build(common.channels_shape(total))

    def call(self, inputs, training=None):
        size = tf.shape(inputs[0])[1:3]
        ups = [inputs[0]] + [tf.image.resize(x, size, method="bilinear") for x in inputs[1:]]
        x = keras.ops.concatenate(ups, axis=-1)
        x = keras.ops.relu(self.bn1(self.conv1(x), training=training))
        return self.conv2(x)

    def extract(self, xs):
        h, w = xs[0].shape[1:3]
        # training=False: Resizing's call defaults to training=True, which Keras would hand on to the
        # BN after it, so a plain `model(x)` would update the moving statistics.
        ups = [xs[0]] + [
            keras.layers.Resizing(h, w, interpolation="bilinear", name=f"{self.name}_up{i}")(x, training=False)
            for i, x in enumerate(xs[1:], start=1)
        ]
        x = keras.layers.Concatenate(name=f"{self.name}_concat")(ups)
        x = common.clone_layer(self.bn1, common.clone_layer(self.conv1, x))
        x = keras.layers.ReLU(name=f"{self.name}_relu")(x)
        return common.clone_layer(self.conv2, x)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"branch_channels": self.branch_channels, "num_classes": self.num_classes, "bn_momentum": self.bn_momentum}
        )
        return config


@keras.saving.register_keras_serializable(package="scalenas")
class ClassificationHead(keras.layers.Layer):
    """HRNet's classification head (timm `hrnet_w*`): per-branch Bottlenecks chained by stride-2 convs.

    Branch i goes through a Bottleneck to `4 * CLS_HEAD_CHANNELS[i]`; from the highest resolution a
    3x3 stride-2 conv (bias) + BN + ReLU carries the sum down one branch at a time; a 1x1 conv (bias)
    + BN + ReLU to 2048 features, global average pooling and a dense classifier follow.

    Args:
        branch_channels: tuple of ints (at most 4 branches).
        num_classes: int (ImageNet: 1000).
        bn_momentum: float. Keras momentum of the BN layers (PyTorch's is `1 - bn_momentum`).

    Call arguments:
        inputs: list of branch tensors; returns `(batch, num_classes)` logits.
    """

    def __init__(self, branch_channels, num_classes, bn_momentum=common.BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        self.branch_channels = tuple(branch_channels)
        self.num_classes = num_classes
        self.bn_momentum = bn_momentum
        head = tasks.CLS_HEAD_CHANNELS
        if len(self.branch_channels) > len(head):
            raise ValueError(
                f"The classification head supports up to {len(head)} branches. "
                f"Received: branch_channels={branch_channels}"
            )
        self.incre = [
            Bottleneck(c, head[i], bn_momentum, name=f"{self.name}_incre{i}")
            for i, c in enumerate(self.branch_channels)
        ]
        self.down_convs, self.down_bns = [], []
        for i in range(len(self.branch_channels) - 1):
            self.down_convs.append(
                common.conv2d(
                    self.incre[i + 1].out_channels, 3, strides=2, use_bias=True, name=f"{self.name}_down{i}_conv"
                )
            )
            self.down_bns.append(common.batch_norm(f"{self.name}_down{i}_bn", bn_momentum))
        self.final_conv = common.conv2d(tasks.CLS_NUM_FEATURES, 1, use_bias=True, name=f"{self.name}_final_conv")
        self.final_bn = common.batch_norm(f"{self.name}_final_bn", bn_momentum)
        self.classifier = keras.layers.Dense(num_classes, name=f"{self.name}_classifier")

    def build(self, input_shape):
        for block in self.incre:
            block.build(common.channels_shape(block.in_channels))
        for i, (conv, bn) in enumerate(zip(self.down_convs, self.down_bns)):
            conv.build(common.channels_shape(self.incre[i].out_channels))
            bn.build(common.channels_shape(conv.filters))
        self.final_conv.build(common.channels_shape(self.incre[-1].out_channels))
        self.final_bn.build(common.channels_shape(tasks.CLS_NUM_FEATURES))
        self.classifier.build((None, tasks.CLS_NUM_FEATURES))

    def call(self, inputs, training=None):
        y = self.incre[0](inputs[0], training=training)
        for i, (conv, bn) in enumerate(zip(self.down_convs, self.down_bns)):
            down = keras.ops.relu(bn(common.call_padded(conv, y), training=training))
            y = self.incre[i + 1](inputs[i + 1], training=training) + down
        y = keras.ops.relu(self.final_bn(self.final_conv(y), training=training))
        return self.classifier(keras.ops.mean(y, axis=(1, 2)))

    def extract(self, xs):
        y = self.incre[0].extract(xs[0])
        for i, (conv, bn) in enumerate(zip(self.down_convs, self.down_bns)):
            down = common.clone_layer(bn, common.clone_padded(conv, y))
            down = keras.layers.ReLU(name=f"{self.name}_down{i}_relu")(down)
            y = keras.layers.Add(name=f"{self.name}_down{i}_add")([self.incre[i + 1].extract(xs[i + 1]), down])
        y = common.clone_layer(self.final_bn, common.clone_layer(self.final_conv, y))
        y = keras.layers.ReLU(name=f"{self.name}_final_relu")(y)
        y = keras.layers.GlobalAveragePooling2D(name=f"{self.name}_pool")(y)
        return common.clone_layer(self.classifier, y)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"branch_channels": self.branch_channels, "num_classes": self.num_classes, "bn_momentum": self.bn_momentum}
        )
        return config


HEADS = {"cls": ClassificationHead, "seg": SegmentationHead, "pose": PoseHead}


def make_head(task, branch_channels, num_classes, name="head", bn_momentum=common.BN_MOMENTUM):
    tasks.validate_task(task, num_classes)
    if task == "pose":  # a single conv, no BN
        return PoseHead(branch_channels, num_classes, name=name)
    return HEADS[task](branch_channels, num_classes, bn_momentum=bn_momentum, name=name)
