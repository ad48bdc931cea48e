"""The procedural `shapes` source: determinism, fields, scale spread, class balance and keypoints."""

import numpy as np
import pytest

from scalenas_tf.data import shapes


def _examples(split="validation", **kwargs):
    return list(shapes.shapes_examples(split, **kwargs).as_numpy_iterator())


@pytest.fixture(scope="module")
def train400():
    return _examples("train", num_examples=400)


def _assert_identical(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_deterministic_by_seed():
    first = _examples(num_examples=24, seed=3)
    _assert_identical(first, _examples(num_examples=24, seed=3))
    other = _examples(num_examples=24, seed=4)
    assert not np.array_equal(np.stack([e["image"] for e in first]), np.stack([e["image"] for e in other]))


def test_example_does_not_depend_on_num_examples():
    # Examples are drawn in chunks of CHUNK_SIZE; a shorter dataset is a prefix of a longer one.
    _assert_identical(_examples(num_examples=21), _examples(num_examples=40)[:21])


def test_train_and_validation_differ():
    train, validation = _examples("train", num_examples=16), _examples("validation", num_examples=16)
    for t, v in zip(train, validation):
        assert not np.array_equal(t["image"], v["image"])


def test_default_sizes():
    assert shapes.shapes_examples("train").cardinality().numpy() == shapes.DEFAULT_NUM_EXAMPLES["train"] == 2048
    assert shapes.shapes_examples("validation").cardinality().numpy() == shapes.DEFAULT_NUM_EXAMPLES["validation"]


@pytest.mark.parametrize("image_size", [(64, 64), (48, 80)])
def test_fields(image_size):
    height, width = image_size
    examples = _examples(image_size=image_size, num_examples=40, max_objects=3)
    assert len(examples) == 40
    for e in examples:
        assert e["image"].shape == (height, width, 3) and e["image"].dtype == np.float32
        assert 0.0 <= e["image"].min() and e["image"].max() <= 1.0
        assert e["mask"].shape == (height, width) and e["mask"].dtype == np.int32
        assert 0 <= e["mask"].min() and e["mask"].max() <= shapes.NUM_SHAPE_CLASSES
        assert e["keypoints"].shape == (shapes.NUM_KEYPOINTS, 2) and e["keypoints"].dtype == np.float32
        assert e["keypoint_visible"].shape == (shapes.NUM_KEYPOINTS,) and e["keypoint_visible"].dtype == np.float32
        assert e["label"].shape == () and e["label"].dtype == np.int32
        assert 0 <= e["label"] < shapes.NUM_SHAPE_CLASSES
        inside = np.all((e["keypoints"] >= 0) & (e["keypoints"] <= [height - 1, width - 1]), axis=-1)
        np.testing.assert_array_equal(e["keypoint_visible"], inside.astype(np.float32))
    # The image is not flat: a gradient plus noise in the background.
    assert all(e["image"][e["mask"] == 0].std() > 0.01 for e in examples)


def test_same_scenes_at_every_resolution():
    small = _examples(num_examples=16, image_size=(64, 64))
    large = _examples(num_examples=16, image_size=(128, 128))
    for s, big in zip(small, large):
        assert s["label"] == big["label"]
        # Pixel (i, j) is centred at (i, j): image coordinate y maps to (y + 0.5) * 2 - 0.5.
        np.testing.assert_allclose((s["keypoints"] + 0.5) * 2 - 0.5, big["keypoints"], atol=1e-4)


def test_object_scales_vary(train400):
    # Primary-object area from the mask (same-class distractors included), as a fraction of the image.
    areas = np.array([np.mean(e["mask"] == e["label"] + 1) for e in train400[:200]])
    assert areas.min() < 0.01
    assert areas.max() > 0.3
    assert np.mean(areas < 0.01) > 0.1 and np.mean(areas > 0.1) > 0.1


def test_min_size_removes_the_smallest_objects():
    examples = _examples("train", num_examples=200, min_size=0.12)
    areas = np.array([np.mean(e["mask"] == e["label"] + 1) for e in examples])
    # A primary object of side >= 0.12 covers >= ~0.12^2 x its shape's fill of the image.
    assert areas.min() > 0.004 and np.mean(areas < 0.01) < 0.05
    assert areas.max() > 0.3


def test_classes_balanced(train400):
    counts = np.bincount([e["label"] for e in train400], minlength=shapes.NUM_SHAPE_CLASSES)
    assert len(counts) == shapes.NUM_SHAPE_CLASSES
    assert np.all(counts / counts.sum() > 0.15) and np.all(counts / counts.sum() < 0.35), counts
    painted = np.bincount(np.concatenate([np.unique(e["mask"]) for e in train400]))
    assert np.all(painted[1:] > 0.5 * painted[1:].max()), painted


def test_keypoints_on_primary_object(train400):
    for e in train400:
        primary = np.argwhere(e["mask"] == e["label"] + 1)
        centre = np.round(e["keypoints"][0]).astype(int)
        # The pixel nearest the centre always belongs to the primary object, which is painted on top.
        assert e["keypoint_visible"][0] == 1 and e["mask"][centre[0], centre[1]] == e["label"] + 1
        for keypoint, visible in zip(e["keypoints"][1:], e["keypoint_visible"][1:]):
            if visible:
                # Boundary points: within 2 px of a primary pixel centre (measured max 1.6 px, tiny objects).
                assert np.sqrt(((primary - keypoint) ** 2).sum(-1)).min() < 2.0


def test_some_keypoints_invisible(train400):
    visible = np.stack([e["keypoint_visible"] for e in train400])
    assert 0.8 < visible[:, 1:].mean() < 1.0


@pytest.mark.parametrize(
    "name, value",
    [
        ("split", "test"),
        ("image_size", (8, 64)),
        ("image_size", (64,)),
        ("image_size", (64.0, 64)),
        ("num_examples", 0),
        ("seed", -1),
        ("max_objects", 0),
        ("max_objects", True),
        ("min_size", 0.0),
        ("min_size", 0.9),
        ("min_size", "0.1"),
    ],
)
def test_bad_arguments(name, value):
    kwargs = {"split": "train", name: value}
    with pytest.raises(ValueError, match=name) as error:
        shapes.shapes_examples(**kwargs)
    assert f"{name}={value!r}" in str(error.value)
