"""One cross-resolution fusion edge F_jk: resamples branch k's features to branch j's resolution and width."""

import keras
import tensorflow as tf

from scalenas_tf.families.scalenas.space import FUSION_UPSAMPLING
from scalenas_tf.layers import common


def upsample_nearest(x, factor, target_hw):
    """Repeats each pixel `factor` times along height and width, then crops to `target_hw`.

    The values of `keras.ops.repeat` on both axes (what `UpSampling2D` runs), built as one `tf.tile` of a
    6-D view: 6 graph ops when the shapes are static, where the two `repeat`s build ~60 and their gradients
    ~40 more (they were 22% of the shapes_seg train graph's nodes). `target_hw` is static ints or scalar
    tensors; the crop is only built when the sizes may differ (a size that was not a power-of-2 multiple).
    """
    h, w, c = common.dims(x, (1, 2, 3))
    y = tf.reshape(x, [-1, h, 1, w, 1, c])
    y = tf.tile(y, [1, 1, factor, 1, factor, 1])
    y = tf.reshape(y, [-1, h * factor, w * factor, c])
    if all(isinstance(s, int) for s in (h, w, *target_hw)) and (h * factor, w * factor) == tuple(target_hw):
        return y
    return y[:, : target_hw[0], : target_hw[1], :]


@keras.saving.register_keras_serializable(package="scalenas")
class FusionEdge(keras.layers.Layer):
    """Maps source branch `k` to target branch `j` (HRNet's fuse layer entry `fuse_layers[j][k]`).

    - `source > target` (low to high resolution): 1x1 conv + BN, then nearest upsampling by 2**(k-j)
      cropped to the target's size, or bilinear resizing to the target's size (half-pixel centres:
      PyTorch's `F.interpolate(size=target, mode="bilinear", align_corners=False)` in HRNetV2 seg).
    - `source < target` (high to low): (j-k) 3x3 stride-2 conv + BN, ReLU after all but the last; the
      last maps to the target's channels, the others keep the source's.

    Args:
        source: int. Source branch index k.
        target: int. Target branch index j (!= source).
        source_channels: int. Channels of branch k.
        target_channels: int. Channels of branch j.
        upsampling: `"nearest"` or `"bilinear"` (see above); only used when `source > target`.
        bn_momentum: float. Keras momentum of the BN layers.

    Call arguments:
        inputs: float tensor `(batch, h_k, w_k, source_channels)`.
        target_hw: `(h_j, w_j)`, the target branch's spatial size (static ints or scalar tensors).
        training: bool.
    """

    def __init__(
        self,
        source,
        target,
        source_channels,
        target_channels,
        upsampling="nearest",
        bn_momentum=common.BN_MOMENTUM,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if source == target:
            raise ValueError(f"A fusion edge joins two different branches. Received: source={source}, target={target}")
        if upsampling not in FUSION_UPSAMPLING:
            raise ValueError(
                f"`upsampling` must be one of {list(FUSION_UPSAMPLING)}. Received: upsampling={upsampling!r}"
            )
        self.source = source
        self.target = target
        self.source_channels = source_channels
        self.target_channels = target_channels
        self.upsampling = upsampling
        self.bn_momentum = bn_momentum
        self.convs, self.bns = [], []
        if source > target:
            self.convs.append(common.conv2d(target_channels, 1, name=f"{self.name}_conv0"))
            self.bns.append(common.batch_norm(f"{self.name}_bn0", bn_momentum))
        else:
            steps = target - source
            for t in range(steps):
                out = target_channels if t == steps - 1 else source_channels
                self.convs.append(common.conv2d(out, 3, strides=2, name=f"{self.name}_conv{t}"))
                self.bns.append(common.batch_norm(f"{self.name}_bn{t}", bn_momentum))

    def build(self, input_shape):
        channels = self.source_channels
        for conv, bn in zip(self.convs, self.bns):
            conv.build(common.channels_shape(channels))
            channels = conv.filters
            bn.build(common.channels_shape(channels))

    @property
    def upsample_factor(self):
        return 2 ** (self.source - self.target) if self.source > self.target else 1

    def call(self, inputs, target_hw, training=None):
        y = inputs
        for t, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            y = bn(common.call_padded(conv, y), training=training)
            if t < len(self.convs) - 1:
                y = keras.ops.relu(y)
        if self.source > self.target and self.upsampling == "bilinear":
            # tf.image.resize computes in float32 whatever the input dtype (mixed precision).
            y = tf.cast(tf.image.resize(y, target_hw, method="bilinear"), y.dtype)
        elif self.source > self.target:
            y = upsample_nearest(y, self.upsample_factor, target_hw)
        return y

    def extract(self, x, target_hw):
        """Applies this edge to the KerasTensor `x`; `target_hw` must be static ints."""
        y = x
        for t, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            y = common.clone_layer(bn, common.clone_padded(conv, y))
            if t < len(self.convs) - 1:
                y = keras.layers.ReLU(name=f"{self.name}_relu{t}")(y)
        if self.source > self.target and self.upsampling == "bilinear":
            # training=False: Resizing's call defaults to training=True, and Keras hands a layer's
            # resolved `training` on to the layers after it, so a plain `model(x)` would run every
            # later BN in training mode. An explicit outer `training` still overrides it.
            resize = keras.layers.Resizing(*target_hw, interpolation="bilinear", name=f"{self.name}_up")
            y = resize(y, training=False)
        elif self.source > self.target:
            f = self.upsample_factor
            y = keras.layers.UpSampling2D(f, interpolation="nearest", name=f"{self.name}_up")(y)
            dh, dw = y.shape[1] - target_hw[0], y.shape[2] - target_hw[1]
            if dh or dw:
                y = keras.layers.Cropping2D(((0, dh), (0, dw)), name=f"{self.name}_crop")(y)
        return y

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "source": self.source,
                "target": self.target,
                "source_channels": self.source_channels,
                "target_channels": self.target_channels,
                "upsampling": self.upsampling,
                "bn_momentum": self.bn_momentum,
            }
        )
        return config
