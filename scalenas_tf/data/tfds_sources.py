"""The papers' datasets through TensorFlow Datasets, as sources of `pipeline.make_dataset`.

Sources (task and head outputs; TFDS name; the splits used as train / validation; how the data comes):
  `cifar10`: cls (10); `cifar10`; train / test; TFDS downloads it with `download=True`.
  `imagenet2012`: cls (1000); `imagenet2012`; train / validation; manual: ILSVRC2012_img_train.tar
      and ILSVRC2012_img_val.tar in `manual_dir`.
  `cityscapes`: seg (19); `cityscapes/semantic_segmentation`; train / validation; manual:
      leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip in `manual_dir`.
  `coco_keypoints`: pose (17); `coco_keypoints` (ours, `coco_keypoints.py`); train / validation;
      manual: see `coco_keypoints.CocoKeypoints.MANUAL_DOWNLOAD_INSTRUCTIONS`.

Source keyword arguments (a config's `data.source_kwargs`): `data_dir` (TFDS's data directory; None for
TFDS's default), `manual_dir` (where the manual downloads are; given, an unprepared dataset is prepared
from it once), `download` (bool, False: a dataset that is not prepared fails at once, naming what to
put where, instead of reaching the network), plus per-source options documented on each loader.

Images are decoded after the shuffle, so the shuffle buffer holds encoded bytes. Each training
example is augmented under a stateless seed derived from `(seed, its position in the stream)`:
  cls: random-resized crop (area 0.08-1, aspect 3/4-4/3) and flip for ImageNet; 4-pixel pad, crop and
      flip for CIFAR; validation: centre crop of 87.5 % (ImageNet) or a resize (CIFAR).
  seg: Cityscapes label ids mapped to the 19 train ids (`CITYSCAPES_TRAIN_IDS`, others `IGNORE_LABEL`);
      random scale 0.5-2.0 of the full image, pad, random crop to the input size and flip (HRNet);
      validation: the image resized to the input size (or `validation_size`), the labels kept at full
      resolution.
  pose: HRNet's top-down crops of each person (`augment.top_down_crop`): box grown to the input's
      aspect and by 1.25; scale +-35 %, rotation +-45 degrees, half-body and a flip that swaps left
      and right joints in training.
"""

import functools

import numpy as np
import tensorflow as tf

from scalenas_tf.data import augment
from scalenas_tf.data import shapes
from scalenas_tf.tasks import IGNORE_LABEL

# Cityscapes label id -> train id (cityscapesscripts' labels.py, the 19 evaluated classes; every
# other id, including the license plate's -1, is ignored).
CITYSCAPES_CLASS_NAMES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
CITYSCAPES_TRAIN_IDS = np.full(256, IGNORE_LABEL, dtype=np.int32)
CITYSCAPES_TRAIN_IDS[list(CITYSCAPES_LABEL_IDS)] = np.arange(len(CITYSCAPES_LABEL_IDS))

_TFDS_SPLITS = {
    "cifar10": {"train": "train", "validation": "test"},
    "imagenet2012": {"train": "train", "validation": "validation"},
    "cityscapes/semantic_segmentation": {"train": "train", "validation": "validation"},
    "coco_keypoints": {"train": "train", "validation": "validation"},
}
_WHERE = {
    "cifar10": "pass `download=True` in `data.source_kwargs` to download it (163 MB)",
    "imagenet2012": "put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (image-net.org) in `manual_dir`",
    "cityscapes/semantic_segmentation": (
        "put leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip (cityscapes-dataset.com) in `manual_dir`"
    ),
    "coco_keypoints": (
        "put annotations/person_keypoints_{train,val}2017.json and the train2017/ and val2017/ image folders "
        "(cocodataset.org) in `manual_dir`"
    ),
}


def load_tfds(name, split, data_dir=None, manual_dir=None, download=False, image_keys=(), shuffle_files=False):
    """A TFDS split with its image features left encoded, failing at once when the data is absent.

    Args:
        name: TFDS name, e.g. `"imagenet2012"`.
        split: `"train"` or `"validation"` (mapped to the dataset's own split name).
        data_dir: TFDS data directory, or None for TFDS's default.
        manual_dir: directory of the manual downloads; when the dataset is not prepared and this is
            given, it is prepared from there.
        download: bool; True lets TFDS download (and prepare) a dataset that it can fetch itself.
        image_keys: features to keep encoded (decoded later, after the shuffle).
        shuffle_files: bool, TFDS's file-level shuffle (training).

    Returns:
        A `tf.data.Dataset` of the feature dicts.

    Raises:
        FileNotFoundError: the dataset is not prepared and cannot be, naming what to put where.
        ValueError: a bad argument, naming it.
    """
    import tensorflow_datasets as tfds

    if name == "coco_keypoints":
        from scalenas_tf.data import coco_keypoints  # noqa: F401  (registers the builder)
    if not isinstance(download, bool):
        raise ValueError(f"`download` must be a bool. Received: download={download!r}")
    for field, value in (("data_dir", data_dir), ("manual_dir", manual_dir)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"`{field}` must be a directory path or None. Received: {field}={value!r}")
    kwargs = dict(
        split=_TFDS_SPLITS[name][split],
        data_dir=data_dir,
        decoders={key: tfds.decode.SkipDecoding() for key in image_keys},
        shuffle_files=shuffle_files,
        read_config=tfds.ReadConfig(shuffle_seed=0) if shuffle_files else None,
    )
    try:
        return tfds.load(name, download=False, try_gcs=False, **kwargs)
    except AssertionError as missing:  # TFDS's "could not find data in data_dir"
        if not (download or manual_dir):
            raise FileNotFoundError(
                f"Dataset {name!r} (split {split!r}) is not prepared in data_dir={data_dir!r}. To prepare it "
                f"once, {_WHERE[name]}, then run again with `data.source_kwargs.manual_dir` (and "
                f"`data_dir`) set. TFDS said: {missing}"
            ) from None
    if manual_dir is not None and not tf.io.gfile.isdir(manual_dir):
        raise FileNotFoundError(f"`manual_dir` {manual_dir!r} is not a directory: {_WHERE[name]}.")
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
    return tfds.load(
        name, download=True, try_gcs=False, download_and_prepare_kwargs={"download_config": download_config}, **kwargs
    )


def decode_image(encoded):
    """An encoded RGB image (JPEG/PNG bytes) as float32 `(H, W, 3)` in [0, 1]."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return tf.image.convert_image_dtype(image, tf.float32)


def classification(name, num_classes_):
    """A loader for a TFDS classification dataset with `image` and `label` features."""

    def load(split, image_size, num_examples=None, seed=0, data_dir=None, manual_dir=None, download=False):
        from scalenas_tf.data.pipeline import Examples

        training = split == "train"
        dataset = load_tfds(name, split, data_dir, manual_dir, download, ("image",), shuffle_files=training)
        dataset = _take(dataset, num_examples)
        prepare = functools.partial(_prepare_classification, name=name, size=tuple(image_size), training=training)
        return Examples(dataset, prepare)

    load.__doc__ = f"`{name}` for classification ({num_classes_} classes); see the module docstring."
    return load


def _prepare_classification(example, seed, name, size, training):
    image = decode_image(example["image"])
    if name == "cifar10":
        image = tf.image.resize(image, size, method="bilinear", antialias=True)
        if training:
            image = augment.pad_crop_flip(image, seed, padding=max(1, size[0] // 8))
    elif training:
        crop_seed, flip_seed = augment.split_seed(seed, 2)
        image = augment.random_resized_crop(image, size, crop_seed)
        image = tf.cond(augment.random_flip(flip_seed), lambda: tf.reverse(image, [1]), lambda: image)
    else:
        image = augment.center_crop(image, size)
    return {"image": tf.ensure_shape(image, (*size, 3)), "label": tf.cast(example["label"], tf.int32)}


def cityscapes(
    split,
    image_size,
    num_examples=None,
    seed=0,
    data_dir=None,
    manual_dir=None,
    download=False,
    scale_range=(0.5, 2.0),
    validation_size=None,
):
    """Cityscapes fine annotations for semantic segmentation (19 classes); see the module docstring.

    `scale_range`: the training rescale factors (HRNet: 0.5-2.0). `validation_size`: `(height, width)`
    of the validation images, None for the input size; `(1024, 2048)` scores at full resolution as
    HRNet does while training on crops of the input size.
    """
    from scalenas_tf.data.pipeline import Examples

    name = "cityscapes/semantic_segmentation"
    if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
        raise ValueError(
            f"`scale_range` must be (low, high) with 0 < low <= high. Received: scale_range={scale_range!r}"
        )
    training = split == "train"
    if not training and validation_size is not None:
        image_size = shapes.check_image_size(validation_size, name="validation_size")
    dataset = load_tfds(
        name, split, data_dir, manual_dir, download, ("image_left", "segmentation_label"), shuffle_files=training
    )
    dataset = _take(dataset, num_examples)
    prepare = functools.partial(
        _prepare_cityscapes, size=tuple(image_size), training=training, scale_range=tuple(scale_range)
    )
    return Examples(dataset, prepare)


def cityscapes_train_ids(label_ids):
    """Cityscapes label ids (any integer tensor) as the 19 train ids, `IGNORE_LABEL` elsewhere."""
    return tf.gather(tf.constant(CITYSCAPES_TRAIN_IDS), tf.cast(label_ids, tf.int32) & 255)


def _prepare_cityscapes(example, seed, size, training, scale_range):
    from scalenas_tf.data.pipeline import MEAN

    image = decode_image(example["image_left"])
    labels = tf.io.decode_image(example["segmentation_label"], channels=1, expand_animations=False)[..., 0]
    mask = cityscapes_train_ids(labels)
    if training:
        image, mask = augment.random_scale_crop(
            image, mask, size, seed, scale_range=scale_range, image_fill=MEAN, mask_fill=IGNORE_LABEL
        )
    else:
        image = tf.image.resize(image, size, method="bilinear")
    return {"image": image, "mask": mask}


def coco_keypoints(split, image_size, num_examples=None, seed=0, data_dir=None, manual_dir=None, download=False):
    """COCO 2017 person keypoints, one example per person with a ground-truth box; see the module docstring."""
    from scalenas_tf.data import coco_keypoints as coco
    from scalenas_tf.data.pipeline import Examples

    training = split == "train"
    dataset = load_tfds("coco_keypoints", split, data_dir, manual_dir, download, ("image",), shuffle_files=training)
    dataset = _take(dataset.flat_map(_persons), num_examples)
    prepare = functools.partial(
        _prepare_person,
        size=tuple(image_size),
        training=training,
        flip_pairs=coco.FLIP_PAIRS,
        upper_body=coco.UPPER_BODY,
    )
    return Examples(dataset, prepare)


def _persons(example):
    """One dataset element per person of an image, each carrying the encoded image."""
    persons = example["persons"]
    count = tf.shape(persons["bbox"])[0]
    return tf.data.Dataset.from_tensor_slices(
        {
            "bbox": persons["bbox"],
            "joints": persons["keypoints"],
            "visibility": persons["visibility"],
            "area": persons["area"],
            "annotation_id": persons["annotation_id"],
            "image": tf.fill([count], example["image"]),
            "image_id": tf.fill([count], example["image/id"]),
        }
    )


def _prepare_person(example, seed, size, training, flip_pairs, upper_body):
    image = decode_image(example["image"])
    crop = augment.top_down_crop(
        image,
        example["bbox"],
        example["joints"],
        example["visibility"],
        size,
        seed=seed if training else None,
        flip_pairs=flip_pairs,
        upper_body=upper_body,
    )
    return {
        "image": crop["image"],
        "keypoints": crop["keypoints"],
        "keypoint_visible": crop["keypoint_visible"],
        "transform": crop["transform"],
        "image_id": example["image_id"],
        "annotation_id": example["annotation_id"],
        "area": example["area"],
    }


def coco_ground_truth(split, data_dir=None, manual_dir=None, download=False):
    """The COCO-format ground truth (`images`, `annotations`, `categories`) of a `coco_keypoints` split,
    rebuilt from the prepared dataset (image sizes read from the JPEG headers), for
    `evaluation.keypoints.coco_keypoint_ap`.

    It holds the persons the builder keeps (non-crowd, with keypoints); the official annotation file
    also lists crowd regions, which COCOeval uses to forgive detections inside them, so on the whole
    validation set pass `person_keypoints_val2017.json` itself for the official figure.
    """
    dataset = load_tfds("coco_keypoints", split, data_dir, manual_dir, download, ("image",))
    images, annotations = [], []
    for example in dataset.as_numpy_iterator():
        height, width = tf.image.extract_jpeg_shape(example["image"]).numpy()[:2]
        image_id = int(example["image/id"])
        images.append({"id": image_id, "width": int(width), "height": int(height)})
        persons = example["persons"]
        for i in range(len(persons["bbox"])):
            visibility = persons["visibility"][i].astype(np.float64)
            triples = np.concatenate([persons["keypoints"][i], visibility[:, None]], axis=1)
            annotations.append(
                {
                    "id": int(persons["annotation_id"][i]),
                    "image_id": image_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    "area": float(persons["area"][i]),
                    "bbox": [float(v) for v in persons["bbox"][i]],
                    "num_keypoints": int(persons["num_keypoints"][i]),
                    "keypoints": [float(v) for v in triples.reshape(-1)],
                }
            )
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}


def _take(dataset, num_examples):
    if num_examples is None:
        return dataset
    if isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 1:
        raise ValueError(f"`num_examples` must be an int >= 1 or None. Received: num_examples={num_examples!r}")
    return dataset.take(num_examples)
