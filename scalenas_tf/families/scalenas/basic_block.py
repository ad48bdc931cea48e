"""HRNet's BasicBlock: two 3x3 conv + BN with an identity shortcut."""

import keras

from scalenas_tf.layers import common


@keras.saving.register_keras_serializable(package="scalenas")
class BasicBlock(keras.layers.Layer):
    """3x3 conv, BN, ReLU, 3x3 conv, BN, add the input, ReLU (input and output have `filters` channels).

    Args:
        filters: int. Input and output channels.
        bn_momentum: float. Keras momentum of the BN layers (PyTorch's is `1 - bn_momentum`).

    Call arguments:
        inputs: float tensor `(batch, h, w, filters)`.
        training: bool.

    Reference:
        He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    """

    def __init__(self, filters, bn_momentum=common.BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(filters, int) or filters < 1:
            raise ValueError(f"`filters` must be a positive int. Received: filters={filters!r}")
        self.filters = filters
        self.bn_momentum = bn_momentum
        self.conv1 = common.conv2d(filters, 3, name=f"{self.name}_conv1")
        self.bn1 = common.batch_norm(f"{self.name}_bn1", bn_momentum)
        self.conv2 = common.conv2d(filters, 3, name=f"{self.name}_conv2")
        self.bn2 = common.batch_norm(f"{self.name}_bn2", bn_momentum)

    def build(self, input_shape):
        shape = common.channels_shape(self.filters)
        for layer in (self.conv1, self.bn1, self.conv2, self.bn2):
            layer.build(shape)

    def call(self, inputs, training=None):
        y = keras.ops.relu(self.bn1(self.conv1(inputs), training=training))
        y = self.bn2(self.conv2(y), training=training)
        return keras.ops.relu(y + inputs)

    def extract(self, x):
        """Applies this block to the KerasTensor `x` with cloned standard layers."""
        y = common.clone_layer(self.conv1, x)
        y = common.clone_layer(self.bn1, y)
        y = keras.layers.ReLU(name=f"{self.name}_relu1")(y)
        y = common.clone_layer(self.conv2, y)
        y = common.clone_layer(self.bn2, y)
        y = keras.layers.Add(name=f"{self.name}_add")([y, x])
        return keras.layers.ReLU(name=f"{self.name}_relu2")(y)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "bn_momentum": self.bn_momentum})
        return config
