"""The real-data config variants: they validate, and their pipelines give batches under TFDS mocks."""

import numpy as np
import pytest
import tensorflow as tf

from configs import scalenas_cls
from configs import scalenas_pose
from configs import scalenas_seg
from configs import scalenet
from configs import scarlet
from scalenas_tf.data import pipeline
from scalenas_tf.experiment import Experiment

tfds = pytest.importorskip("tensorflow_datasets")

VARIANTS = [
    (scalenas_seg, "w32_cityscapes"),
    (scalenas_pose, "w32_coco"),
    (scalenas_cls, "w18_imagenet"),
    (scalenas_cls, "w8_cifar10"),
    (scarlet, "s2"),
    (scalenet, "official"),
]


def _coco_as_dataset(self, split, decoders=None, read_config=None, **kwargs):
    """Consistent mock COCO examples (TFDS's random mock gives a Sequence's fields different lengths):
    images of 1..3 persons with boxes inside the image and random keypoints."""
    del self, decoders, read_config, kwargs
    rng = np.random.default_rng(0 if split == "train" else 1)

    def examples():
        for image_id in range(4):
            height, width = rng.integers(120, 240, size=2)
            persons = int(rng.integers(1, 4))
            boxes = np.stack(
                [rng.uniform(0, width / 2, persons), rng.uniform(0, height / 2, persons)]
                + [np.full(persons, width / 3), np.full(persons, height / 3)],
                axis=1,
            )
            yield {
                "image": tf.io.encode_jpeg(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).numpy(),
                "image/id": image_id,
                "image/filename": f"{image_id:012d}.jpg",
                "persons": {
                    "bbox": boxes.astype(np.float32),
                    "keypoints": (boxes[:, None, :2] + rng.uniform(0, 30, (persons, 17, 2))).astype(np.float32),
                    "visibility": rng.integers(0, 3, (persons, 17)).astype(np.int32),
                    "area": np.full(persons, 900.0, np.float32),
                    "num_keypoints": np.full(persons, 10, np.int32),
                    "annotation_id": np.arange(persons, dtype=np.int64),
                },
            }

    spec = {
        "image": tf.TensorSpec([], tf.string),
        "image/id": tf.TensorSpec([], tf.int64),
        "image/filename": tf.TensorSpec([], tf.string),
        "persons": {
            "bbox": tf.TensorSpec([None, 4], tf.float32),
            "keypoints": tf.TensorSpec([None, 17, 2], tf.float32),
            "visibility": tf.TensorSpec([None, 17], tf.int32),
            "area": tf.TensorSpec([None], tf.float32),
            "num_keypoints": tf.TensorSpec([None], tf.int32),
            "annotation_id": tf.TensorSpec([None], tf.int64),
        },
    }
    return tf.data.Dataset.from_generator(examples, output_signature=spec)


@pytest.mark.parametrize("module, variant", VARIANTS, ids=[v for _, v in VARIANTS])
def test_real_data_variant_gives_batches(module, variant):
    experiment = Experiment.from_config(module.get_config(variant), require=("data", "train", "search"))
    data, model = experiment.data, experiment.model
    assert data.source != "shapes" and data.source_kwargs["download"] is False
    size = tuple(min(s, 256) for s in model.input_size)  # small crops keep the test fast
    as_dataset = _coco_as_dataset if data.source == "coco_keypoints" else None
    with tfds.testing.mock_data(num_examples=4, as_dataset_fn=as_dataset):
        for split in ("train", "validation"):
            dataset = pipeline.make_dataset(
                model.task, split, 2, size, source=data.source, source_kwargs=data.source_kwargs
            )
            images, targets = next(iter(dataset))
            assert images.shape[0] == 2 and images.shape[-1] == 3
            if model.task == "cls":
                assert np.all((targets.numpy() >= 0) & (targets.numpy() < model.num_classes))
            elif model.task == "seg":
                labels = set(np.unique(targets.numpy()))
                assert labels <= set(range(model.num_classes)) | {255}
            else:
                assert targets["heatmaps"].shape[-1] == model.num_classes


def test_cityscapes_variant_scores_full_resolution():
    config = scalenas_seg.get_config("w32_cityscapes")
    assert tuple(config.model.input_size) == (512, 1024)
    assert tuple(config.data.source_kwargs.validation_size) == (1024, 2048)
    assert config.search_space.fusion_upsampling == "nearest" and config.search_space.bn_momentum == 0.99
    with tfds.testing.mock_data(num_examples=2):
        kwargs = dict(config.data.source_kwargs)
        images, masks = next(
            iter(pipeline.make_dataset("seg", "validation", 1, (512, 1024), source="cityscapes", source_kwargs=kwargs))
        )
    assert images.shape == (1, 1024, 2048, 3) and masks.shape == (1, 1024, 2048)


def test_variant_names_are_checked():
    with pytest.raises(ValueError, match="dataset must be one of"):
        scalenas_seg.get_config("w32_coco")
    with pytest.raises(ValueError, match="width"):
        scalenas_pose.get_config("x_coco")


def test_manual_dir_on_the_command_line_reaches_the_source(tmp_path):
    config = scalenas_cls.get_config("w18_imagenet")
    config.data.source_kwargs.manual_dir = str(tmp_path / "absent")
    experiment = Experiment.from_config(config, require=("data",))
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        pipeline.make_dataset(
            "cls",
            "train",
            2,
            (224, 224),
            source="imagenet2012",
            source_kwargs={**experiment.data.source_kwargs, "data_dir": str(tmp_path)},
        )
