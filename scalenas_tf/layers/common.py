"""Leaf-layer factories shared by the supernet layers, and the cloning used by extraction.

Leaf layers are standard Keras layers with globally unique names; an extracted subnet holds clones
of them (same name, same config, copied weights), so it loads and serves without scalenas_tf.
"""

import keras

# PyTorch BatchNorm2d defaults (momentum 0.1 on the new value, eps 1e-5), as in the HRNet code.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def conv2d(filters, kernel_size, strides=1, use_bias=False, name=None):
    """A Conv2D with PyTorch's `padding=k // 2`: "same" at stride 1; stride 2 pads explicitly.

    Stride-2 convs are "valid" after a symmetric 1-pixel zero pad (see `strided_pad`): Keras "same"
    pads only bottom/right for even inputs, which would not match the reference networks.
    """
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same" if strides == 1 else "valid",
        use_bias=use_bias,
        kernel_initializer="he_normal",
        name=name,
    )


def batch_norm(name=None):
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def strided_pad(x):
    """The symmetric pad of a 3x3 stride-2 conv (PyTorch `padding=1`)."""
    return keras.ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])


def apply_clone(layer, x):
    """Applies a fresh copy of `layer` (same name, config and weights) to the KerasTensor `x`."""
    clone = layer.__class__.from_config(layer.get_config())
    y = clone(x)
    clone.set_weights(layer.get_weights())
    return y


def apply_conv_clone(conv, x):
    """`apply_clone` for a conv from `conv2d`, adding the explicit pad for stride 2."""
    if conv.strides[0] != 1:
        x = keras.layers.ZeroPadding2D(1, name=f"{conv.name}_pad")(x)
    return apply_clone(conv, x)


def call_conv(conv, x):
    if conv.strides[0] != 1:
        x = strided_pad(x)
    return conv(x)


def channels_shape(channels):
    return (None, None, None, channels)
