"""The plain Keras model of a generated ScaleNet network (what extraction fills and export serves).

Built from `space.generate(arch)` alone, with standard Keras layers only, so the model loads and
serves without scalenas_tf. Layer names follow the block list: `stem_conv`, `s3b2_expand`,
`s3b2_dw`, `s3b2_se_reduce`, `head_conv`, `classifier`, ... Strided convs pad k // 2 on every side
first (PyTorch's convention, which the official and timm models use; Keras "same" would pad only
bottom/right), so feature sizes are ceil(h / 2) and weights copied from PyTorch give the same outputs.
"""

from __future__ import annotations

import keras

from scalenas_tf.families.scalenet.space import Block
from scalenas_tf.families.scalenet.space import Network
from scalenas_tf.layers import common

ACTIVATIONS = {"hswish": "hard_silu", "swish": "silu", "relu": "relu"}


def _conv(x, filters, kernel, stride, name, groups=None, bias=False):
    if stride != 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    padding = "same" if stride == 1 else "valid"
    if groups:
        layer = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding=padding, use_bias=bias, name=name)
    else:
        layer = keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=bias, name=name)
    return layer(x)


def _bn(x, name):
    return keras.layers.BatchNormalization(momentum=common.BN_MOMENTUM, epsilon=common.BN_EPSILON, name=name)(x)


def _block(x, block: Block, space, name: str):
    act = ACTIVATIONS[space.activation]
    y = x
    if block.has_expand:
        y = _conv(y, block.hidden, 1, 1, f"{name}_expand")
        y = keras.layers.Activation(act, name=f"{name}_expand_act")(_bn(y, f"{name}_expand_bn"))
    y = _conv(y, None, block.kernel, block.stride, f"{name}_dw", groups=True)
    y = keras.layers.Activation(act, name=f"{name}_dw_act")(_bn(y, f"{name}_dw_bn"))
    if block.se:
        s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(y)
        s = keras.layers.Conv2D(block.squeeze, 1, name=f"{name}_se_reduce")(s)
        s = keras.layers.Activation(ACTIVATIONS[space.se_activation], name=f"{name}_se_act")(s)
        s = keras.layers.Conv2D(block.hidden, 1, name=f"{name}_se_expand")(s)
        s = keras.layers.Activation(space.se_gate, name=f"{name}_se_gate")(s)
        y = keras.layers.Multiply(name=f"{name}_se_mul")([y, s])
    y = _bn(_conv(y, block.out_channels, 1, 1, f"{name}_project"), f"{name}_project_bn")
    if block.residual:
        y = keras.layers.Add(name=f"{name}_add")([y, x])
    return y


def block_name(block: Block) -> str:
    """`s{stage}b{slot}`, 1-based as in the paper (`s3b2`: stage 3, second block)."""
    return f"s{block.stage + 1}b{block.slot + 1}"


def build_network(space, net: Network, num_classes: int = 1000, input_size=None, name: str = "scalenet") -> keras.Model:
    """A functional Keras model of `net` (from `space.generate`), returning logits.

    Args:
        space: the `ScaleNetSpace` whose activations the model uses.
        net: the generated network.
        num_classes: classifier outputs.
        input_size: `(height, width)`; default `(net.resolution, net.resolution)`. `(None, None)`
            gives a model for any size.
        name: the model's name.
    """
    h, w = (net.resolution, net.resolution) if input_size is None else input_size
    act = ACTIVATIONS[space.activation]
    inputs = keras.Input((h, w, 3), name="image")
    x = _conv(inputs, net.stem_channels, 3, 2, "stem_conv")
    x = keras.layers.Activation(act, name="stem_act")(_bn(x, "stem_bn"))
    for block in net.blocks:
        x = _block(x, block, space, block_name(block))
    x = _conv(x, net.head_channels, 1, 1, "head_conv")
    x = keras.layers.Activation(act, name="head_act")(_bn(x, "head_bn"))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)
