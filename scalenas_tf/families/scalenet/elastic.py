"""Elastic-width layers of the ScaleNet super-supernet: max-capacity weights, channels sliced per call.

Each layer holds the weights of its widest use and runs on the leading channels a call asks for
(`kernel[..., :c_in, :c_out]`), so a narrow subnet costs a narrow subnet's compute. The widths are
Python ints when the arch is known while tracing, scalar int tensors otherwise (then the channel
dimension of every activation is dynamic). `masks(...)` names the weight entries a call with given
widths uses, so sparse updates and BN recalibration leave the rest bit-exact.

Convolutions pad k // 2 on every side before a strided conv (PyTorch's convention), as the plain
Keras network (`network.py`) does, so extraction copies slices and gets the same function.
"""

import keras
import tensorflow as tf

from scalenas_tf.layers import common

ACTIVATIONS = {"hswish": keras.ops.hard_silu, "swish": keras.ops.silu, "relu": keras.ops.relu}
GATES = {"hard_sigmoid": keras.ops.hard_sigmoid, "sigmoid": keras.ops.sigmoid}


def channel_mask(width, capacity):
    """Bool `(capacity,)`: true for the first `width` channels."""
    return tf.sequence_mask(width, capacity)


def conv(x, kernel, stride=1, out_channels=None, depthwise=False):
    """`x` convolved with the leading slice of `kernel` (`(k, k, C_in_max, C_out_max)`, or
    `(k, k, C_max, 1)` depthwise) that fits `x`'s channels and `out_channels`."""
    k = int(kernel.shape[0])
    c_in = x.shape[-1] if x.shape[-1] is not None else tf.shape(x)[-1]
    padding = "SAME"
    if stride != 1:
        pad = k // 2
        x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        padding = "VALID"
    if depthwise:
        return tf.nn.depthwise_conv2d(x, kernel[:, :, :c_in, :], [1, stride, stride, 1], padding)
    return tf.nn.conv2d(x, kernel[:, :, :c_in, :out_channels], stride, padding)


@keras.saving.register_keras_serializable(package="scalenas")
class ElasticBatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization over the leading channels of a `channels`-wide capacity.

    Training normalizes with the batch statistics (one fused op) and moves only the used channels'
    moving statistics (momentum as Keras's, unbiased variance as PyTorch's); inference uses the
    sliced moving statistics with Keras's own formula, so a standard BatchNormalization holding the
    slices computes the same.

    Args:
        channels: int, the capacity.
    """

    def __init__(self, channels, momentum=common.BN_MOMENTUM, epsilon=common.BN_EPSILON, **kwargs):
        super().__init__(momentum=momentum, epsilon=epsilon, **kwargs)
        self.channels = int(channels)

    def build(self, input_shape=None):
        super().build((None, None, None, self.channels))
        self.input_spec = None  # calls use the leading channels: any width up to `channels`

    def call(self, inputs, training=None, mask=None):
        c = inputs.shape[-1] if inputs.shape[-1] is not None else tf.shape(inputs)[-1]
        gamma, beta = self.gamma[:c], self.beta[:c]
        mean, variance = self.moving_mean[:c], self.moving_variance[:c]
        if not (training and self.trainable):
            return keras.ops.batch_normalization(inputs, mean, variance, -1, beta, gamma, self.epsilon)
        y, new_mean, new_variance = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            gamma,
            beta,
            mean=mean,
            variance=variance,
            epsilon=self.epsilon,
            is_training=True,
            exponential_avg_factor=1.0 - self.momentum,
        )
        self.moving_mean.assign(tf.concat([new_mean, self.moving_mean[c:]], 0))
        self.moving_variance.assign(tf.concat([new_variance, self.moving_variance[c:]], 0))
        return y

    def masks(self, width, on=True):
        """`(variable, mask)` for the channels a call of `width` uses (and-ed with `on`)."""
        used = tf.logical_and(channel_mask(width, self.channels), on)
        return [(v, used) for v in (self.gamma, self.beta, self.moving_mean, self.moving_variance)]

    def sliced_weights(self, width):
        """The four weights (gamma, beta, moving mean, moving variance) of the first `width` channels."""
        return [w.numpy()[:width] for w in (self.gamma, self.beta, self.moving_mean, self.moving_variance)]

    def get_config(self):
        config = super().get_config()
        config["channels"] = self.channels
        return config


@keras.saving.register_keras_serializable(package="scalenas")
class ElasticConv(keras.layers.Layer):
    """A k x k conv without bias from `in_channels` to `filters` (capacities), sliced to the input's
    width and `out_channels`; the stem and head convs.

    Args:
        in_channels, filters: capacities. kernel_size: odd int. strides: 1 or 2.
    """

    def __init__(self, in_channels, filters, kernel_size=1, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.filters = int(in_channels), int(filters)
        self.kernel_size, self.strides = int(kernel_size), int(strides)

    def build(self, input_shape=None):
        k = self.kernel_size
        self.kernel = self.add_weight(
            shape=(k, k, self.in_channels, self.filters), initializer="he_normal", name="kernel"
        )

    def call(self, inputs, out_channels=None):
        return conv(inputs, self.kernel, self.strides, self.filters if out_channels is None else out_channels)

    def masks(self, in_width, out_width, on=True):
        used = channel_mask(in_width, self.in_channels)[:, None] & channel_mask(out_width, self.filters)[None, :]
        return [(self.kernel, tf.logical_and(used, on)[None, None])]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "in_channels": self.in_channels,
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="scalenas")
class ElasticMBConv(keras.layers.Layer):
    """One choice op of a super-supernet slot: an MBConv (`K{kernel}E{expand}[+SE]`) at max capacity.

    1x1 expand conv (absent when `expand` is 1), BN, act; k x k depthwise with `strides`, BN, act;
    optional SE (mean, 1x1 conv + bias, act, 1x1 conv + bias, gate, multiply); 1x1 project, BN; plus
    the input when `residual`. A call runs the leading `hidden` / `squeeze` / `out_channels` channels
    of a subnet's block (its input width is the input's).

    Args:
        in_channels, out_channels, hidden, squeeze: capacities (squeeze 0 without SE).
        kernel_size, expand, strides: the op. use_se: bool. residual: bool (stride 1, same base width).
        activation, se_activation, se_gate: names in `ACTIVATIONS` / `GATES`.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        hidden,
        squeeze,
        kernel_size,
        expand,
        use_se,
        strides=1,
        residual=False,
        activation="hswish",
        se_activation="relu",
        se_gate="hard_sigmoid",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.hidden, self.squeeze = int(hidden), int(squeeze)
        self.kernel_size, self.expand, self.use_se = int(kernel_size), int(expand), bool(use_se)
        self.strides, self.residual = int(strides), bool(residual)
        self.activation, self.se_activation, self.se_gate = activation, se_activation, se_gate
        n = self.name
        if self.expand != 1:
            self.expand_bn = ElasticBatchNorm(self.hidden, name=f"{n}_expand_bn")
        self.dw_bn = ElasticBatchNorm(self.hidden, name=f"{n}_dw_bn")
        self.project_bn = ElasticBatchNorm(self.out_channels, name=f"{n}_project_bn")

    def build(self, input_shape=None):
        hid, k = self.hidden, self.kernel_size
        if self.expand != 1:
            self.expand_kernel = self.add_weight(
                shape=(1, 1, self.in_channels, hid), initializer="he_normal", name="expand_kernel"
            )
            self.expand_bn.build()
        self.dw_kernel = self.add_weight(shape=(k, k, hid, 1), initializer="he_normal", name="dw_kernel")
        self.dw_bn.build()
        if self.use_se:
            sq = self.squeeze
            self.se_reduce_kernel = self.add_weight(
                shape=(1, 1, hid, sq), initializer="glorot_uniform", name="se_reduce_kernel"
            )
            self.se_reduce_bias = self.add_weight(shape=(sq,), initializer="zeros", name="se_reduce_bias")
            self.se_expand_kernel = self.add_weight(
                shape=(1, 1, sq, hid), initializer="glorot_uniform", name="se_expand_kernel"
            )
            self.se_expand_bias = self.add_weight(shape=(hid,), initializer="zeros", name="se_expand_bias")
        self.project_kernel = self.add_weight(
            shape=(1, 1, hid, self.out_channels), initializer="he_normal", name="project_kernel"
        )
        self.project_bn.build()

    def call(self, inputs, out_channels, hidden, squeeze, training=None, group=None, index=None):
        """The op at the given widths; with `group` (ops of one slot that differ from this one only in
        kernel size, this one first) and `index` (scalar int tensor), the chosen op of `group`: its
        weights gathered into one computation, the depthwise conv a `tf.switch_case` over the kernel
        sizes. Same arithmetic as calling the chosen op; the others' weights and BN statistics stay."""
        ops = (self,) if group is None else tuple(group)
        act = ACTIVATIONS[self.activation]

        def weight(name):
            return common.chosen([getattr(op, name) for op in ops], index)

        def norm(name, x):
            return common.call_chosen([getattr(op, name) for op in ops], index, x, training=training)

        y = inputs
        if self.expand != 1:
            y = act(norm("expand_bn", conv(y, weight("expand_kernel"), out_channels=hidden)))
        if len(ops) == 1:
            y = conv(y, self.dw_kernel, self.strides, depthwise=True)
        else:
            depthwise = [lambda op=op: conv(y, op.dw_kernel, self.strides, depthwise=True) for op in ops]
            y = tf.switch_case(index, depthwise)
        y = act(norm("dw_bn", y))
        if self.use_se:
            s = tf.reduce_mean(y, axis=(1, 2), keepdims=True)
            s = conv(s, weight("se_reduce_kernel"), out_channels=squeeze) + weight("se_reduce_bias")[:squeeze]
            s = ACTIVATIONS[self.se_activation](s)
            s = conv(s, weight("se_expand_kernel"), out_channels=hidden) + weight("se_expand_bias")[:hidden]
            y = y * GATES[self.se_gate](s)
        y = norm("project_bn", conv(y, weight("project_kernel"), out_channels=out_channels))
        return y + inputs if self.residual else y

    def shares_compute_with(self, other):
        """True when `other` differs from this op only in kernel size (same capacities, expand, SE,
        strides, residual and activations): the two can run as one `group` call."""
        keys = ("in_channels", "out_channels", "hidden", "squeeze", "expand", "use_se", "strides", "residual")
        keys += ("activation", "se_activation", "se_gate")
        return all(getattr(self, k) == getattr(other, k) for k in keys)

    def masks(self, in_width, out_width, hidden, squeeze, on=True):
        """`(variable, mask)` for every weight, true where a call with these widths reads it (and `on`)."""
        c_in = channel_mask(in_width, self.in_channels)
        hid = channel_mask(hidden, self.hidden)
        out = channel_mask(out_width, self.out_channels)

        def outer(a, b):
            return tf.logical_and(a[:, None] & b[None, :], on)[None, None]

        pairs = []
        if self.expand != 1:
            pairs += [(self.expand_kernel, outer(c_in, hid))] + self.expand_bn.masks(hidden, on)
        pairs += [(self.dw_kernel, tf.logical_and(hid, on)[None, None, :, None])] + self.dw_bn.masks(hidden, on)
        if self.use_se:
            sq = channel_mask(squeeze, self.squeeze)
            pairs += [
                (self.se_reduce_kernel, outer(hid, sq)),
                (self.se_reduce_bias, tf.logical_and(sq, on)),
                (self.se_expand_kernel, outer(sq, hid)),
                (self.se_expand_bias, tf.logical_and(hid, on)),
            ]
        pairs += [(self.project_kernel, outer(hid, out))] + self.project_bn.masks(out_width, on)
        return pairs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "in_channels": self.in_channels,
                "out_channels": self.out_channels,
                "hidden": self.hidden,
                "squeeze": self.squeeze,
                "kernel_size": self.kernel_size,
                "expand": self.expand,
                "use_se": self.use_se,
                "strides": self.strides,
                "residual": self.residual,
                "activation": self.activation,
                "se_activation": self.se_activation,
                "se_gate": self.se_gate,
            }
        )
        return config
