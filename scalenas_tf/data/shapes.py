"""`shapes`: the embedded default dataset, procedural RGB scenes whose objects vary widely in scale.

Each example is drawn by TensorFlow stateless random ops keyed by `(seed, split, its index)`, so the same
`(split, seed, image_size, max_objects)` always gives bit-identical tensors, nothing is downloaded, and
the train and validation splits are disjoint random streams. Examples are drawn `CHUNK_SIZE` at a
time, one key per chunk, and rendered vectorized over the chunk, the object slots and the pixel grid
by one XLA-compiled function (compiled once per image size and `max_objects`, about a second).

A scene is a smooth two-colour gradient background plus uniform pixel noise, with 1..`max_objects`
objects of `NUM_SHAPE_CLASSES` shapes (`SHAPE_NAMES`: disc, rotated rectangle of aspect 0.4..1,
rotated equilateral triangle, rotated cross). An object's size (the square root of its area) is
log-uniform from `MIN_SIZE` to `MAX_SIZE` of the shorter image side: from about 0.2 % of the image
(a few pixels) to 64 % of it. The class is decided by the shape only: colours are random, each
channel at least 0.25 away from the background's mean colour so that every object contrasts with
its surroundings. The primary object is the largest: the other objects ("distractors") are
log-uniform between `MIN_SIZE` and its size and are painted first (the smaller on top), the primary
last, so it is fully visible. The pixel nearest an object's centre always belongs to it, so even the
smallest objects show.

Coordinates are in pixels, `(y, x)`, pixel `(i, j)` centred at `(i, j)`; the scene geometry is
defined relative to the image, so one `(split, seed)` renders the same scenes at every resolution.

Keypoints (`KEYPOINT_NAMES`) of the primary object: its centre, then the points where the rays from
the centre going up, right, down and left leave the object (for a disc the top-, right-, bottom- and
left-most points). Every shape is star-shaped about its centre, so each ray leaves it exactly once
and all five points lie on the object. A keypoint is visible when it lies within the image
(`0 <= y <= H - 1` and `0 <= x <= W - 1`).

Generation speed (2 CPU cores shared with another job, `max_objects=4`, iterating
`shapes_examples("train").batch(64)`): about 3000 examples/s at 64x64 and 950 examples/s at 128x128.
"""

import math

import tensorflow as tf

SHAPE_NAMES = ("disc", "rectangle", "triangle", "cross")
NUM_SHAPE_CLASSES = len(SHAPE_NAMES)
KEYPOINT_NAMES = ("centre", "top", "right", "bottom", "left")
NUM_KEYPOINTS = len(KEYPOINT_NAMES)

SPLITS = ("train", "validation")
DEFAULT_NUM_EXAMPLES = {"train": 2048, "validation": 256}
MIN_IMAGE_SIDE = 16
# Example i is row i % CHUNK_SIZE of chunk i // CHUNK_SIZE, so it does not depend on `num_examples`.
CHUNK_SIZE = 16

# Object size (sqrt of area) as a fraction of the shorter image side: log-uniform in this range.
MIN_SIZE = 0.04
MAX_SIZE = 0.8
# The primary object's centre, as a fraction of each image side; distractors are anywhere.
PRIMARY_CENTRE_RANGE = (0.1, 0.9)
RECTANGLE_ASPECT_RANGE = (0.4, 1.0)
CROSS_ARM_WIDTH = 0.3  # half-width of an arm / half-length
BACKGROUND_GRADIENT = 0.2  # per-channel colour change across the image
NOISE_AMPLITUDE = 0.05  # uniform pixel noise in [-NOISE_AMPLITUDE, NOISE_AMPLITUDE] per channel
MIN_COLOUR_CONTRAST = 0.25  # per channel, object colour vs the background's mean colour

# Columns of the per-object uniform draws.
_CLASS, _SIZE, _ASPECT, _ANGLE, _CENTRE_Y, _CENTRE_X, _COLOUR = 0, 1, 2, 3, 4, 5, 6
_OBJECT_DRAWS = 9
# Columns of the per-scene uniform draws.
_NUM_OBJECTS, _BG_MEAN, _BG_DIRECTION, _BG_CHANGE = 0, 1, 4, 5
_SCENE_DRAWS = 8
# Up, right, down, left, as (dy, dx).
_RAY_DIRECTIONS = ((-1.0, 0.0), (0.0, 1.0), (1.0, 0.0), (0.0, -1.0))


def shapes_examples(split, image_size=(64, 64), num_examples=None, seed=0, max_objects=4, min_size=MIN_SIZE):
    """The `shapes` examples of one split.

    Args:
        split: `"train"` or `"validation"`.
        image_size: `(height, width)`, two ints >= 16.
        num_examples: int > 0, or None for `DEFAULT_NUM_EXAMPLES[split]` (2048 train, 256 validation).
        seed: int >= 0. Together with `split` it selects the random stream.
        max_objects: int >= 1. Each scene has 1..`max_objects` objects (uniform).
        min_size: float in (0, MAX_SIZE). The smallest object size, as a fraction of the shorter side
            (default `MIN_SIZE`); a larger one gives an easier dataset without tiny objects.

    Returns:
        A `tf.data.Dataset` of dicts:
        `"image"`: float32 `(H, W, 3)` in [0, 1];
        `"mask"`: int32 `(H, W)`, 0 for background, else 1 + the class of the object on top;
        `"keypoints"`: float32 `(NUM_KEYPOINTS, 2)`, `(y, x)` pixel coordinates of the primary object's
        keypoints (`KEYPOINT_NAMES`);
        `"keypoint_visible"`: float32 `(NUM_KEYPOINTS,)`, 1 where the keypoint lies within the image;
        `"label"`: int32 scalar, the primary object's class in `[0, NUM_SHAPE_CLASSES)`.

    Raises:
        ValueError: for an argument out of its domain, naming it and its value.
    """
    _check_split(split)
    height, width = check_image_size(image_size)
    num_examples = DEFAULT_NUM_EXAMPLES[split] if num_examples is None else num_examples
    _check_int("num_examples", num_examples, minimum=1)
    _check_int("seed", seed, minimum=0)
    _check_int("max_objects", max_objects, minimum=1)
    if isinstance(min_size, bool) or not isinstance(min_size, (int, float)) or not 0 < min_size < MAX_SIZE:
        raise ValueError(f"`min_size` must be a number in (0, {MAX_SIZE}). Received: min_size={min_size!r}")
    base_key = tf.constant([seed, SPLITS.index(split)], tf.int64)

    def chunk(chunk_index):
        key = tf.random.experimental.stateless_fold_in(base_key, chunk_index)
        return _chunk(key, height, width, max_objects, float(min_size))

    num_chunks = -(-num_examples // CHUNK_SIZE)
    chunks = tf.data.Dataset.range(num_chunks).map(chunk, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    examples = chunks.unbatch().take(num_examples)
    return examples.apply(tf.data.experimental.assert_cardinality(num_examples))


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}. Received: split={split!r}")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name, value, minimum):
    if not _is_int(value) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}. Received: {name}={value!r}")


def check_image_size(image_size, name="image_size"):
    """Returns `(height, width)` as ints.

    Args:
        image_size: the value to check.
        name: the argument's name, for the error message.

    Raises:
        ValueError: unless `image_size` is two ints >= MIN_IMAGE_SIDE.
    """
    if (
        not isinstance(image_size, (tuple, list))
        or len(image_size) != 2
        or not all(_is_int(side) and side >= MIN_IMAGE_SIDE for side in image_size)
    ):
        raise ValueError(
            f"`{name}` must be (height, width), two ints >= {MIN_IMAGE_SIDE}. Received: {name}={image_size!r}"
        )
    return int(image_size[0]), int(image_size[1])


def _chunk(key, height, width, max_objects, min_size=MIN_SIZE):
    """`CHUNK_SIZE` consecutive examples, as a dict of batched tensors, from one stateless key."""
    object_key, scene_key, noise_key = tf.unstack(tf.random.experimental.stateless_split(key, num=3))
    objects = _objects(object_key, max_objects, min_size)
    scene = tf.random.stateless_uniform([CHUNK_SIZE, _SCENE_DRAWS], scene_key)
    noise = tf.random.stateless_uniform([CHUNK_SIZE, height, width, 3], noise_key, -NOISE_AMPLITUDE, NOISE_AMPLITUDE)
    num_objects = 1 + tf.cast(scene[:, _NUM_OBJECTS, None] * max_objects, tf.int32)
    active = tf.range(max_objects) < num_objects
    image, mask = _render(objects, active, scene, noise)
    keypoints, visible = _keypoints(objects, height, width)
    return {
        "image": image,
        "mask": mask,
        "keypoints": keypoints,
        "keypoint_visible": visible,
        "label": objects["class"][:, 0],
    }


def _objects(key, max_objects, min_size=MIN_SIZE):
    """Object parameters `(CHUNK_SIZE, max_objects, ...)`: the primary, then the distractors, smallest first.

    Sizes and centres are fractions of the shorter image side and of each side, angles in radians,
    colour offsets from the background's mean colour per channel in
    `[MIN_COLOUR_CONTRAST, 1 - MIN_COLOUR_CONTRAST]`.
    """
    draws = tf.random.stateless_uniform([CHUNK_SIZE, max_objects, _OBJECT_DRAWS], key)
    log_min = math.log(min_size)
    primary_log_size = log_min + draws[:, :1, _SIZE] * (math.log(MAX_SIZE) - log_min)
    distractor_log_size = log_min + tf.sort(draws[:, 1:, _SIZE], axis=-1) * (primary_log_size - log_min)
    lo, hi = PRIMARY_CENTRE_RANGE
    centre_scale = tf.constant([[hi - lo]] + [[1.0]] * (max_objects - 1))
    centre_offset = tf.constant([[lo]] + [[0.0]] * (max_objects - 1))
    aspect_lo, aspect_hi = RECTANGLE_ASPECT_RANGE
    angle = draws[..., _ANGLE] * (2.0 * math.pi)
    return {
        "class": tf.minimum(tf.cast(draws[..., _CLASS] * NUM_SHAPE_CLASSES, tf.int32), NUM_SHAPE_CLASSES - 1),
        "size": tf.exp(tf.concat([primary_log_size, distractor_log_size], axis=1)),
        "aspect": aspect_lo + draws[..., _ASPECT] * (aspect_hi - aspect_lo),
        "cos": tf.cos(angle),
        "sin": tf.sin(angle),
        "centre": centre_offset + draws[..., _CENTRE_Y : _CENTRE_X + 1] * centre_scale,
        "colour_offset": MIN_COLOUR_CONTRAST + draws[..., _COLOUR:] * (1.0 - 2.0 * MIN_COLOUR_CONTRAST),
    }


def _pixel_geometry(objects, height, width):
    """Object centres `(..., 2)` and sizes `(...)`, in pixels."""
    extent = tf.constant([height, width], tf.float32)
    return objects["centre"] * extent - 0.5, objects["size"] * float(min(height, width))


def _gauge(shape_class, size, aspect, cos, sin, dy, dx):
    """The shape's gauge (Minkowski functional) at offset `(dy, dx)` from its centre.

    A point is inside the object iff the gauge is <= 1; the gauge is positively homogeneous, so the
    ray from the centre along a direction `d` leaves the object at `d / gauge(d)`. All arguments
    broadcast together. `size` is the square root of the area in pixels; `cos`, `sin` of the rotation.
    """
    u = dy * cos + dx * sin
    v = dx * cos - dy * sin
    disc = tf.sqrt(u * u + v * v) / (size / math.sqrt(math.pi))
    half_length = size / (2.0 * tf.sqrt(aspect))
    rectangle = tf.maximum(tf.abs(u) / half_length, tf.abs(v) / (half_length * aspect))
    inradius = 0.5 * size / math.sqrt(0.75 * math.sqrt(3.0))
    half_v = v * (0.5 * math.sqrt(3.0))
    triangle = tf.maximum(u, tf.maximum(half_v - 0.5 * u, -half_v - 0.5 * u)) / inradius
    arm = size / math.sqrt(8.0 * CROSS_ARM_WIDTH - 4.0 * CROSS_ARM_WIDTH**2)
    along_u = tf.maximum(tf.abs(u) / arm, tf.abs(v) / (CROSS_ARM_WIDTH * arm))
    along_v = tf.maximum(tf.abs(u) / (CROSS_ARM_WIDTH * arm), tf.abs(v) / arm)
    cross = tf.minimum(along_u, along_v)
    gauges = (disc, rectangle, triangle, cross)
    gauge = gauges[-1]
    for shape, shape_gauge in enumerate(gauges[:-1]):
        gauge = tf.where(shape_class == shape, shape_gauge, gauge)
    return gauge


@tf.function(jit_compile=True)
def _render(objects, active, scene, noise):
    """Paints a chunk; returns images `(B, H, W, 3)` in [0, 1] and masks `(B, H, W)`.

    XLA-compiled: it fuses the per-pixel arithmetic, about 10x faster than op-by-op on CPU.
    """
    height, width = noise.shape[1], noise.shape[2]
    centre, size = _pixel_geometry(objects, height, width)
    ys = tf.range(height, dtype=tf.float32)[:, None]
    xs = tf.range(width, dtype=tf.float32)[None, :]
    dy = ys - centre[..., 0, None, None]
    dx = xs - centre[..., 1, None, None]
    shape_class, aspect, cos, sin = [objects[k][..., None, None] for k in ("class", "aspect", "cos", "sin")]
    gauge = _gauge(shape_class, size[..., None, None], aspect, cos, sin, dy, dx)
    nearest_centre_pixel = (tf.abs(dy) <= 0.5) & (tf.abs(dx) <= 0.5)
    inside = ((gauge <= 1.0) | nearest_centre_pixel) & active[..., None, None]

    direction = scene[:, _BG_DIRECTION, None, None] * (2.0 * math.pi)
    ramp = (ys / height - 0.5) * tf.sin(direction) + (xs / width - 0.5) * tf.cos(direction)
    colour_change = BACKGROUND_GRADIENT * (2.0 * scene[:, _BG_CHANGE : _BG_CHANGE + 3] - 1.0)
    bg_mean = scene[:, _BG_MEAN : _BG_MEAN + 3]
    object_colour = tf.math.floormod(bg_mean[:, None, :] + objects["colour_offset"], 1.0)
    # Slot order is painting priority: the first slot covering a pixel is on top, so the primary (slot 0)
    # is painted last. The image is painted from the index of the slot on top, channel by channel: that
    # keeps XLA from recomputing the gauges per output and its loops fused (each ~10x faster).
    on_top = tf.fill(tf.shape(inside[:, 0]), -1)
    for slot in reversed(range(inside.shape[1])):
        on_top = tf.where(inside[:, slot], slot, on_top)
    mask = tf.zeros_like(on_top)
    channels = [bg_mean[:, c, None, None] + ramp * colour_change[:, c, None, None] for c in range(3)]
    for slot in range(inside.shape[1]):
        here = on_top == slot
        mask = tf.where(here, objects["class"][:, slot, None, None] + 1, mask)
        channels = [tf.where(here, object_colour[:, slot, c, None, None], x) for c, x in enumerate(channels)]
    image = tf.stack(channels, axis=-1)
    return tf.clip_by_value(image + noise, 0.0, 1.0), mask


def _keypoints(objects, height, width):
    """The primary objects' keypoints `(B, NUM_KEYPOINTS, 2)` and visibility `(B, NUM_KEYPOINTS)`."""
    centre, size = _pixel_geometry(objects, height, width)
    shape_class, aspect, cos, sin = [objects[k][:, :1] for k in ("class", "aspect", "cos", "sin")]
    rays = tf.constant(_RAY_DIRECTIONS)
    gauge = _gauge(shape_class, size[:, :1], aspect, cos, sin, rays[:, 0], rays[:, 1])
    keypoints = tf.concat([centre[:, :1], centre[:, :1] + rays / gauge[..., None]], axis=1)
    limit = tf.constant([height - 1, width - 1], tf.float32)
    visible = tf.reduce_all((keypoints >= 0.0) & (keypoints <= limit), axis=-1)
    return keypoints, tf.cast(visible, tf.float32)
