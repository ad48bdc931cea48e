"""coco_keypoints: the TFDS builder on a tiny COCO directory, its filters and clipping, `load` and detections."""

import functools
import json
import shutil
import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath

from scalenas_tf.data import coco_keypoints

# === A tiny COCO 2017 keypoints directory ===
# Image id -> (width, height). Images 2 and 3 (train) and 12 (validation) keep no person.
_TRAIN_IMAGES = {1: (64, 48), 2: (32, 40), 3: (36, 36), 4: (40, 32)}
_VAL_IMAGES = {10: (48, 64), 11: (24, 24), 12: (30, 20)}
_PERSON, _DOG = 1, 18


def _keypoints(x0, y0, visibility):
    """51 COCO keypoint values: keypoint i at (x0 + i, y0 + i / 2) with flag `visibility[i]`; (0, 0, 0) if 0."""
    values = []
    for i, v in enumerate(visibility):
        values += [x0 + i, y0 + i / 2, v] if v else [0, 0, 0]
    return values


_VIS_A = [2] * 17
_VIS_B = [0, 1, 2] * 5 + [2, 0]
_VIS_ONE = [0] * 16 + [1]


def _annotation(ann_id, image_id, bbox, keypoints, category_id=_PERSON, iscrowd=0, area=100.0):
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "iscrowd": iscrowd,
        "bbox": bbox,
        "area": area,
        "keypoints": keypoints,
        "num_keypoints": sum(1 for v in keypoints[2::3] if v > 0),
    }


_TRAIN_ANNOTATIONS = [
    _annotation(101, 1, [10, 5, 20, 30], _keypoints(12, 8, _VIS_A), area=450.5),
    _annotation(102, 1, [-5.5, 40.0, 80.0, 20.0], _keypoints(3, 41, _VIS_B)),  # spills out of the 64 x 48 image
    _annotation(103, 1, [0, 0, 30, 30], _keypoints(1, 1, _VIS_A), iscrowd=1),  # crowd: dropped
    _annotation(201, 2, [2, 2, 10, 10], [0] * 51),  # no labelled keypoint: dropped
    _annotation(202, 2, [2, 2, 10, 10], _keypoints(3, 3, _VIS_A), category_id=_DOG),  # not a person: dropped
    _annotation(401, 4, [1, 2, 3, 4], _keypoints(1, 2, _VIS_ONE)),
    _annotation(402, 4, [20.25, 10.5, 5.5, 8.0], _keypoints(21, 11, _VIS_B)),
    _annotation(403, 4, [50, 0, 10, 10], _keypoints(2, 2, _VIS_A)),  # entirely right of the 40-wide image: dropped
    _annotation(404, 4, [0, 0, 39, 31], _keypoints(5, 5, _VIS_A), area=0.0),  # zero area: dropped
    _annotation(405, 4, [30, 25, 0.5, 20], _keypoints(31, 26, _VIS_A)),  # w < 1, h spills: kept
]
_VAL_ANNOTATIONS = [
    _annotation(1001, 10, [4, 6, 40, 50], _keypoints(5, 7, _VIS_B)),
    _annotation(1101, 11, [0, 0, 24, 24], _keypoints(2, 2, _VIS_A)),  # the whole 24 x 24 image
    _annotation(1102, 11, [1, 1, 5, 5], [0] * 51),  # no labelled keypoint: dropped
    _annotation(1201, 12, [1, 1, 5, 5], _keypoints(2, 2, _VIS_A), category_id=_DOG),  # not a person: dropped
]
# The boxes HRNet's rule gives, worked out by hand (x2 = min(W - 1, x1 + max(0, w - 1)), etc.).
_EXPECTED_BOXES = {
    101: [10, 5, 19, 29],  # x2 = 10 + 19, y2 = 5 + 29: inside.
    102: [0, 40, 63, 7],  # x1 = 0, x2 = min(63, 0 + 79) = 63; y2 = min(47, 40 + 19) = 47.
    401: [1, 2, 2, 3],
    402: [20.25, 10.5, 4.5, 7.0],
    405: [30, 25, 0, 6],  # x2 = 30 + max(0, -0.5) = 30; y2 = min(31, 25 + 19) = 31.
    1001: [4, 6, 39, 49],
    1101: [0, 0, 23, 23],
}
_EXPECTED_PERSONS = {"train": {1: [101, 102], 4: [401, 402, 405]}, "validation": {10: [1001], 11: [1101]}}


def _file_name(image_id):
    return f"{image_id:012d}.jpg"


def _image(width, height, seed):
    rows = np.arange(height)[:, None, None] * 4
    cols = np.arange(width)[None, :, None] * 3
    return ((rows + cols + np.array([0, 60, 120]) + seed * 37) % 256).astype(np.uint8)


def write_coco_dir(root):
    """Writes the tiny COCO directory (official layout) under `root` and returns `root` as a path."""
    root = epath.Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for coco_set, images, annotations in (
        ("train2017", _TRAIN_IMAGES, _TRAIN_ANNOTATIONS),
        ("val2017", _VAL_IMAGES, _VAL_ANNOTATIONS),
    ):
        (root / coco_set).mkdir(exist_ok=True)
        for image_id, (width, height) in images.items():
            jpeg = tf.io.encode_jpeg(_image(width, height, image_id)).numpy()
            (root / coco_set / _file_name(image_id)).write_bytes(jpeg)
        data = {
            "images": [{"id": i, "file_name": _file_name(i), "width": w, "height": h} for i, (w, h) in images.items()],
            "annotations": annotations,
            "categories": [{"id": _PERSON, "name": "person"}, {"id": _DOG, "name": "dog"}],
        }
        (root / "annotations" / f"person_keypoints_{coco_set}.json").write_text(json.dumps(data))
    return root


# === The TFDS builder test ===
# tfds.testing's DatasetBuilderTestCase imports `dill` (setup.cfg's test extra installs it).
class CocoKeypointsBuilderTest(tfds.testing.DatasetBuilderTestCase):
    """TFDS's checks: registration, generation from the manual dir, specs, split sizes, reload."""

    DATASET_CLASS = coco_keypoints.CocoKeypoints
    SPLITS = {"train": 2, "validation": 2}

    @classmethod
    def setUpClass(cls):
        # The test case passes `dummy_data` (EXAMPLE_DIR) as `dl_manager.manual_dir` when the builder
        # has MANUAL_DOWNLOAD_INSTRUCTIONS; it is memoized on first use, so write it before super().
        cls._dummy_root = tempfile.mkdtemp(prefix="coco_keypoints_dummy_")
        cls.EXAMPLE_DIR = str(write_coco_dir(cls._dummy_root))
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls._dummy_root)


# === Hand checks of the prepared data ===
@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(data_dir, manual_dir) with the dataset prepared through `load`."""
    manual_dir = write_coco_dir(tmp_path_factory.mktemp("coco"))
    data_dir = tmp_path_factory.mktemp("tfds")
    coco_keypoints.load("train", data_dir=data_dir, manual_dir=manual_dir)
    return data_dir, manual_dir


def _examples(split, data_dir, **as_dataset_kwargs):
    builder = coco_keypoints.CocoKeypoints(data_dir=data_dir)
    return {int(ex["image/id"]): ex for ex in tfds.as_numpy(builder.as_dataset(split=split, **as_dataset_kwargs))}


def _annotation_by_id():
    return {a["id"]: a for a in _TRAIN_ANNOTATIONS + _VAL_ANNOTATIONS}


@pytest.mark.parametrize("split", ["train", "validation"])
def test_filters_keep_expected_persons(prepared, split):
    examples = _examples(split, prepared[0])
    # Crowd, zero-keypoint, non-person, empty-box and zero-area persons are dropped; images without a
    # kept person (2 and 3 in train, 12 in validation) are skipped.
    assert {i: ex["persons"]["annotation_id"].tolist() for i, ex in examples.items()} == _EXPECTED_PERSONS[split]


@pytest.mark.parametrize("split", ["train", "validation"])
def test_person_values_match_json(prepared, split):
    annotations = _annotation_by_id()
    for image_id, ex in _examples(split, prepared[0]).items():
        persons = ex["persons"]
        assert ex["image/filename"].decode() == _file_name(image_id)
        for j, ann_id in enumerate(persons["annotation_id"]):
            annotation = annotations[int(ann_id)]
            flat = np.asarray(annotation["keypoints"], np.float32)
            np.testing.assert_array_equal(persons["bbox"][j], np.float32(_EXPECTED_BOXES[int(ann_id)]))
            np.testing.assert_array_equal(persons["keypoints"][j][:, 0], flat[0::3])
            np.testing.assert_array_equal(persons["keypoints"][j][:, 1], flat[1::3])
            np.testing.assert_array_equal(persons["visibility"][j], flat[2::3].astype(np.int32))
            assert persons["area"][j] == np.float32(annotation["area"])
            assert persons["num_keypoints"][j] == annotation["num_keypoints"]


def test_feature_dtypes_and_shapes(prepared):
    ex = _examples("train", prepared[0])[4]
    persons = ex["persons"]
    assert persons["bbox"].shape == (3, 4) and persons["bbox"].dtype == np.float32
    assert persons["keypoints"].shape == (3, 17, 2) and persons["keypoints"].dtype == np.float32
    assert persons["visibility"].shape == (3, 17) and persons["visibility"].dtype == np.int32
    assert persons["area"].dtype == np.float32 and persons["num_keypoints"].dtype == np.int32
    assert persons["annotation_id"].dtype == np.int64 and ex["image/id"].dtype == np.int64
    # Keypoint 16 (right_ankle) is the one labelled keypoint of annotation 401, at (1 + 16, 2 + 8).
    np.testing.assert_array_equal(persons["visibility"][0], [0] * 16 + [1])
    np.testing.assert_array_equal(persons["keypoints"][0][16], [17.0, 10.0])


@pytest.mark.parametrize("split, images", [("train", _TRAIN_IMAGES), ("validation", _VAL_IMAGES)])
def test_images_decode_to_source_shape(prepared, split, images):
    for image_id, ex in _examples(split, prepared[0]).items():
        width, height = images[image_id]
        assert ex["image"].shape == (height, width, 3) and ex["image"].dtype == np.uint8


def test_image_bytes_are_the_source_jpeg(prepared):
    data_dir, manual_dir = prepared
    examples = _examples("validation", data_dir, decoders={"image": tfds.decode.SkipDecoding()})
    for image_id, ex in examples.items():
        assert ex["image"] == (manual_dir / "val2017" / _file_name(image_id)).read_bytes()


def test_load_reuses_prepared_data(prepared):
    data_dir, _ = prepared
    ds = coco_keypoints.load("validation", data_dir=data_dir, manual_dir="/nonexistent/coco")
    assert sorted(int(ex["image/id"]) for ex in tfds.as_numpy(ds)) == [10, 11]


def test_clip_bbox():
    assert coco_keypoints.clip_bbox([-5.5, 40, 80, 20], width=64, height=48) == [0, 40, 63, 7]
    assert coco_keypoints.clip_bbox([50, 0, 10, 10], width=40, height=32) is None


def test_constants():
    assert len(coco_keypoints.KEYPOINT_NAMES) == len(coco_keypoints.SIGMAS) == 17
    assert coco_keypoints.KEYPOINT_NAMES[0] == "nose" and coco_keypoints.KEYPOINT_NAMES[16] == "right_ankle"
    for left, right in coco_keypoints.FLIP_PAIRS:
        assert coco_keypoints.KEYPOINT_NAMES[left].startswith("left_")
        assert coco_keypoints.KEYPOINT_NAMES[right] == coco_keypoints.KEYPOINT_NAMES[left].replace("left_", "right_")
        assert coco_keypoints.SIGMAS[left] == coco_keypoints.SIGMAS[right]
    np.testing.assert_allclose(coco_keypoints.SIGMAS[:3], [0.026, 0.025, 0.025])


# === Missing data ===
def test_load_without_data_raises_file_not_found(tmp_path):
    data_dir, manual_dir = tmp_path / "tfds", tmp_path / "empty"
    manual_dir.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        coco_keypoints.load("train", data_dir=data_dir, manual_dir=manual_dir)
    message = str(info.value)
    assert "'train'" in message and f"data_dir={data_dir}" in message and f"manual_dir={manual_dir}" in message
    for expected in (
        "annotations/person_keypoints_train2017.json (missing)",
        "annotations/person_keypoints_val2017.json (missing)",
        f"{manual_dir}/train2017 (missing)",
        f"{manual_dir}/val2017 (missing)",
        "http://images.cocodataset.org/zips/train2017.zip",
        "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
    ):
        assert expected in message
    assert not (data_dir / "coco_keypoints").exists()  # nothing was prepared or half-written


def test_load_names_only_missing_files(tmp_path):
    manual_dir = write_coco_dir(tmp_path / "coco")
    (manual_dir / "annotations" / "person_keypoints_val2017.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"person_keypoints_val2017\.json \(missing\)") as info:
        coco_keypoints.load("validation", data_dir=tmp_path / "tfds", manual_dir=manual_dir)
    assert "person_keypoints_train2017.json (missing)" not in str(info.value)


def test_builder_names_missing_manual_files(tmp_path):
    manual_dir = write_coco_dir(tmp_path / "coco")
    shutil.rmtree(manual_dir / "train2017")
    builder = tfds.builder("coco_keypoints", data_dir=tmp_path / "tfds")
    config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
    with pytest.raises(FileNotFoundError, match=f"missing in manual_dir={manual_dir}: {manual_dir}/train2017\n"):
        builder.download_and_prepare(download_config=config)


# === Person detections ===
_DETECTIONS = [
    {"image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.9},
    {"image_id": 1, "category_id": 1, "bbox": [5.5, 6, 7, 8], "score": 0.3},
    {"image_id": 1, "category_id": 18, "bbox": [0, 0, 9, 9], "score": 0.99},  # a dog: ignored
    {"image_id": 7, "category_id": 1, "bbox": [0, 0, 10, 20], "score": 0.5},
]


def _write_json(path, value):
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return path


def test_load_person_detections(tmp_path):
    path = _write_json(tmp_path / "dets.json", _DETECTIONS)
    assert coco_keypoints.load_person_detections(path) == {
        1: [((1.0, 2.0, 30.0, 40.0), 0.9), ((5.5, 6.0, 7.0, 8.0), 0.3)],
        7: [((0.0, 0.0, 10.0, 20.0), 0.5)],
    }
    assert coco_keypoints.load_person_detections(str(path), score_threshold=0.5) == {
        1: [((1.0, 2.0, 30.0, 40.0), 0.9)],
        7: [((0.0, 0.0, 10.0, 20.0), 0.5)],
    }


@pytest.mark.parametrize(
    "contents, match",
    [
        ("[{", "not valid JSON"),
        ({"image_id": 1}, "JSON list"),
        ([_DETECTIONS[0], "box"], "entry 1 must be a JSON object"),
        ([_DETECTIONS[0], {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}], "entry 1 lacks the field 'score'"),
        ([{**_DETECTIONS[0], "bbox": [0, 0, 1]}], "entry 0 field 'bbox'"),
        ([{**_DETECTIONS[0], "image_id": "1"}], "entry 0 field 'image_id'"),
        ([_DETECTIONS[0], _DETECTIONS[1], {**_DETECTIONS[0], "score": None}], "entry 2 field 'score'"),
    ],
)
def test_load_person_detections_rejects_bad_contents(tmp_path, contents, match):
    path = _write_json(tmp_path / "bad_dets.json", contents)
    with pytest.raises(ValueError, match=match) as info:
        coco_keypoints.load_person_detections(path)
    assert str(path) in str(info.value)


# === The pose pipeline on the prepared data ===
def test_pose_pipeline_crops_every_person(prepared):
    from scalenas_tf.data import pipeline

    data_dir, manual_dir = prepared
    kwargs = {"data_dir": str(data_dir), "manual_dir": str(manual_dir)}
    persons = sum(len(ex["persons"]["bbox"]) for ex in _examples("validation", data_dir).values())
    dataset = pipeline.make_dataset(
        "pose", "validation", 64, input_size=(64, 48), source="coco_keypoints", source_kwargs=kwargs
    )
    ((images, targets),) = list(dataset)
    assert images.shape == (persons, 64, 48, 3)
    assert targets["heatmaps"].shape == (persons, 16, 12, 17) and targets["target_weight"].shape == (persons, 17)
    # Validation crops are the grown boxes: every labelled joint lies inside its crop.
    labelled = np.concatenate([ex["persons"]["visibility"] > 0 for ex in _examples("validation", data_dir).values()])
    np.testing.assert_array_equal(targets["target_weight"].numpy(), labelled.astype(np.float32))
    train = pipeline.make_dataset(
        "pose", "train", 4, input_size=(64, 48), source="coco_keypoints", source_kwargs=kwargs
    )
    images, targets = next(iter(train))
    assert images.shape == (4, 64, 48, 3) and targets["heatmaps"].shape == (4, 16, 12, 17)


def test_oracle_heatmaps_score_high_coco_ap(prepared):
    """The validation chain end to end: the targets' own heatmaps, decoded (quarter-pixel shift) and
    mapped back through each crop's transform, land on the annotated keypoints (COCO AP ~1)."""
    import json

    from scalenas_tf.data import pipeline
    from scalenas_tf.evaluation import keypoints

    data_dir, manual_dir = prepared
    dataset = pipeline.make_dataset(
        "pose",
        "validation",
        8,
        input_size=(256, 192),
        source="coco_keypoints",
        source_kwargs={"data_dir": str(data_dir), "manual_dir": str(manual_dir)},
        heatmap_sigma=2.0,
        pose_fields=("transform", "image_id"),
    )
    batches = list(dataset)
    lookup = iter([targets["heatmaps"] for _, targets in batches])
    ground_truth = json.loads((manual_dir / "annotations" / "person_keypoints_val2017.json").read_text())
    stats = keypoints.evaluate_coco(lambda images: next(lookup), batches, ground_truth)
    assert stats["instances"] == sum(len(t["image_id"]) for _, t in batches)
    assert stats["AP"] > 0.9, stats
    # Predictions one heatmap pixel off in x and y score lower: the metric sees the coordinates.
    shifted = iter([np.roll(targets["heatmaps"], (3, 3), axis=(1, 2)) for _, targets in batches])
    worse = keypoints.evaluate_coco(lambda images: next(shifted), batches, ground_truth)
    assert worse["AP"] < stats["AP"]


def test_ground_truth_rebuilt_from_the_dataset(prepared):
    from scalenas_tf.data import tfds_sources

    data_dir, manual_dir = prepared
    truth = tfds_sources.coco_ground_truth("validation", data_dir=str(data_dir), manual_dir=str(manual_dir))
    # Image sizes from the JPEG headers; (height, width) in _VAL_IMAGES is written (width, height) by COCO.
    sizes = {image["id"]: (image["height"], image["width"]) for image in truth["images"]}
    assert set(sizes) == set(_EXPECTED_PERSONS["validation"])
    annotations = _annotation_by_id()
    assert [a["id"] for a in truth["annotations"]] == [1001, 1101]
    for entry in truth["annotations"]:
        source = annotations[entry["id"]]
        assert entry["keypoints"] == pytest.approx(source["keypoints"])
        assert entry["bbox"] == pytest.approx(_EXPECTED_BOXES[entry["id"]])
        assert entry["image_id"] == source["image_id"] and entry["iscrowd"] == 0
    for image_id, (height, width) in sizes.items():
        image = _examples("validation", data_dir)[image_id]["image"]
        assert image.shape[:2] == (height, width)


def test_source_flip_pairs_are_the_builders():
    from scalenas_tf.data import pipeline

    assert pipeline.SOURCES["coco_keypoints"].flip_pairs == coco_keypoints.FLIP_PAIRS


def test_subnet_evaluator_scores_coco_ap(prepared):
    """A pose supernet scored on the COCO source: AP through the flip test, and the centre baseline."""
    from scalenas_tf.data import pipeline
    from scalenas_tf.data import tfds_sources
    from scalenas_tf.evaluation.evaluator import SubnetEvaluator
    from scalenas_tf.evaluation.evaluator import take_batches
    from scalenas_tf.families.scalenas.space import ScaleNASSpace
    from scalenas_tf.families.scalenas.supernet import ScaleNASSupernet

    data_dir, manual_dir = prepared
    kwargs = {"data_dir": str(data_dir), "manual_dir": str(manual_dir)}
    source = pipeline.SOURCES["coco_keypoints"]
    space = ScaleNASSpace(
        width=4, depth_choices=(2,), num_modules=(1, 1), num_branches=(2, 3), stem_channels=8, layer1_blocks=1,
        multi_scale_output=False,
    )  # fmt: skip
    supernet = ScaleNASSupernet(space, task="pose", num_classes=17)
    supernet(np.zeros((1, 64, 48, 3), np.float32))  # build
    make = functools.partial(pipeline.make_dataset, "pose", input_size=(64, 48), source="coco_keypoints")
    validation = make("validation", 4, source_kwargs=kwargs, pose_fields=source.pose_fields)
    calibration = make("train", 2, source_kwargs=kwargs, shuffle=False, repeat=False)
    evaluator = SubnetEvaluator(
        supernet,
        take_batches(calibration, 1),
        take_batches(validation, 1),
        keypoint_ground_truth=tfds_sources.coco_ground_truth("validation", **kwargs),
        flip_pairs=source.flip_pairs,
    )
    result = evaluator(space.largest())
    assert result["metric_name"] == "coco_ap" and 0.0 <= result["metric"] <= 1.0
    assert result["details"]["AP"] == result["metric"] and result["details"]["instances"] == 2
    baseline = evaluator.constant_baseline()
    assert baseline["metric_name"] == "coco_ap" and 0.0 <= baseline["metric"] <= 1.0
    with pytest.raises(ValueError, match="scores pose models"):
        SubnetEvaluator(
            ScaleNASSupernet(space, task="seg", num_classes=3), [], take_batches(validation, 1), recalibrate=False,
            keypoint_ground_truth={},
        )  # fmt: skip


def test_make_evaluator_scores_coco_ap_for_the_coco_config(prepared):
    """What bin/search.py and bin/export.py build from `configs/scalenas_pose.py:wN_coco`."""
    from configs import scalenas_pose
    from scalenas_tf.evaluation.evaluator import make_evaluator
    from scalenas_tf.experiment import Experiment

    data_dir, manual_dir = prepared
    config = scalenas_pose.get_config("w4_coco")
    config.search_space.update(num_modules=(1, 1, 1), stem_channels=8, layer1_blocks=1)
    config.model.input_size = (64, 48)
    config.data.source_kwargs.update(data_dir=str(data_dir), manual_dir=str(manual_dir))
    config.search.update(calibration_batches=1, calibration_batch_size=2, validation_examples=2, batch_size=2)
    experiment = Experiment.from_config(config, require=("data", "search"))
    supernet = experiment.build_supernet()
    supernet(np.zeros((1, 64, 48, 3), np.float32))
    evaluator = make_evaluator(experiment, supernet)
    assert evaluator.metric_name == "coco_ap" and evaluator.flip_pairs == coco_keypoints.FLIP_PAIRS
    assert [a["id"] for a in evaluator.keypoint_ground_truth["annotations"]] == [1001, 1101]
    assert 0.0 <= evaluator(experiment.space.smallest())["metric"] <= 1.0
