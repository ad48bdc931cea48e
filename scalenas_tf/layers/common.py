"""Leaf-layer factories shared by the supernet layers, and the cloning used by extraction.

Leaf layers are standard Keras layers with globally unique names; an extracted subnet holds clones
of them (same name, same config, copied weights), so it loads and serves without scalenas_tf.
"""

import keras
import tensorflow as tf

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


@keras.saving.register_keras_serializable(package="scalenas")
class SupernetBatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization whose training pass is one fused op; inference is Keras's own.

    Keras's training pass builds ~40 graph ops per layer (~95 with its gradient); a supernet holds
    hundreds of BN layers inside `tf.cond` branches, so those ops dominated the trace and graph
    optimization time of the train step. `FusedBatchNormV3` is one op (one for its gradient) and
    keeps the moving variance unbiased, as PyTorch's BatchNorm does. Inference goes through
    `keras.layers.BatchNormalization.call`, so an extracted subnet (which holds the standard layer,
    `static_class`) computes exactly what the supernet does.
    """

    static_class = keras.layers.BatchNormalization

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.axis not in (-1, len(inputs.shape) - 1):
            return super().call(inputs, training=training, mask=mask)
        x = inputs if inputs.dtype in (tf.float16, tf.bfloat16, tf.float32) else tf.cast(inputs, tf.float32)
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x,
            tf.cast(self.gamma, tf.float32),
            tf.cast(self.beta, tf.float32),
            mean=tf.cast(self.moving_mean, tf.float32),
            variance=tf.cast(self.moving_variance, tf.float32),
            epsilon=self.epsilon,
            is_training=True,
            exponential_avg_factor=1.0 - self.momentum,
        )
        self.moving_mean.assign(tf.cast(mean, self.moving_mean.dtype))
        self.moving_variance.assign(tf.cast(variance, self.moving_variance.dtype))
        return tf.cast(y, self.compute_dtype)


def batch_norm(name=None):
    return SupernetBatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def strided_pad(x):
    """The symmetric pad of a 3x3 stride-2 conv (PyTorch `padding=1`)."""
    return keras.ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])


def apply_clone(layer, x):
    """Applies a fresh copy of `layer` (same name, config and weights) to the KerasTensor `x`."""
    clone = getattr(layer, "static_class", layer.__class__).from_config(layer.get_config())
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
