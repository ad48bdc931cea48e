"""TFDS sources under `tfds.testing.mock_data` (never the network): batches, label maps, determinism,
and the immediate failure when a dataset is absent."""

import time

import numpy as np
import pytest
import tensorflow as tf

from scalenas_tf.data import pipeline
from scalenas_tf.data import tfds_sources
from scalenas_tf.tasks import IGNORE_LABEL

tfds = pytest.importorskip("tensorflow_datasets")


def _batches(task, split, source, count=1, **kwargs):
    kwargs.setdefault("seed", 3)
    with tfds.testing.mock_data(num_examples=6):
        dataset = pipeline.make_dataset(task, split, source=source, **kwargs)
        return [tf.nest.map_structure(lambda t: t.numpy(), batch) for batch in dataset.take(count)]


def test_cityscapes_train_ids_match_the_label_table():
    # cityscapesscripts/helpers/labels.py, by name: the 19 evaluated classes and their label ids.
    evaluated = {
        "road": 7, "sidewalk": 8, "building": 11, "wall": 12, "fence": 13, "pole": 17, "traffic light": 19,
        "traffic sign": 20, "vegetation": 21, "terrain": 22, "sky": 23, "person": 24, "rider": 25, "car": 26,
        "truck": 27, "bus": 28, "train": 31, "motorcycle": 32, "bicycle": 33,
    }  # fmt: skip
    ids = np.arange(256)
    train_ids = tfds_sources.cityscapes_train_ids(ids).numpy()
    for train_id, name in enumerate(tfds_sources.CITYSCAPES_CLASS_NAMES):
        assert train_ids[evaluated[name]] == train_id, name
    ignored = sorted(set(range(256)) - set(evaluated.values()))
    assert np.all(train_ids[ignored] == IGNORE_LABEL)
    # Parking (9), guard rail (14), caravan (29), trailer (30), license plate (-1) are not evaluated.
    assert tfds_sources.cityscapes_train_ids(tf.constant([9, 14, 29, 30, -1])).numpy().tolist() == [255] * 5


def test_cityscapes_batches():
    ((images, masks),) = _batches("seg", "train", "cityscapes", batch_size=2, input_size=(64, 128))
    assert images.shape == (2, 64, 128, 3) and masks.shape == (2, 64, 128) and masks.dtype == np.int32
    assert set(np.unique(masks)) <= set(range(19)) | {IGNORE_LABEL}
    ((images, masks),) = _batches("seg", "validation", "cityscapes", batch_size=2, input_size=(64, 128))
    # Validation: the image at the input size, the labels at full resolution for the metric.
    assert images.shape == (2, 64, 128, 3) and masks.shape == (2, 1024, 2048)


def test_real_data_is_deterministic_and_augmented_per_position():
    first = _batches("seg", "train", "cityscapes", count=2, batch_size=2, input_size=(32, 64), num_examples=2)
    again = _batches("seg", "train", "cityscapes", count=2, batch_size=2, input_size=(32, 64), num_examples=2)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    # The second epoch shows the same two examples with new crops.
    assert not np.array_equal(first[0][0], first[1][0])


@pytest.mark.parametrize("source, num_classes, size", [("cifar10", 10, (32, 32)), ("imagenet2012", 1000, (48, 40))])
@pytest.mark.parametrize("split", ["train", "validation"])
def test_classification_batches(source, num_classes, size, split):
    ((images, labels),) = _batches("cls", split, source, batch_size=3, input_size=size)
    assert images.shape == (3, *size, 3) and images.dtype == np.float32
    low, high = pipeline.normalize(tf.zeros(3)).numpy(), pipeline.normalize(tf.ones(3)).numpy()
    assert np.all(images >= low - 1e-4) and np.all(images <= high + 1e-4)
    assert labels.shape == (3,) and labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < num_classes
    assert pipeline.num_classes("cls", source) == num_classes


def test_source_refuses_a_task_it_has_no_data_for():
    with pytest.raises(ValueError, match="'cityscapes' has data for the tasks \\('seg',\\) only"):
        pipeline.make_dataset("cls", "train", 2, source="cityscapes")
    with pytest.raises(ValueError, match="tasks"):
        pipeline.num_classes("pose", "imagenet2012")


@pytest.mark.parametrize(
    "source, task, hint", [("cifar10", "cls", "download=True"), ("cityscapes", "seg", "gtFine_trainvaltest.zip")]
)
def test_absent_data_fails_at_once_saying_where_to_put_it(tmp_path, source, task, hint):
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match=hint) as error:
        pipeline.make_dataset(task, "train", 2, source=source, source_kwargs={"data_dir": str(tmp_path)})
    assert str(tmp_path) in str(error.value)
    assert time.monotonic() - start < 30  # no network retries (TFDS's GCS fallback takes ~200 s)


def test_manual_dir_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        pipeline.make_dataset(
            "seg",
            "train",
            2,
            source="cityscapes",
            source_kwargs={"data_dir": str(tmp_path), "manual_dir": str(tmp_path / "absent")},
        )


def test_bad_source_kwargs_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="download"):
        pipeline.make_dataset("cls", "train", 2, source="cifar10", source_kwargs={"download": "yes"})
    with pytest.raises(ValueError, match="do not fit source 'cifar10'"):
        pipeline.make_dataset("cls", "train", 2, source="cifar10", source_kwargs={"crop": 3})
