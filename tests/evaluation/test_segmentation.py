"""Multi-scale + flip segmentation inference against hand-computed cases."""

import numpy as np
import pytest
import tensorflow as tf

from scalenas_tf.evaluation import segmentation


def _identity_logits(images):
    """A 'model' whose logits are the image's first two channels (resolution kept)."""
    return images[..., :2]


def test_single_scale_no_flip_is_the_prediction():
    images = tf.random.stateless_uniform([2, 8, 12, 3], seed=[1, 2])
    out = segmentation.multi_scale_logits(_identity_logits, images)
    np.testing.assert_allclose(out.numpy(), images.numpy()[..., :2], atol=1e-6)


def test_flip_averages_with_the_mirrored_prediction():
    images = tf.random.stateless_uniform([1, 4, 6, 3], seed=[3, 4])

    def left_biased(x):  # logit 0 grows to the right: not mirror symmetric
        return tf.tile(tf.range(x.shape[2], dtype=tf.float32)[None, None, :, None], [x.shape[0], x.shape[1], 1, 2])

    out = segmentation.multi_scale_logits(left_biased, images, flip=True).numpy()
    # Each column c: (c + (W - 1 - c)) / 2 = (W - 1) / 2.
    np.testing.assert_allclose(out, np.full((1, 4, 6, 2), 2.5), atol=1e-6)


def test_scales_sum_resized_logits():
    images = tf.ones([1, 8, 8, 3])
    sizes = []

    def constant(x):
        sizes.append(tuple(x.shape[1:3]))
        return tf.ones([x.shape[0], x.shape[1], x.shape[2], 3])

    out = segmentation.multi_scale_logits(constant, images, output_size=(16, 16), scales=(0.5, 1.0, 1.5), flip=True)
    assert sizes == [(4, 4), (4, 4), (8, 8), (8, 8), (12, 12), (12, 12)]
    np.testing.assert_allclose(out.numpy(), np.full((1, 16, 16, 3), 3.0), atol=1e-6)
    labels = segmentation.predict_labels(_identity_logits, tf.one_hot([[[1, 0], [0, 1]]], 3), scales=(1.0, 2.0))
    np.testing.assert_array_equal(labels, [[[1, 0], [0, 1]]])


def test_bad_scales_are_named():
    with pytest.raises(ValueError, match="scales"):
        segmentation.multi_scale_logits(_identity_logits, tf.zeros([1, 4, 4, 3]), scales=(1.0, 0.0))
    with pytest.raises(ValueError, match="scales"):
        segmentation.multi_scale_logits(_identity_logits, tf.zeros([1, 4, 4, 3]), scales=())
