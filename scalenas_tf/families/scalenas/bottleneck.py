"""ResNet's Bottleneck (1x1, 3x3, 1x1; expansion 4) as HRNet uses it in layer1 and the classification head."""

import keras

from scalenas_tf import tasks
from scalenas_tf.layers import common


@keras.saving.register_keras_serializable(package="scalenas")
class Bottleneck(keras.layers.Layer):
    """1x1 conv to `planes`, 3x3 conv, 1x1 conv to `4 * planes`, each with BN; projection shortcut if needed.

    Args:
        in_channels: int. Input channels.
        planes: int. Bottleneck width; the output has `4 * planes` channels.
        bn_momentum: float. Keras momentum of the BN layers (PyTorch's is `1 - bn_momentum`).

    Call arguments:
        inputs: float tensor `(batch, h, w, in_channels)`.
        training: bool.

    Reference:
        He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    """

    def __init__(self, in_channels, planes, bn_momentum=common.BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("in_channels", in_channels), ("planes", planes)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={value!r}")
        self.in_channels = in_channels
        self.planes = planes
        self.bn_momentum = bn_momentum
        self.out_channels = planes * tasks.BOTTLENECK_EXPANSION
        self.conv1 = common.conv2d(planes, 1, name=f"{self.name}_conv1")
        self.bn1 = common.batch_norm(f"{self.name}_bn1", bn_momentum)
        self.conv2 = common.conv2d(planes, 3, name=f"{self.name}_conv2")
        self.bn2 = common.batch_norm(f"{self.name}_bn2", bn_momentum)
        self.conv3 = common.conv2d(self.out_channels, 1, name=f"{self.name}_conv3")
        self.bn3 = common.batch_norm(f"{self.name}_bn3", bn_momentum)
        self.has_projection = in_channels != self.out_channels
        if self.has_projection:
            self.down_conv = common.conv2d(self.out_channels, 1, name=f"{self.name}_down_conv")
            self.down_bn = common.batch_norm(f"{self.name}_down_bn", bn_momentum)

    def build(self, input_shape):
        self.conv1.build(common.channels_shape(self.in_channels))
        self.bn1.build(common.channels_shape(self.planes))
        self.conv2.build(common.channels_shape(self.planes))
        self.bn2.build(common.channels_shape(self.planes))
        self.conv3.build(common.channels_shape(self.planes))
        self.bn3.build(common.channels_shape(self.out_channels))
        if self.has_projection:
            self.down_conv.build(common.channels_shape(self.in_channels))
            self.down_bn.build(common.channels_shape(self.out_channels))

    def call(self, inputs, training=None):
        y = keras.ops.relu(self.bn1(self.conv1(inputs), training=training))
        y = keras.ops.relu(self.bn2(self.conv2(y), training=training))
        y = self.bn3(self.conv3(y), training=training)
        shortcut = self.down_bn(self.down_conv(inputs), training=training) if self.has_projection else inputs
        return keras.ops.relu(y + shortcut)

    def extract(self, x):
        """Applies this block to the KerasTensor `x` with cloned standard layers."""
        y = x
        for i, (conv, bn) in enumerate(((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3))):
            y = common.clone_layer(bn, common.clone_layer(conv, y))
            if i < 2:
                y = keras.layers.ReLU(name=f"{self.name}_relu{i + 1}")(y)
        shortcut = x
        if self.has_projection:
            shortcut = common.clone_layer(self.down_bn, common.clone_layer(self.down_conv, x))
        y = keras.layers.Add(name=f"{self.name}_add")([y, shortcut])
        return keras.layers.ReLU(name=f"{self.name}_relu3")(y)

    def get_config(self):
        config = super().get_config()
        config.update({"in_channels": self.in_channels, "planes": self.planes, "bn_momentum": self.bn_momentum})
        return config
