"""Per-example preprocessing and augmentation of real images, as the papers' training recipes do it.

Every random function takes a stateless `seed` (an int32/int64 tensor of shape `(2,)`), so a pipeline
that derives each example's seed from `(config seed, example position)` is deterministic and replays
after a restart. Images are float32 in [0, 1]; pixel `(i, j)` is centred at `(i, j)`; points are
`(x, y)` in pixels as the COCO annotations give them.

Written here rather than taken from Keras preprocessing layers because each needs a joint transform
of the image and its targets (masks with an ignore fill, keypoints with left/right swaps) under a
stateless seed; Keras 3 has no RandomResizedCrop layer and its random layers draw from a stateful
generator.
"""

import math

import tensorflow as tf

# HRNet's top-down pose recipe (lib/dataset/JointsDataset.py and the w32_256x192 COCO config).
BOX_PADDING = 1.25  # a person box grows by this factor before cropping
SCALE_FACTOR = 0.35  # random scale: clip(1 + 0.35 N(0, 1), 0.65, 1.35)
ROTATION_FACTOR = 45.0  # random rotation: clip(45 N(0, 1), -90, 90) degrees, applied with probability 0.6
ROTATION_PROB = 0.6
HALF_BODY_PROB = 0.3
HALF_BODY_MIN_JOINTS = 8  # half-body cropping needs more than this many visible joints
HALF_BODY_PADDING = 1.5


def split_seed(seed, num):
    """`num` independent stateless seeds (a list of `(2,)` tensors) from one."""
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=num))


def random_flip(seed, prob=0.5):
    """A scalar bool: flip or not, true with probability `prob`."""
    return tf.random.stateless_uniform([], seed=seed) < prob


def random_resized_crop(image, size, seed, area_range=(0.08, 1.0), aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0)):
    """Inception-style crop: a random box of `area_range` of the image and `aspect_ratio_range`, resized.

    The box is drawn by `tf.image.stateless_sample_distorted_bounding_box` (10 attempts; the whole image
    when none fits, where torchvision falls back to a centre crop).

    Args:
        image: float32 `(H, W, 3)` in [0, 1].
        size: `(height, width)` of the output.
        seed: `(2,)` stateless seed.
        area_range: fraction of the image area the box covers.
        aspect_ratio_range: width / height of the box.

    Returns:
        float32 `(height, width, 3)`, bilinearly resized with antialiasing.
    """
    begin, box_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=aspect_ratio_range,
        area_range=area_range,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, box_size)
    return tf.image.resize(crop, size, method="bilinear", antialias=True)


def center_crop(image, size, crop_fraction=0.875):
    """Evaluation crop: resize so that `size` is the central `crop_fraction` of the image, then crop.

    For a square `size` this is the usual "resize the shorter side to size / 0.875, centre crop".

    Args:
        image: float32 `(H, W, 3)`.
        size: `(height, width)` of the output.
        crop_fraction: float in (0, 1].

    Returns:
        float32 `(height, width, 3)`.
    """
    height, width = size
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.maximum(height / crop_fraction / shape[0], width / crop_fraction / shape[1])
    resized_shape = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), [height, width])
    resized = tf.image.resize(image, resized_shape, method="bilinear", antialias=True)
    top = (resized_shape[0] - height) // 2
    left = (resized_shape[1] - width) // 2
    return resized[top : top + height, left : left + width]


def random_scale_crop(image, mask, size, seed, scale_range=(0.5, 2.0), image_fill=(0.0, 0.0, 0.0), mask_fill=255):
    """HRNet's segmentation augmentation: random rescale, pad, random crop, random horizontal flip.

    The image and mask are rescaled by a factor uniform in `scale_range` (image bilinear, mask nearest),
    padded at the bottom and right to at least `size` (image with `image_fill`, mask with `mask_fill`),
    cropped at a random position to `size` and flipped left-right with probability 1/2.

    Args:
        image: float32 `(H, W, 3)` in [0, 1].
        mask: integer `(H, W)` labels.
        size: `(height, width)` of the crop.
        seed: `(2,)` stateless seed.
        scale_range: `(low, high)` of the rescale factor.
        image_fill: the RGB value of padded pixels (the normalization mean pads with zeros after
            normalization, as HRNet does).
        mask_fill: the label of padded pixels (the ignore label).

    Returns:
        `(image, mask)`: float32 `(height, width, 3)` and int32 `(height, width)`.
    """
    scale_seed, crop_seed, flip_seed = split_seed(seed, 3)
    height, width = size
    scale = tf.random.stateless_uniform([], seed=scale_seed, minval=scale_range[0], maxval=scale_range[1])
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scaled_shape = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), 1)
    image = tf.image.resize(image, scaled_shape, method="bilinear")
    mask = tf.image.resize(tf.cast(mask, tf.int32)[..., None], scaled_shape, method="nearest")[..., 0]
    pad_height = tf.maximum(height - scaled_shape[0], 0)
    pad_width = tf.maximum(width - scaled_shape[1], 0)
    paddings = [[0, pad_height], [0, pad_width]]
    fill = tf.constant(image_fill, tf.float32)
    image = tf.pad(image - fill, paddings + [[0, 0]]) + fill
    mask = tf.pad(mask - mask_fill, paddings) + mask_fill
    room = tf.shape(mask) - [height, width] + 1
    top = tf.random.stateless_uniform([], seed=crop_seed, maxval=room[0], dtype=tf.int32)
    left = tf.random.stateless_uniform([], seed=tf.reverse(crop_seed, [0]), maxval=room[1], dtype=tf.int32)
    image = image[top : top + height, left : left + width]
    mask = mask[top : top + height, left : left + width]
    flip = random_flip(flip_seed)
    image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    mask = tf.cond(flip, lambda: tf.reverse(mask, [1]), lambda: mask)
    return tf.ensure_shape(image, (height, width, 3)), tf.ensure_shape(mask, (height, width))


def pad_crop_flip(image, seed, padding):
    """CIFAR's augmentation: zero-pad by `padding` pixels on each side, crop back at random, flip.

    Args:
        image: float32 `(H, W, 3)`.
        seed: `(2,)` stateless seed.
        padding: int >= 0.

    Returns:
        float32 `(H, W, 3)`.
    """
    crop_seed, flip_seed = split_seed(seed, 2)
    shape = tf.shape(image)
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    image = tf.image.stateless_random_crop(padded, shape, seed=crop_seed)
    return tf.cond(random_flip(flip_seed), lambda: tf.reverse(image, [1]), lambda: image)


def person_box(bbox, size, padding=BOX_PADDING):
    """A COCO `[x, y, w, h]` box as `(centre_x, centre_y, box_height)`: grown to the crop's aspect ratio
    (width / height of `size`) and by `padding`, as HRNet's `_box2cs` does. Works on any leading shape."""
    x, y, w, h = tf.unstack(tf.cast(bbox, tf.float32), axis=-1)
    aspect = size[1] / size[0]
    return tf.stack([x + 0.5 * w, y + 0.5 * h, tf.maximum(h, w / aspect) * padding], axis=-1)


def crop_transform(box, size, rotation=0.0):
    """The affine map of a top-down crop, as a `(3, 3)` float32 matrix from crop to image pixels.

    The crop of `size` (height, width) shows the box `(centre_x, centre_y, box_height)` (box width =
    box height x width / height), rotated by `rotation` degrees: crop pixel `(x, y)` shows image point
    `centre + R(rotation) * s * ((x, y) - crop_centre)` with `s = box_height / height` and crop centre
    `((width - 1) / 2, (height - 1) / 2)`.
    """
    height, width = size
    centre_x, centre_y, box_height = tf.unstack(tf.cast(box, tf.float32))
    s = box_height / height
    theta = tf.cast(rotation, tf.float32) * (math.pi / 180.0)
    cos, sin = tf.cos(theta) * s, tf.sin(theta) * s
    ox, oy = (width - 1) / 2.0, (height - 1) / 2.0
    return tf.stack(
        [
            tf.stack([cos, -sin, centre_x - cos * ox + sin * oy]),
            tf.stack([sin, cos, centre_y - sin * ox - cos * oy]),
            tf.constant([0.0, 0.0, 1.0]),
        ]
    )


def apply_transform(matrix, points):
    """Points `(..., 2)` `(x, y)` mapped by a `(3, 3)` affine matrix."""
    points = tf.cast(points, tf.float32)
    return tf.einsum("ij,...j->...i", matrix[:2, :2], points) + matrix[:2, 2]


def warp(image, matrix, size):
    """The crop of `size` whose pixel `(x, y)` samples `image` bilinearly at `matrix @ (x, y, 1)`; outside
    the image it is zero."""
    transform = tf.reshape(matrix, [-1])[:8]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(image, tf.float32)[None],
        transforms=transform[None],
        output_shape=tf.constant(size, tf.int32),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )[0]


def top_down_crop(image, bbox, keypoints, visibility, size, seed=None, flip_pairs=(), upper_body=()):
    """HRNet's top-down person crop with its training augmentation.

    The box is grown to the crop's aspect ratio and by `BOX_PADDING`. With a `seed` (training): with
    probability `HALF_BODY_PROB`, when more than `HALF_BODY_MIN_JOINTS` joints are labelled, the box is
    replaced by one around the upper-body (`upper_body` indices) or lower-body joints, grown by
    `HALF_BODY_PADDING`; the box is scaled by `clip(1 + SCALE_FACTOR N, 1 - SCALE_FACTOR, 1 + SCALE_FACTOR)`,
    rotated by `clip(ROTATION_FACTOR N, -2 ROTATION_FACTOR, 2 ROTATION_FACTOR)` degrees with probability
    `ROTATION_PROB`, and the crop is flipped left-right with probability 1/2, swapping the joints of
    `flip_pairs`. Without a seed (evaluation) the crop is the grown box.

    Args:
        image: float32 `(H, W, 3)` in [0, 1].
        bbox: `(4,)` COCO `[x, y, w, h]` in pixels.
        keypoints: `(K, 2)` `(x, y)` in pixels.
        visibility: `(K,)` COCO flags: 0 unlabelled, 1 labelled but hidden, 2 visible.
        size: `(height, width)` of the crop.
        seed: `(2,)` stateless seed, or None for evaluation.
        flip_pairs: `(left, right)` joint index pairs.
        upper_body: indices of the upper-body joints (the others are lower-body).

    Returns:
        dict: `"image"` float32 `(height, width, 3)`; `"keypoints"` float32 `(K, 2)` `(y, x)` crop pixels;
        `"keypoint_visible"` float32 `(K,)`, 1 for a labelled joint inside the crop; `"transform"` float32
        `(3, 3)`, crop pixels to image pixels (`(x, y)`), for mapping predictions back; `"flipped"` bool.
    """
    keypoints = tf.cast(keypoints, tf.float32)
    labelled = tf.cast(visibility, tf.int32) > 0
    box = person_box(bbox, size)
    rotation = tf.constant(0.0)
    flip = tf.constant(False)
    if seed is not None:
        half_seed, part_seed, scale_seed, rotation_seed, apply_seed, flip_seed = split_seed(seed, 6)
        half = tf.logical_and(
            tf.random.stateless_uniform([], seed=half_seed) < HALF_BODY_PROB,
            tf.reduce_sum(tf.cast(labelled, tf.int32)) > HALF_BODY_MIN_JOINTS,
        )
        box = tf.cond(half, lambda: _half_body_box(keypoints, labelled, size, part_seed, upper_body), lambda: box)
        scale = tf.clip_by_value(
            1.0 + SCALE_FACTOR * tf.random.stateless_normal([], seed=scale_seed), 1.0 - SCALE_FACTOR, 1.0 + SCALE_FACTOR
        )
        box = box * tf.constant([1.0, 1.0, 0.0]) + tf.stack([0.0, 0.0, box[2] * scale])
        angle = tf.clip_by_value(
            ROTATION_FACTOR * tf.random.stateless_normal([], seed=rotation_seed),
            -2.0 * ROTATION_FACTOR,
            2.0 * ROTATION_FACTOR,
        )
        rotation = tf.where(tf.random.stateless_uniform([], seed=apply_seed) < ROTATION_PROB, angle, 0.0)
        flip = random_flip(flip_seed)
    matrix = crop_transform(box, size, rotation)
    height, width = size
    if flip_pairs:
        # A flipped crop samples x' = width - 1 - x: compose with that reflection.
        reflect = tf.constant([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        matrix = tf.where(flip, matrix @ reflect, matrix)
    crop = warp(image, matrix, size)
    inverse = tf.linalg.inv(matrix)
    points = apply_transform(inverse, keypoints)
    inside = (points[:, 0] >= 0) & (points[:, 0] <= width - 1) & (points[:, 1] >= 0) & (points[:, 1] <= height - 1)
    visible = tf.cast(labelled & inside, tf.float32)
    if flip_pairs:
        order = list(range(keypoints.shape[0]))
        for left, right in flip_pairs:
            order[left], order[right] = right, left
        points = tf.where(flip, tf.gather(points, order), points)
        visible = tf.where(flip, tf.gather(visible, order), visible)
    return {
        "image": tf.ensure_shape(crop, (height, width, 3)),
        "keypoints": tf.reverse(points, [1]) * visible[:, None],
        "keypoint_visible": visible,
        "transform": matrix,
        "flipped": flip,
    }


def _half_body_box(keypoints, labelled, size, seed, upper_body):
    """HRNet's half-body box: the labelled joints of the upper body (chosen when N(0, 1) < 0.5 and more
    than two are labelled) or else of the lower body, as `(centre_x, centre_y, box_height)`."""
    num = keypoints.shape[0]
    is_upper = tf.constant([i in upper_body for i in range(num)])
    upper = labelled & is_upper
    lower = labelled & ~is_upper
    upper_count = tf.reduce_sum(tf.cast(upper, tf.int32))
    lower_count = tf.reduce_sum(tf.cast(lower, tf.int32))
    want_upper = (tf.random.stateless_normal([], seed=seed) < 0.5) & (upper_count > 2)
    chosen = tf.where(want_upper | (lower_count <= 2), upper, lower)
    big = tf.float32.max
    low = tf.reduce_min(tf.where(chosen[:, None], keypoints, big), axis=0)
    high = tf.reduce_max(tf.where(chosen[:, None], keypoints, -big), axis=0)
    centre = tf.reduce_sum(tf.where(chosen[:, None], keypoints, 0.0), axis=0) / tf.maximum(
        tf.reduce_sum(tf.cast(chosen, tf.float32)), 1.0
    )
    extent = high - low
    aspect = size[1] / size[0]
    box_height = tf.maximum(extent[1], extent[0] / aspect) * HALF_BODY_PADDING
    return tf.stack([centre[0], centre[1], box_height])
