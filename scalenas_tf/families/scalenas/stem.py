"""HRNet's stem (two 3x3 stride-2 conv + BN + ReLU) followed by layer1 (Bottlenecks)."""

import keras

from scalenas_tf.families.scalenas.bottleneck import Bottleneck
from scalenas_tf.layers import common


@keras.saving.register_keras_serializable(package="scalenas")
class Stem(keras.layers.Layer):
    """Downsamples by 4 and runs layer1; output has `4 * channels` channels at 1/4 resolution.

    Args:
        channels: int. Width of the stem convs and layer1's bottleneck width (HRNet: 64).
        num_blocks: int. Bottlenecks in layer1 (HRNet: 4).
        bn_momentum: float. Keras momentum of the BN layers (PyTorch's is `1 - bn_momentum`).

    Call arguments:
        inputs: float tensor `(batch, h, w, 3)`.
        training: bool.
    """

    def __init__(self, channels=64, num_blocks=4, bn_momentum=common.BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.num_blocks = num_blocks
        self.bn_momentum = bn_momentum
        self.conv1 = common.conv2d(channels, 3, strides=2, name=f"{self.name}_conv1")
        self.bn1 = common.batch_norm(f"{self.name}_bn1", bn_momentum)
        self.conv2 = common.conv2d(channels, 3, strides=2, name=f"{self.name}_conv2")
        self.bn2 = common.batch_norm(f"{self.name}_bn2", bn_momentum)
        self.blocks = []
        in_channels = channels
        for n in range(num_blocks):
            self.blocks.append(Bottleneck(in_channels, channels, bn_momentum, name=f"{self.name}_layer1_b{n}"))
            in_channels = self.blocks[-1].out_channels
        self.out_channels = in_channels

    def build(self, input_shape):
        self.conv1.build(common.channels_shape(3))
        for layer in (self.bn1, self.conv2, self.bn2):
            layer.build(common.channels_shape(self.channels))
        for block in self.blocks:
            block.build(common.channels_shape(block.in_channels))

    def call(self, inputs, training=None):
        x = keras.ops.relu(self.bn1(common.call_padded(self.conv1, inputs), training=training))
        x = keras.ops.relu(self.bn2(common.call_padded(self.conv2, x), training=training))
        for block in self.blocks:
            x = block(x, training=training)
        return x

    def extract(self, x):
        for n, (conv, bn) in enumerate(((self.conv1, self.bn1), (self.conv2, self.bn2))):
            x = common.clone_layer(bn, common.clone_padded(conv, x))
            x = keras.layers.ReLU(name=f"{self.name}_relu{n + 1}")(x)
        for block in self.blocks:
            x = block.extract(x)
        return x

    def get_config(self):
        config = super().get_config()
        config.update({"channels": self.channels, "num_blocks": self.num_blocks, "bn_momentum": self.bn_momentum})
        return config
