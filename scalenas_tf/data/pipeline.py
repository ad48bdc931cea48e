"""Task pipelines: `(images, targets)` batches for the cls, seg and pose heads from a registered source.

A source (`Source`, registered in `SOURCES`) names the tasks it serves with their class counts and
loads a split as `Examples`: a dataset plus, for real data, a `prepare` function that decodes and
augments each example under a stateless seed. Prepared examples have the keys of
`shapes.shapes_examples` that their task reads: `"image"` float32 `(H, W, 3)` in [0, 1], `"label"`
(cls), `"mask"` (seg), `"keypoints"` and `"keypoint_visible"` (pose). The embedded `shapes` source is
deterministic and cached in memory; the TFDS sources (`tfds_sources`: `cifar10`, `imagenet2012`,
`cityscapes`, `coco_keypoints`) are shuffled encoded and prepared after the shuffle, each example
with the seed `(seed, its position in the stream)`, so every epoch sees new augmentations and a
run replays exactly.

Preprocessing, which an exported model documents as its input contract: an RGB image scaled to
[0, 1] is normalized per channel as `(image01 - MEAN) / STD` (the ImageNet statistics).

Targets:
    cls: int32 `(B,)`, the label.
    seg: int32 `(B, H, W)`, the mask: 0 background, 1..NUM_SHAPE_CLASSES the shape classes
        (`num_classes("seg")` = NUM_SHAPE_CLASSES + 1). `IGNORE_LABEL` is reserved for pixels a loss
        must skip; the shapes source labels every pixel.
    pose: `{"heatmaps": float32 (B, ceil(H / 4), ceil(W / 4), NUM_KEYPOINTS),
        "target_weight": float32 (B, NUM_KEYPOINTS)}`, HRNet's top-down targets: heatmap pixel
        `(i, j)` covers the image pixels `4i..4i+3` x `4j..4j+3`; each visible keypoint gets an
        unnormalized Gaussian (peak 1, standard deviation `heatmap_sigma` heatmap pixels) centred on
        the heatmap pixel holding it; an invisible keypoint gets an all-zero map and weight 0.
"""

import dataclasses
import functools
import math
from collections.abc import Callable
from collections.abc import Mapping

import tensorflow as tf

from scalenas_tf import tasks
from scalenas_tf.data import shapes
from scalenas_tf.data import tfds_sources

IGNORE_LABEL = tasks.IGNORE_LABEL
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
HEATMAP_STRIDE = 4
SHUFFLE_BUFFER = 4096
SPLITS = ("train", "validation")


@dataclasses.dataclass(frozen=True)
class Examples:
    """A loaded split.

    Attributes:
        dataset: the examples. With `prepare` None they are final (the keys above) and deterministic,
            so the pipeline caches them in memory.
        prepare: None, or `(example, seed) -> example dict` run per example after the shuffle, with a
            stateless `(2,)` int64 seed.
    """

    dataset: tf.data.Dataset
    prepare: Callable | None = None


@dataclasses.dataclass(frozen=True)
class Source:
    """A dataset: `load(split, image_size, num_examples=None, seed=0, **source_kwargs) -> Examples`, and
    the tasks it serves mapped to their head's output channels.

    A pose source scored by COCO keypoint AP also gives `ground_truth(split, **source_kwargs)` (a
    COCO-format dict), the `pose_fields` its examples carry for mapping predictions back to the
    image (`transform`, `image_id`, `annotation_id`) and the `flip_pairs` of its joints.
    """

    load: Callable[..., Examples]
    num_classes: Mapping[str, int]
    ground_truth: Callable[..., dict] | None = None
    pose_fields: tuple[str, ...] = ()
    flip_pairs: tuple[tuple[int, int], ...] = ()


def _load_shapes(split, image_size, num_examples=None, seed=0, **kwargs):
    return Examples(
        shapes.shapes_examples(split, image_size=image_size, num_examples=num_examples, seed=seed, **kwargs)
    )


SOURCES = {
    "shapes": Source(
        _load_shapes,
        {"cls": shapes.NUM_SHAPE_CLASSES, "seg": shapes.NUM_SHAPE_CLASSES + 1, "pose": shapes.NUM_KEYPOINTS},
    ),
    "cifar10": Source(tfds_sources.classification("cifar10", 10), {"cls": 10}),
    "imagenet2012": Source(tfds_sources.classification("imagenet2012", 1000), {"cls": 1000}),
    "cityscapes": Source(tfds_sources.cityscapes, {"seg": len(tfds_sources.CITYSCAPES_CLASS_NAMES)}),
    "coco_keypoints": Source(
        tfds_sources.coco_keypoints,
        {"pose": 17},
        ground_truth=tfds_sources.coco_ground_truth,
        pose_fields=("transform", "image_id", "annotation_id"),
        flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    ),
}
# The example fields each task reads.
_TASK_FIELDS = {"cls": ("image", "label"), "seg": ("image", "mask"), "pose": ("image", "keypoints", "keypoint_visible")}


def normalize(image01):
    """Normalizes RGB images in [0, 1] as `(image01 - MEAN) / STD`.

    Args:
        image01: float tensor `(..., 3)` in [0, 1].

    Returns:
        A float32 tensor of the same shape.
    """
    return (tf.cast(image01, tf.float32) - tf.constant(MEAN)) / tf.constant(STD)


def denormalize(images):
    """The inverse of `normalize`: `images * STD + MEAN` (float32), e.g. to feed an exported model."""
    return tf.cast(images, tf.float32) * tf.constant(STD) + tf.constant(MEAN)


def num_classes(task, source="shapes"):
    """Output channels of the task's head for a source.

    Args:
        task: `"cls"`, `"seg"` or `"pose"`.
        source: a key of `SOURCES`.

    Returns:
        int: classes (cls), classes including background (seg) or keypoints (pose).

    Raises:
        ValueError: for an unknown task or source.
    """
    _check_choice("task", task, tasks.TASKS)
    _check_choice("source", source, tuple(SOURCES))
    _check_serves(source, task)
    return SOURCES[source].num_classes[task]


def _check_serves(source, task):
    served = tuple(SOURCES[source].num_classes)
    if task not in served:
        raise ValueError(f"Source {source!r} has data for the tasks {served} only. Received: task={task!r}")


def make_dataset(
    task,
    split,
    batch_size,
    input_size=(64, 64),
    source="shapes",
    seed=0,
    num_examples=None,
    shuffle=None,
    repeat=None,
    drop_remainder=None,
    heatmap_sigma=2.0,
    source_kwargs=None,
    pose_fields=(),
):
    """`(images, targets)` batches for one task.

    The fields of the source's examples that the task reads are cached in memory after their first
    pass (they are deterministic; 2048 examples at 64x64 take about 100 MB), then shuffled (buffer
    `SHUFFLE_BUFFER`), repeated and batched as asked; the targets are built per batch.

    Args:
        task: `"cls"`, `"seg"` or `"pose"`.
        split: `"train"` or `"validation"`.
        batch_size: int > 0.
        input_size: `(height, width)` of the images, two ints >= 16.
        source: a key of `SOURCES`.
        seed: int >= 0, for the source's examples and the shuffle order.
        num_examples: int > 0, or None for the source's default for the split.
        shuffle: bool; None shuffles the train split only. Seeded, so the order is deterministic.
        repeat: bool; None repeats the train split only (forever).
        drop_remainder: bool; None drops a last partial batch of the train split only.
        heatmap_sigma: float > 0, the pose Gaussians' standard deviation in heatmap pixels.
        source_kwargs: dict of extra keyword arguments for the source (e.g. `{"min_size": 0.1}` for
            `shapes`).
        pose_fields: extra example fields a pose source gives, added to the targets dict (e.g.
            `("transform", "image_id")` of `coco_keypoints`, to map predictions back to the image).

    Returns:
        A `tf.data.Dataset` of `(images, targets)`: images float32 `(B, H, W, 3)` normalized by
        `normalize`; targets as in the module docstring.

    Raises:
        ValueError: for an argument out of its domain, naming it and its value.
    """
    _check_choice("task", task, tasks.TASKS)
    _check_choice("split", split, SPLITS)
    _check_choice("source", source, tuple(SOURCES))
    _check_serves(source, task)
    input_size = shapes.check_image_size(input_size, name="input_size")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an int >= 1. Received: batch_size={batch_size!r}")
    if isinstance(heatmap_sigma, bool) or not isinstance(heatmap_sigma, (int, float)) or not heatmap_sigma > 0:
        raise ValueError(f"`heatmap_sigma` must be a number > 0. Received: heatmap_sigma={heatmap_sigma!r}")
    training = split == "train"
    shuffle = _flag("shuffle", shuffle, default=training)
    repeat = _flag("repeat", repeat, default=training)
    drop_remainder = _flag("drop_remainder", drop_remainder, default=training)
    try:
        loaded = SOURCES[source].load(
            split, image_size=input_size, num_examples=num_examples, seed=seed, **dict(source_kwargs or {})
        )
    except TypeError as e:
        raise ValueError(f"`source_kwargs` {dict(source_kwargs or {})} do not fit source {source!r}: {e}") from None
    pose_fields = tuple(pose_fields)
    if pose_fields and task != "pose":
        raise ValueError(f"`pose_fields` are for the pose task. Received: task={task!r}, pose_fields={pose_fields}")
    fields = _TASK_FIELDS[task] + pose_fields
    examples = loaded.dataset
    if loaded.prepare is None:
        examples = examples.map(lambda example: {k: example[k] for k in fields}).cache()
    if shuffle:
        examples = examples.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        examples = examples.repeat()
    if loaded.prepare is not None:
        prepare = loaded.prepare

        def prepared(position, example):
            example = prepare(example, tf.stack([tf.constant(seed, tf.int64), position]))
            return {k: example[k] for k in fields}

        examples = examples.enumerate().map(prepared, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    batches = examples.batch(batch_size, drop_remainder=drop_remainder)
    batches = batches.map(
        _batch_fn(task, heatmap_sigma, pose_fields), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return batches.prefetch(tf.data.AUTOTUNE)


def gaussian_heatmaps(keypoints, visible, heatmap_size, sigma):
    """HRNet-style keypoint heatmaps at stride `HEATMAP_STRIDE`.

    Args:
        keypoints: float `(B, K, 2)`, `(y, x)` image pixel coordinates.
        visible: float `(B, K)`, 1 for a visible keypoint, else 0 (its map is all zero).
        heatmap_size: `(h, w)` of the maps.
        sigma: float, the Gaussian's standard deviation in heatmap pixels.

    Returns:
        float32 `(B, h, w, K)`: a Gaussian of peak 1 at the heatmap pixel holding each keypoint. Heatmap
        pixel `(i, j)` covers image pixels `4i..4i+3` x `4j..4j+3`, so it decodes to `(4i + 1.5, 4j + 1.5)`.
    """
    centre = tf.floor((tf.cast(keypoints, tf.float32) + 0.5) / HEATMAP_STRIDE)
    ys = tf.range(heatmap_size[0], dtype=tf.float32)[None, :, None, None]
    xs = tf.range(heatmap_size[1], dtype=tf.float32)[None, None, :, None]
    squared_distance = (ys - centre[:, None, None, :, 0]) ** 2 + (xs - centre[:, None, None, :, 1]) ** 2
    return tf.exp(-squared_distance / (2.0 * sigma**2)) * visible[:, None, None, :]


def _check_choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}. Received: {name}={value!r}")


def _flag(name, value, default):
    """`default` for None, else the bool `value`."""
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be a bool or None. Received: {name}={value!r}")
    return value


def _batch_fn(task, heatmap_sigma, pose_fields=()):
    """The function from a batch of example fields to `(images, targets)`."""
    if task == "pose":
        return functools.partial(_pose_batch, heatmap_sigma=float(heatmap_sigma), extra=pose_fields)
    return _cls_batch if task == "cls" else _seg_batch


def _cls_batch(batch):
    return normalize(batch["image"]), tf.cast(batch["label"], tf.int32)


def _seg_batch(batch):
    return normalize(batch["image"]), tf.cast(batch["mask"], tf.int32)


def _pose_batch(batch, heatmap_sigma, extra=()):
    image = batch["image"]
    visible = tf.cast(batch["keypoint_visible"], tf.float32)
    size = (math.ceil(image.shape[1] / HEATMAP_STRIDE), math.ceil(image.shape[2] / HEATMAP_STRIDE))
    targets = {
        "heatmaps": gaussian_heatmaps(batch["keypoints"], visible, size, heatmap_sigma),
        "target_weight": visible,
        **{name: batch[name] for name in extra},
    }
    return normalize(image), targets
