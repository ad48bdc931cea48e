"""SCARLET's Equivariant Learnable Stabilizer (ELS) and the pure fold math extraction applies to it."""

import keras
import numpy as np

from scalenas_tf.layers import common


@keras.saving.register_keras_serializable(package="scalenas")
class Stabilizer(keras.layers.Layer):
    """SCARLET's Equivariant Learnable Stabilizer: the identity choice as a 1x1 conv (no bias, BN or
    activation), linear so that extraction folds it into a neighbouring conv.

    With `strides=2` a 3x3 stride-2 max pooling ("same" padding) comes first (the LET paper's
    downsampling rule); a width change is carried by the conv.

    Args:
        in_channels, filters: ints. strides: 1 or 2.

    Reference:
        Chu et al., "SCARLET-NAS", ICCV-W 2021 (ELS); Chu et al., "Learnable Equivariant Transforms"
        (LET, the downsampling rule).
    """

    def __init__(self, in_channels, filters, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.filters, self.strides = int(in_channels), int(filters), int(strides)
        self.conv = common.conv2d(self.filters, 1, name=f"{self.name}_conv")
        self.pool = (
            keras.layers.MaxPooling2D(3, 2, padding="same", name=f"{self.name}_pool") if self.strides == 2 else None
        )

    def build(self, input_shape=None):
        self.conv.build(common.channels_shape(self.in_channels))

    def call(self, inputs, training=None):
        x = self.pool(inputs) if self.pool is not None else inputs
        return self.conv(x)

    @property
    def matrix(self):
        """The linear map as a `(in_channels, filters)` numpy matrix (`y = x @ matrix` per pixel)."""
        return np.asarray(self.conv.kernel)[0, 0]

    def get_config(self):
        config = super().get_config()
        config.update({"in_channels": self.in_channels, "filters": self.filters, "strides": self.strides})
        return config


def fold_into_projection(conv, bn, matrix):
    """`BN(conv(h)) @ matrix` as one 1x1 conv + BN: the backward ELS fold.

    With s = gamma / sqrt(var + eps): `BN(z) @ W = z @ (diag(s) W) + (beta - s * mean) @ W`. The new
    conv kernel is `P diag(s) W`; the new BN has gamma 1, beta `(beta - s * mean) @ W`, moving mean 0
    and moving variance `1 - eps` (so that it divides by exactly sqrt(1) = 1).

    Returns:
        `(kernel, [gamma, beta, moving_mean, moving_variance])` for the cloned layers (float32).
    """
    kernel = np.asarray(conv.kernel, np.float64)
    gamma, beta, mean, var = (np.asarray(w, np.float64) for w in bn.get_weights())
    scale = gamma / np.sqrt(var + bn.epsilon)
    w = np.asarray(matrix, np.float64)
    new_kernel = (kernel[0, 0] * scale[None, :]) @ w
    out = w.shape[1]
    weights = [np.ones(out), (beta - scale * mean) @ w, np.zeros(out), np.full(out, 1.0 - bn.epsilon)]
    return new_kernel[None, None].astype(np.float32), [v.astype(np.float32) for v in weights]
