"""`coco_keypoints`: a TFDS builder for COCO 2017 person keypoints, read from a manual download.

TFDS's `coco` builder has no keypoints config, so this module defines one. Importing it registers
the `coco_keypoints` dataset (version 1.0.0) with TFDS.

Source files (the official COCO layout, see `CocoKeypoints.MANUAL_DOWNLOAD_INSTRUCTIONS`):

    <manual_dir>/annotations/person_keypoints_train2017.json
    <manual_dir>/annotations/person_keypoints_val2017.json
    <manual_dir>/train2017/<file_name>
    <manual_dir>/val2017/<file_name>

Splits: `train` (train2017) and `validation` (val2017).

Schema: one example per image, so that an image is stored once; its key is the COCO image id.

    image:          Image, uint8 (H, W, 3); the source JPEG bytes, stored without re-encoding.
    image/id:       int64, the COCO image id.
    image/filename: Text, e.g. "000000000139.jpg".
    persons:        Sequence (one entry per kept person, in annotation-file order) of
        bbox:           float32 (4,), `[x, y, w, h]` in pixels after clipping to the image (below).
        keypoints:      float32 (17, 2), `(x, y)` in pixels, in `KEYPOINT_NAMES` order.
        visibility:     int32 (17,), the COCO flag: 0 not labelled, 1 labelled but occluded, 2 visible.
        area:           float32, the annotation's segmentation area.
        num_keypoints:  int32, the number of labelled keypoints (COCO's count).
        annotation_id:  int64, the COCO annotation id.

Filters (HRNet's, `lib/dataset/coco.py`): a person is kept when its `category_id` is 1, its
`iscrowd` is 0, at least one keypoint value is positive (`max(keypoints) > 0`), its `area` is
positive and its clipped box is not empty. The box is clipped as HRNet does, with the image's
width W and height H: `x1 = max(0, x)`, `y1 = max(0, y)`, `x2 = min(W - 1, x1 + max(0, w - 1))`,
`y2 = min(H - 1, y1 + max(0, h - 1))`, kept if `x2 >= x1 and y2 >= y1`, stored as
`[x1, y1, x2 - x1, y2 - y1]`. Images left with no person are skipped.

Usage:

    import tensorflow_datasets as tfds
    from scalenas_tf.data import coco_keypoints  # registers "coco_keypoints"

    builder = tfds.builder("coco_keypoints", data_dir="/data/tfds")  # no builder configs
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir="/data/coco", try_download_gcs=False))
    ds = builder.as_dataset(split="validation")

    ds = coco_keypoints.load("validation", data_dir="/data/tfds", manual_dir="/data/coco")  # the same

`load` never touches the network: without prepared data or manual files it raises
`FileNotFoundError` at once. `load_person_detections` reads a person detector's COCO results JSON,
the boxes a top-down pose model is evaluated on.

Constants: `KEYPOINT_NAMES` (the 17 COCO keypoints, in order), `FLIP_PAIRS` (the 0-based
left/right index pairs swapped by a horizontal flip) and `SIGMAS` (the per-keypoint OKS sigmas of
pycocotools' COCOeval).
"""

import json
import math
import textwrap

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath

KEYPOINT_NAMES = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
# Nose, eyes, ears, shoulders, elbows, wrists: the joints of a half-body crop's upper body (HRNet).
UPPER_BODY = tuple(range(11))
# pycocotools COCOeval's keypoint sigmas (Params.kpt_oks_sigmas).
SIGMAS = tuple(
    s / 10.0
    for s in (0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89)
)
PERSON_CATEGORY_ID = 1

# Split name -> COCO 2017 set name (the image folder and the annotation file suffix).
_SPLIT_SETS = {"train": "train2017", "validation": "val2017"}
_DETECTION_FIELDS = ("image_id", "category_id", "bbox", "score")


def _annotation_path(manual_dir, coco_set):
    return epath.Path(manual_dir) / "annotations" / f"person_keypoints_{coco_set}.json"


def _expected_manual_paths(manual_dir):
    """The annotation files and image folders that preparing the dataset reads (both splits)."""
    manual_dir = epath.Path(manual_dir)
    paths = [_annotation_path(manual_dir, coco_set) for coco_set in _SPLIT_SETS.values()]
    return paths + [manual_dir / coco_set for coco_set in _SPLIT_SETS.values()]


def _missing_manual_paths(manual_dir):
    return [path for path in _expected_manual_paths(manual_dir) if not path.exists()]


def _instructions():
    return textwrap.dedent(CocoKeypoints.MANUAL_DOWNLOAD_INSTRUCTIONS).strip()


def clip_bbox(bbox, width, height):
    """Clips a COCO `[x, y, w, h]` box to a `width` x `height` image with HRNet's rule.

    Args:
        bbox: 4 numbers, the COCO box in pixels.
        width: int. Image width in pixels.
        height: int. Image height in pixels.

    Returns:
        `[x1, y1, x2 - x1, y2 - y1]` as floats, or `None` when the clipped box is empty.
    """
    x, y, w, h = (float(v) for v in bbox)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 < x1 or y2 < y1:
        return None
    return [x1, y1, x2 - x1, y2 - y1]


def _person(annotation, width, height, source):
    """The `persons` entry of one annotation, or `None` when HRNet's filters drop it."""
    if annotation.get("category_id") != PERSON_CATEGORY_ID or annotation.get("iscrowd", 0):
        return None
    keypoints = annotation.get("keypoints") or []
    if len(keypoints) != 3 * NUM_KEYPOINTS:
        raise ValueError(
            f"{source}: annotation id {annotation.get('id')} must have {3 * NUM_KEYPOINTS} keypoint values. "
            f"Received: {len(keypoints)}"
        )
    if max(keypoints) <= 0 or annotation["area"] <= 0:
        return None
    bbox = clip_bbox(annotation["bbox"], width, height)
    if bbox is None:
        return None
    keypoints = np.asarray(keypoints, np.float32).reshape(NUM_KEYPOINTS, 3)
    return {
        "bbox": np.asarray(bbox, np.float32),
        "keypoints": keypoints[:, :2],
        "visibility": keypoints[:, 2].astype(np.int32),
        "area": np.float32(annotation["area"]),
        "num_keypoints": np.int32(annotation.get("num_keypoints", np.count_nonzero(keypoints[:, 2]))),
        "annotation_id": np.int64(annotation["id"]),
    }


class CocoKeypoints(tfds.core.GeneratorBasedBuilder):
    """COCO 2017 person keypoints, one example per image with its kept persons (see the module docstring)."""

    name = "coco_keypoints"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: COCO 2017 person keypoints, per image, with HRNet's person filters and box clipping."
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download the COCO 2017 images and annotations from https://cocodataset.org/#download:
      http://images.cocodataset.org/zips/train2017.zip
      http://images.cocodataset.org/zips/val2017.zip
      http://images.cocodataset.org/annotations/annotations_trainval2017.zip
    and unzip all three into `manual_dir`, so that it holds:
      <manual_dir>/annotations/person_keypoints_train2017.json
      <manual_dir>/annotations/person_keypoints_val2017.json
      <manual_dir>/train2017/<file_name>   (the train images, e.g. 000000000009.jpg)
      <manual_dir>/val2017/<file_name>     (the validation images, e.g. 000000000139.jpg)
    """

    def _info(self):
        person = {
            "bbox": tfds.features.Tensor(shape=(4,), dtype=np.float32),
            "keypoints": tfds.features.Tensor(shape=(NUM_KEYPOINTS, 2), dtype=np.float32),
            "visibility": tfds.features.Tensor(shape=(NUM_KEYPOINTS,), dtype=np.int32),
            "area": np.float32,
            "num_keypoints": np.int32,
            "annotation_id": np.int64,
        }
        features = tfds.features.FeaturesDict(
            {
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "image/id": np.int64,
                "image/filename": tfds.features.Text(),
                "persons": tfds.features.Sequence(person),
            }
        )
        # DatasetInfo directly rather than dataset_info_from_configs: the latter would take the
        # description from any README.md in this package.
        return tfds.core.DatasetInfo(
            builder=self,
            description="COCO 2017 person keypoints: per image, the non-crowd persons with labelled keypoints.",
            features=features,
            homepage="https://cocodataset.org/#keypoints-2017",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager):
        manual_dir = dl_manager.manual_dir
        missing = _missing_manual_paths(manual_dir)
        if missing:
            raise FileNotFoundError(
                f"coco_keypoints: missing in manual_dir={manual_dir}: {', '.join(map(str, missing))}\n{_instructions()}"
            )
        return {
            split: self._generate_examples(_annotation_path(manual_dir, coco_set), manual_dir / coco_set)
            for split, coco_set in _SPLIT_SETS.items()
        }

    def _generate_examples(self, annotation_path, image_dir):
        data = json.loads(annotation_path.read_text())
        persons = {}
        images = {image["id"]: image for image in data["images"]}
        for annotation in data["annotations"]:
            image = images[annotation["image_id"]]
            person = _person(annotation, image["width"], image["height"], annotation_path)
            if person is not None:
                persons.setdefault(image["id"], []).append(person)
        for image_id in sorted(persons):
            image_path = image_dir / images[image_id]["file_name"]
            if not image_path.exists():
                raise FileNotFoundError(f"coco_keypoints: {annotation_path} names image {image_path}, which is missing")
            yield (
                image_id,
                {
                    "image": image_path.read_bytes(),
                    "image/id": image_id,
                    "image/filename": images[image_id]["file_name"],
                    "persons": persons[image_id],
                },
            )


def load(split, data_dir=None, manual_dir=None) -> tf.data.Dataset:
    """Loads a `coco_keypoints` split, preparing it first from a manual download when needed.

    Never touches the network: GCS is not tried, and nothing is downloaded.

    Args:
        split: str. A TFDS split, e.g. "train", "validation" or "validation[:10%]".
        data_dir: str or path. The TFDS data directory (default: `$TFDS_DATA_DIR` or
            `~/tensorflow_datasets`).
        manual_dir: str or path. The COCO download (see `CocoKeypoints.MANUAL_DOWNLOAD_INSTRUCTIONS`);
            default `<data_dir>/downloads/manual`. Read only when the dataset is not yet prepared.

    Returns:
        A `tf.data.Dataset` of examples with the module docstring's schema.

    Raises:
        FileNotFoundError: the dataset is not prepared in `data_dir` and `manual_dir` lacks the
            COCO files. Raised before any work; the message lists the files expected.
    """
    builder = CocoKeypoints(data_dir=data_dir)
    # is_prepared() alone logs a warning when the version folder does not exist yet.
    if not (builder.data_path.exists() and builder.is_prepared()):
        manual_dir = epath.Path(manual_dir) if manual_dir else builder.data_dir_root / "downloads" / "manual"
        missing = _missing_manual_paths(manual_dir)
        if missing:
            expected = "\n".join(
                f"  {path}{' (missing)' if path in missing else ''}" for path in _expected_manual_paths(manual_dir)
            )
            raise FileNotFoundError(
                f"coco_keypoints split {split!r}: the dataset is not prepared in data_dir={builder.data_dir_root} "
                f"(nothing prepared at {builder.data_path}), and manual_dir={manual_dir} lacks the COCO files "
                "to prepare it. "
                f"Preparing builds every split, so it needs all of:\n{expected}\n"
                f"{_instructions()}"
            )
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
        )
    return builder.as_dataset(split=split)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_detection(entry, index, source):
    """Raises ValueError naming `source`, the entry `index` and the field when `entry` is malformed."""
    if not isinstance(entry, dict):
        raise ValueError(f"{source}: entry {index} must be a JSON object. Received: {entry!r}")
    for field in _DETECTION_FIELDS:
        if field not in entry:
            raise ValueError(f"{source}: entry {index} lacks the field {field!r}. Received: {entry!r}")
    for field in ("image_id", "category_id"):
        if not isinstance(entry[field], int) or isinstance(entry[field], bool):
            raise ValueError(f"{source}: entry {index} field {field!r} must be an int. Received: {entry[field]!r}")
    bbox = entry["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise ValueError(f"{source}: entry {index} field 'bbox' must be 4 finite numbers. Received: {bbox!r}")
    if not _is_number(entry["score"]):
        raise ValueError(f"{source}: entry {index} field 'score' must be a finite number. Received: {entry['score']!r}")


def load_person_detections(path, score_threshold=0.0) -> dict[int, list[tuple[tuple[float, ...], float]]]:
    """Reads the person boxes of a COCO detection-results JSON, as used for top-down pose evaluation.

    Args:
        path: str or path. A JSON list of `{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`.
        score_threshold: float. Boxes scoring below it are dropped.

    Returns:
        `{image_id: [((x, y, w, h), score), ...]}` for category 1 (person), in file order.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file is not such a JSON list; the message names the file, the entry index and the field.
    """
    path = epath.Path(path)
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(entries, list):
        raise ValueError(f"{path}: must hold a JSON list of detections. Received: {type(entries).__name__}")
    detections = {}
    for index, entry in enumerate(entries):
        _check_detection(entry, index, path)
        if entry["category_id"] == PERSON_CATEGORY_ID and entry["score"] >= score_threshold:
            bbox = tuple(float(v) for v in entry["bbox"])
            detections.setdefault(entry["image_id"], []).append((bbox, float(entry["score"])))
    return detections


_CITATION = """\
@inproceedings{lin2014microsoft,
  title={Microsoft {COCO}: Common Objects in Context},
  author={Lin, Tsung-Yi and Maire, Michael and Belongie, Serge and Hays, James and Perona, Pietro and
          Ramanan, Deva and Doll{\\'a}r, Piotr and Zitnick, C. Lawrence},
  booktitle={European Conference on Computer Vision (ECCV)},
  pages={740--755},
  year={2014}
}
"""
