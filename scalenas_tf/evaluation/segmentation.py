"""Multi-scale and flip inference for segmentation, as HRNet's Cityscapes test-time augmentation.

`multi_scale_logits` resizes each image by every scale (bilinear), predicts, optionally averages with
the prediction of the mirrored image mirrored back, resizes the logits to the output size
(bilinear) and sums over the scales; the argmax of the sum is the prediction. HRNet evaluates with
scales (0.5, 0.75, 1.0, 1.25, 1.5, 1.75) and flip. HRNet predicts a scaled image larger than its
crop size window by window; here every scale is predicted whole, which needs the memory of the
largest scale.
"""

import numpy as np
import tensorflow as tf

HRNET_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def multi_scale_logits(predict, images, output_size=None, scales=(1.0,), flip=False):
    """Summed logits over scales (and flips) for a batch of normalized images.

    Args:
        predict: `images -> logits`, `(B, h, w, 3)` to `(B, h', w', C)` at any size (e.g. a supernet
            with its arch bound, or a model built without a fixed input size).
        images: float32 `(B, H, W, 3)`, normalized as the pipeline does.
        output_size: `(height, width)` of the returned logits; None: the images' size.
        scales: positive floats; each image side is scaled to `round(side * scale)`.
        flip: bool, also predict the left-right mirrored images and average.

    Returns:
        float32 `(B, height, width, C)`: the sum over scales of the (flip-averaged) logits, each
        resized bilinearly to `output_size`.

    Raises:
        ValueError: an empty `scales` or a scale <= 0, naming it.
    """
    scales = tuple(scales)
    if not scales or any(not isinstance(s, (int, float)) or isinstance(s, bool) or s <= 0 for s in scales):
        raise ValueError(f"`scales` must be positive numbers. Received: scales={scales!r}")
    images = tf.convert_to_tensor(images, tf.float32)
    height, width = int(images.shape[1]), int(images.shape[2])
    output_size = (height, width) if output_size is None else tuple(int(v) for v in output_size)
    total = None
    for scale in scales:
        size = (max(1, int(round(height * scale))), max(1, int(round(width * scale))))
        scaled = images if size == (height, width) else tf.image.resize(images, size, method="bilinear")
        logits = tf.cast(predict(scaled), tf.float32)
        if flip:
            mirrored = tf.cast(predict(tf.reverse(scaled, [2])), tf.float32)
            logits = (logits + tf.reverse(mirrored, [2])) / 2.0
        logits = tf.image.resize(logits, output_size, method="bilinear")
        total = logits if total is None else total + logits
    return total


def predict_labels(predict, images, output_size=None, scales=(1.0,), flip=False):
    """The argmax labels (int32 `(B, height, width)`) of `multi_scale_logits`."""
    logits = multi_scale_logits(predict, images, output_size, scales, flip)
    return np.asarray(tf.argmax(logits, axis=-1, output_type=tf.int32))
