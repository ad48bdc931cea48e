"""Helpers the Python configs and the experiment share: input sizes, width variants, the optimizer.

Config validation and every ConfigDict -> plain-object step live in `experiment.py`.
"""

from __future__ import annotations

from typing import Any


def parse_input_size(value) -> tuple[int, int]:
    """`"256x192"`, `(256, 192)` or `[256, 192]` -> `(256, 192)`; raises ValueError naming the value."""
    if isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
    elif isinstance(value, (list, tuple)):
        parts = list(value)
        if any(isinstance(p, bool) or (isinstance(p, float) and not p.is_integer()) for p in parts):
            parts = None  # True or 64.5 is no size (int() would take them)
    else:
        parts = None
    try:
        size = tuple(int(p) for p in parts) if parts is not None else ()
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"`input_size` must be HEIGHTxWIDTH with positive ints, e.g. 256x192. Received: {value!r}")
    return size


def width_from_variant(arg: str | None, default: int) -> int:
    """A config variant `"w32"` -> 32 (`None` -> default); any width works, e.g. `:w8` for CPU work."""
    if arg is None or arg == "":
        return default
    text = str(arg).lower()
    if not text.startswith("w") or not text[1:].isdigit() or int(text[1:]) < 1:
        raise ValueError(f"Config variant must be a width such as 'w32' or 'w8'. Received: {arg!r}")
    return int(text[1:])


def split_variant(arg: str | None, datasets: tuple[str, ...]) -> tuple[str | None, str | None]:
    """`"w32_cityscapes"` -> `("w32", "cityscapes")`; `"w32"` -> `("w32", None)`; the dataset suffix must
    be one of `datasets` (ValueError naming the variant otherwise)."""
    if not arg or "_" not in str(arg):
        return arg, None
    width, dataset = str(arg).lower().split("_", 1)
    if dataset not in datasets:
        raise ValueError(
            f"Config variant dataset must be one of {datasets}, e.g. 'w32_{datasets[0]}'. Received: {arg!r}"
        )
    return width, dataset


def tfds_source_kwargs(**extra) -> dict[str, Any]:
    """`config.data.source_kwargs` of a TFDS source, with the fields a user sets on the command line:
    `data_dir` (TFDS's data directory; None: TFDS's default), `manual_dir` (the manual downloads,
    read once to prepare the dataset) and `download` (False: fail at once when not prepared), e.g.
    `--config.data.source_kwargs.manual_dir=/data/imagenet`."""
    from ml_collections import config_dict

    return dict(data_dir=config_dict.placeholder(str), manual_dir=config_dict.placeholder(str), download=False, **extra)


# The train fields a real-data variant shares (its recipe sets the rest: steps, learning rate, ...).
# ScaleNAS starts from a pretrained HRNet: import it (bin/import_weights.py --out=hrnet.weights.h5),
# then set teacher="static", teacher_checkpoint=that file, init_from_teacher=True; teacher_arch ""
# is the family's default arch (hrnet).
REAL_DATA_TRAIN = dict(
    optimizer="sgd",
    momentum=0.9,
    nesterov=False,
    warmup_steps=0,
    teacher="inplace",
    teacher_checkpoint="",
    teacher_arch="",
    init_from_teacher=False,
    distill_weight=0.5,
    sparse_updates=True,
    stacked_optimizer_slots=True,  # False: resume a checkpoint with one optimizer slot per variable
    precision="float32",
    graph_optimizations="fast",  # "full": TF's default grappler; "off": none (training/graph_options.py)
)


def real_data_sections(config, source, batch_size, train, search, **source_kwargs) -> None:
    """Sets `config.data` (the TFDS `source`, every example, `tfds_source_kwargs(**source_kwargs)`),
    `config.train` (`REAL_DATA_TRAIN` updated by `train`) and `config.search` (`search`)."""
    config.data = dict(
        source=source,
        source_kwargs=tfds_source_kwargs(**source_kwargs),
        batch_size=batch_size,
        train_examples=None,
        validation_examples=None,
    )
    config.train = {**REAL_DATA_TRAIN, **train}
    config.search = dict(search)


def export_section(**overrides) -> dict[str, Any]:
    """`config.export` with the library's defaults (`experiment.ExportSettings`), updated by `overrides`."""
    section = dict(
        arch="",  # largest | smallest | a preset | PATH.json; empty: from the search's Pareto front
        budget=None,  # front point with the best metric at cost <= budget
        name="",  # subfolder of workdir/export; empty: the arch hash
        # saved_model, tflite_fp32, tflite_fp16, tflite_dynamic, tflite_int8, tflite_qat (the [qat] extra)
        formats=("saved_model", "tflite_fp32"),
        isolated_check=True,  # run the files in a process without scalenas_tf
        parity_atol=1e-4,  # float formats: max abs diff allowed, relative to max(1, |output|max)
        # quantized formats: the largest drop of the validation metric before the export is refused
        max_metric_drop=dict(tflite_fp16=0.005, tflite_dynamic=0.02, tflite_int8=0.03, tflite_qat=0.03),
        calibration_samples=200,  # training images that calibrate int8 activation ranges
        int8_io=False,  # tflite_int8 / tflite_qat: int8 input and float outputs instead of float32
        qat_steps=200,  # tflite_qat: quantization-aware fine-tuning steps on the training pipeline
        qat_learning_rate=1e-5,
    )
    section.update(overrides)
    return section


def build_optimizer(train: Any):
    """`TrainSettings` (validated by `experiment.Experiment`) -> a Keras optimizer with linear warmup
    then cosine decay over `train.steps`."""
    import keras

    name = train.optimizer
    steps, warmup = int(train.steps), int(train.warmup_steps)
    lr = float(train.learning_rate)
    schedule = keras.optimizers.schedules.CosineDecay(
        lr if warmup == 0 else 0.0,
        decay_steps=steps - warmup,
        warmup_target=lr if warmup else None,
        warmup_steps=warmup,
    )
    decay = float(train.weight_decay) or None
    if name == "sgd":
        return keras.optimizers.SGD(
            schedule, momentum=float(train.momentum), nesterov=bool(train.nesterov), weight_decay=decay
        )
    if name == "adam":
        return keras.optimizers.Adam(schedule, weight_decay=decay)
    if name == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=decay or 0.004)
    return keras.optimizers.RMSprop(schedule, momentum=float(train.momentum), weight_decay=decay)
