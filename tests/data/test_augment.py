"""Augmentations: shapes, fills, determinism, and that a top-down crop moves keypoints with the pixels."""

import numpy as np
import pytest
import tensorflow as tf

from scalenas_tf.data import augment


def _seed(i):
    return tf.constant([7, i], tf.int64)


def test_random_scale_crop_pads_with_fills_and_is_deterministic():
    image = tf.fill([10, 20, 3], 0.25)
    mask = tf.fill([10, 20], 3)
    # Scale 1 exactly, crop larger than the image: the padded rows and columns carry the fills.
    out_image, out_mask = augment.random_scale_crop(
        image, mask, (16, 24), _seed(0), scale_range=(1.0, 1.0), image_fill=(0.5, 0.5, 0.5), mask_fill=255
    )
    out_image, out_mask = out_image.numpy(), out_mask.numpy()
    assert out_image.shape == (16, 24, 3) and out_mask.shape == (16, 24)
    assert np.all(out_mask[10:] == 255) and np.all(out_image[10:] == 0.5)
    assert (out_mask[:10] == 3).sum() == 10 * 20 and (out_mask[:10] == 255).sum() == 10 * 4
    # The image and mask stay aligned: image 0.25 exactly where the mask is 3.
    np.testing.assert_array_equal(out_image[..., 0] == 0.25, out_mask == 3)
    again = augment.random_scale_crop(
        image, mask, (16, 24), _seed(0), scale_range=(1.0, 1.0), image_fill=(0.5, 0.5, 0.5), mask_fill=255
    )
    np.testing.assert_array_equal(again[1].numpy(), out_mask)


def test_random_scale_crop_keeps_image_and_mask_aligned_when_scaled():
    yy, xx = np.meshgrid(np.arange(32), np.arange(48), indexing="ij")
    mask = ((yy // 8 + xx // 8) % 2).astype(np.int32)  # a checkerboard of 8-pixel squares
    image = np.repeat(mask[..., None].astype(np.float32), 3, axis=-1)
    for i in range(8):
        out_image, out_mask = augment.random_scale_crop(image, mask, (24, 24), _seed(i), scale_range=(0.5, 2.0))
        out_image, out_mask = out_image.numpy(), out_mask.numpy()
        valid = out_mask != 255
        # Bilinear and nearest agree away from the square edges: most pixels round to the label.
        agree = (np.round(out_image[..., 0]) == out_mask) & valid
        assert agree.sum() >= 0.8 * valid.sum()


def test_pad_crop_flip_shape_and_content():
    image = tf.reshape(tf.range(8 * 8 * 3, dtype=tf.float32), [8, 8, 3])
    out = augment.pad_crop_flip(image, _seed(1), padding=2).numpy()
    assert out.shape == (8, 8, 3)
    values = set(out.reshape(-1).tolist())
    assert values <= set(image.numpy().reshape(-1).tolist()) | {0.0}


def test_center_crop_takes_the_middle():
    image = np.zeros((100, 200, 3), np.float32)
    image[40:60, 90:110] = 1.0  # a square in the middle
    out = augment.center_crop(image, (32, 32), crop_fraction=1.0).numpy()
    assert out.shape == (32, 32, 3)
    # The shorter side 100 -> 32: the 20-pixel square is ~6.4 pixels, centred.
    centre = out[13:19, 13:19, 0]
    assert centre.min() > 0.5 and out[:8].max() < 1e-6


def test_random_resized_crop_whole_image():
    image = tf.random.stateless_uniform([40, 60, 3], seed=[1, 2])
    out = augment.random_resized_crop(image, (20, 30), _seed(3), area_range=(1.0, 1.0), aspect_ratio_range=(1.5, 1.5))
    expected = tf.image.resize(image, (20, 30), antialias=True)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-6)
    assert augment.random_resized_crop(image, (16, 16), _seed(4)).shape == (16, 16, 3)


def _dots_image(points, height=120, width=160):
    """An image with a 3x3 dot of channel k at point k (x, y)."""
    image = np.zeros((height, width, 3), np.float32)
    for k, (x, y) in enumerate(points):
        image[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2, k] = 1.0
    return image


@pytest.mark.parametrize("training", [False, True])
def test_top_down_crop_keypoints_follow_the_pixels(training):
    points = np.array([[60.0, 50.0], [90.0, 70.0], [75.0, 85.0]], np.float32)
    image = _dots_image(points)
    bbox = tf.constant([50.0, 40.0, 50.0, 55.0])
    flips = set()
    for i in range(12 if training else 1):
        crop = augment.top_down_crop(
            image,
            bbox,
            points,
            tf.constant([2, 2, 1]),
            (64, 48),
            seed=_seed(i) if training else None,
            flip_pairs=((0, 1),),
            upper_body=(0, 1),
        )
        flipped = bool(crop["flipped"].numpy())
        flips.add(flipped)
        out = crop["image"].numpy()
        for k in range(3):
            if crop["keypoint_visible"][k] == 0:
                continue
            channel = {0: 1, 1: 0}.get(k, k) if flipped else k  # a flip swaps joints 0 and 1
            y, x = np.unravel_index(np.argmax(out[..., channel]), out.shape[:2])
            np.testing.assert_allclose(crop["keypoints"][k].numpy(), (y, x), atol=1.5)
        # The transform maps crop pixels back to the image: the keypoints return to their source.
        back = augment.apply_transform(crop["transform"], tf.reverse(crop["keypoints"], [1])).numpy()
        for k in range(3):
            if crop["keypoint_visible"][k]:
                source = ({0: 1, 1: 0}.get(k, k)) if flipped else k
                np.testing.assert_allclose(back[k], points[source], atol=1e-3)
    if training:
        assert flips == {False, True}


def test_person_box_grows_to_aspect():
    # A 30x60 (w x h) box into a 64x48 (h x w) crop: aspect w/h 0.75; height 60 > 30 / 0.75 = 40.
    np.testing.assert_allclose(augment.person_box(tf.constant([10.0, 20.0, 30.0, 60.0]), (64, 48)), [25, 50, 75])
    # A wide box: height becomes w / aspect = 80 / 0.75.
    np.testing.assert_allclose(
        augment.person_box(tf.constant([0.0, 0.0, 80.0, 20.0]), (64, 48)), [40, 10, 80 / 0.75 * 1.25], rtol=1e-6
    )


def test_eval_crop_transform_is_exact():
    matrix = augment.crop_transform(tf.constant([100.0, 50.0, 128.0]), (64, 48)).numpy()
    # Scale 2 image pixels per crop pixel; the crop centre (23.5, 31.5) shows the box centre.
    np.testing.assert_allclose(matrix @ [23.5, 31.5, 1.0], [100.0, 50.0, 1.0])
    np.testing.assert_allclose(matrix @ [0.0, 0.0, 1.0], [100.0 - 47.0, 50.0 - 63.0, 1.0])
