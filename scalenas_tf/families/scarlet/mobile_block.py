"""Mobile building blocks of the SCARLET space: the inverted-residual choice block and the ELS."""

import keras
import tensorflow as tf

from scalenas_tf.families.scarlet.stabilizer import fold_into_projection
from scalenas_tf.layers import common

ACTIVATIONS = {"hswish": "hard_silu", "relu6": "relu6"}


def activation_name(name):
    """`"hswish"` / `"relu6"` -> the Keras activation name the static model uses."""
    if name not in ACTIVATIONS:
        raise ValueError(f"`activation` must be one of {sorted(ACTIVATIONS)}. Received: activation={name!r}")
    return ACTIVATIONS[name]


@keras.saving.register_keras_serializable(package="scalenas")
class MobileBlock(keras.layers.Layer):
    """Inverted residual (MobileNetV2/V3): 1x1 expand, k x k depthwise, optional SE, 1x1 linear project.

    expand conv (C_in -> round(C_in * e)), BN, act; depthwise k x k with `strides`, BN, act; SE on
    the expanded tensor (avg pool, 1x1 conv + bias to hidden // 4, ReLU, 1x1 conv + bias back,
    hard sigmoid, multiply); project conv to `filters`, BN; plus the input when stride is 1 and the
    width is unchanged.

    Args:
        in_channels, filters: ints. Input and output channels.
        kernel_size: odd int. expand_ratio: int >= 2. use_se: bool. strides: 1 or 2.
        activation: `"hswish"` or `"relu6"`.

    Call arguments:
        inputs: float tensor `(batch, h, w, in_channels)`; training: bool.

    Reference:
        Sandler et al., "MobileNetV2", CVPR 2018; Howard et al., "Searching for MobileNetV3", ICCV 2019.
    """

    def __init__(
        self,
        in_channels,
        filters,
        kernel_size=3,
        expand_ratio=6,
        use_se=False,
        strides=1,
        activation="hswish",
        **kwargs,
    ):
        super().__init__(**kwargs)
        activation_name(activation)
        self.in_channels, self.filters = int(in_channels), int(filters)
        self.kernel_size, self.expand_ratio = int(kernel_size), int(expand_ratio)
        self.use_se, self.strides, self.activation = bool(use_se), int(strides), activation
        self.hidden = int(round(self.in_channels * self.expand_ratio))
        self.residual = self.strides == 1 and self.in_channels == self.filters
        n = self.name
        self.expand_conv = common.conv2d(self.hidden, 1, name=f"{n}_expand")
        self.expand_bn = common.batch_norm(f"{n}_expand_bn")
        self.dw_conv = common.depthwise(self.kernel_size, self.strides, name=f"{n}_dw")
        self.dw_bn = common.batch_norm(f"{n}_dw_bn")
        if self.use_se:
            squeeze = max(1, self.hidden // 4)
            self.se_reduce = keras.layers.Conv2D(squeeze, 1, name=f"{n}_se_reduce")
            self.se_expand = keras.layers.Conv2D(self.hidden, 1, name=f"{n}_se_expand")
        self.project_conv = common.conv2d(self.filters, 1, name=f"{n}_project")
        self.project_bn = common.batch_norm(f"{n}_project_bn")

    def build(self, input_shape=None):
        hidden = common.channels_shape(self.hidden)
        self.expand_conv.build(common.channels_shape(self.in_channels))
        for layer in (self.expand_bn, self.dw_conv, self.dw_bn):
            layer.build(hidden)
        if self.use_se:
            self.se_reduce.build((None, 1, 1, self.hidden))
            self.se_expand.build((None, 1, 1, self.se_reduce.filters))
        self.project_conv.build(hidden)
        self.project_bn.build(common.channels_shape(self.filters))

    def _act(self, x):
        return keras.ops.hard_silu(x) if self.activation == "hswish" else keras.ops.relu6(x)

    def call(self, inputs, training=None, group=None, index=None):
        """The block; with `group` (blocks of one layer that differ from this one only in kernel size, this
        one first) and `index` (scalar int tensor), the chosen block of `group` as one computation: its
        weights gathered (`common.call_chosen`), the depthwise conv a `tf.switch_case` over kernel sizes.
        Same arithmetic as calling the chosen block; the others' weights and BN statistics stay."""
        blocks = (self,) if group is None else tuple(group)

        def run(name, x, **kwargs):
            return common.call_chosen([getattr(b, name) for b in blocks], index, x, **kwargs)

        y = self._act(run("expand_bn", run("expand_conv", inputs), training=training))
        if len(blocks) == 1:
            y = common.call_padded(self.dw_conv, y)
        else:
            y = tf.switch_case(index, [lambda b=b: common.call_padded(b.dw_conv, y) for b in blocks])
        y = self._act(run("dw_bn", y, training=training))
        if self.use_se:
            s = keras.ops.mean(y, axis=(1, 2), keepdims=True)
            s = keras.ops.hard_sigmoid(run("se_expand", keras.ops.relu(run("se_reduce", s))))
            y = y * s
        y = run("project_bn", run("project_conv", y), training=training)
        return y + inputs if self.residual else y

    def shares_compute_with(self, other):
        """True when `other` differs from this block only in kernel size: the two can run as one `group`."""
        keys = ("in_channels", "filters", "expand_ratio", "use_se", "strides", "activation")
        return all(getattr(self, k) == getattr(other, k) for k in keys)

    def extract(self, x, expand_kernel=None, project_fold=None):
        """Applies this block to the KerasTensor `x` with cloned standard layers.

        Args:
            expand_kernel: replaces the expand conv's kernel (an ELS folded forward into it).
            project_fold: `W (filters, C')`, an ELS folded backward: the project conv and its BN
                then compute `BN(P h) @ W` (see `fold_into_projection`).
        """
        act = activation_name(self.activation)
        n = self.name
        y = common.clone_layer(self.expand_conv, x, None if expand_kernel is None else [expand_kernel])
        y = common.clone_layer(self.expand_bn, y)
        y = keras.layers.Activation(act, name=f"{n}_expand_act")(y)
        y = common.clone_padded(self.dw_conv, y)
        y = common.clone_layer(self.dw_bn, y)
        y = keras.layers.Activation(act, name=f"{n}_dw_act")(y)
        if self.use_se:
            s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{n}_se_pool")(y)
            s = common.clone_layer(self.se_reduce, s)
            s = keras.layers.ReLU(name=f"{n}_se_relu")(s)
            s = common.clone_layer(self.se_expand, s)
            s = keras.layers.Activation("hard_sigmoid", name=f"{n}_se_gate")(s)
            y = keras.layers.Multiply(name=f"{n}_se_mul")([y, s])
        if project_fold is None:
            y = common.clone_layer(self.project_conv, y)
            y = common.clone_layer(self.project_bn, y)
        else:
            kernel, bn_weights = fold_into_projection(self.project_conv, self.project_bn, project_fold)
            y = common.clone_layer(self.project_conv, y, [kernel])
            y = common.clone_layer(self.project_bn, y, bn_weights)
        if self.residual:
            if project_fold is not None:
                raise ValueError(f"{n}: an ELS cannot fold backward into a block with a residual add")
            y = keras.layers.Add(name=f"{n}_add")([y, x])
        return y

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "in_channels": self.in_channels,
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "expand_ratio": self.expand_ratio,
                "use_se": self.use_se,
                "strides": self.strides,
                "activation": self.activation,
            }
        )
        return config
