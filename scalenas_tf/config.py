"""Where ConfigDicts meet the library: `validate(config)` and `build_*` (ConfigDict -> plain objects/kwargs)."""

from __future__ import annotations

import dataclasses
from typing import Any

from scalenas_tf import tasks
from scalenas_tf.scarlet_space import ScarletSpace
from scalenas_tf.search_space import ScaleNASSpace

_SPACE_FIELDS = ("width", "depth_choices", "num_modules", "num_branches", "multi_scale_output", "stem_channels", "layer1_blocks")
_SCARLET_FIELDS = tuple(f.name for f in dataclasses.fields(ScarletSpace))
# `config.search_space.type` picks the space; configs without it are ScaleNAS ones.
SPACE_TYPES = ("scalenas", "scarlet")


def get_field(config: Any, dotted: str):
    """`config.a.b` by dotted name; a ValueError naming the field if it is missing."""
    node = config
    for part in dotted.split("."):
        try:
            node = node[part]
        except (KeyError, TypeError):
            raise ValueError(f"Config is missing the field `{dotted}`") from None
    return node


def parse_input_size(value) -> tuple[int, int]:
    """`"256x192"`, `(256, 192)` or `[256, 192]` -> `(256, 192)`; raises ValueError naming the value."""
    if isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = None
    try:
        size = tuple(int(p) for p in parts) if parts is not None else ()
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"`input_size` must be HEIGHTxWIDTH with positive ints, e.g. 256x192. Received: {value!r}")
    return size


def validate(config: Any) -> None:
    """Checks the fields this library reads; raises ValueError naming the field and the value."""
    task = get_field(config, "model.task")
    num_classes = get_field(config, "model.num_classes")
    tasks.validate_task(task, num_classes)
    parse_input_size(get_field(config, "model.input_size"))
    build_space(config)


def space_type(config: Any) -> str:
    """`config.search_space.type`: `"scalenas"` (the default) or `"scarlet"`."""
    kind = dict(get_field(config, "search_space")).get("type", "scalenas")
    if kind not in SPACE_TYPES:
        raise ValueError(f"config.search_space.type must be one of {SPACE_TYPES}. Received: {kind!r}")
    return kind


def build_space(config: Any) -> ScaleNASSpace | ScarletSpace:
    """`config.search_space` -> `ScaleNASSpace` or `ScarletSpace` (unknown fields are an error, not ignored)."""
    kind = space_type(config)
    fields = {k: v for k, v in dict(get_field(config, "search_space")).items() if k != "type"}
    known = _SCARLET_FIELDS if kind == "scarlet" else _SPACE_FIELDS
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ValueError(f"Unknown field(s) in config.search_space ({kind}): {unknown}. Known: {list(known)}")
    for key in ("depth_choices", "num_modules", "num_branches", "channels", "strides", "kernel_sizes", "expand_ratios"):
        if key in fields:
            fields[key] = tuple(fields[key])
    if kind == "scarlet":
        if get_field(config, "model.task") != "cls":
            raise ValueError(f"The SCARLET space is for classification: config.model.task must be 'cls'. Received: {config.model.task!r}")
        return ScarletSpace(**fields)
    return ScaleNASSpace(**fields)


def build_model_kwargs(config: Any) -> dict:
    """kwargs for the supernet class of the config's space (`build_supernet`)."""
    return {"space": build_space(config), "task": config.model.task, "num_classes": config.model.num_classes}


def build_supernet(config: Any):
    """The config's supernet: `ScaleNASSupernet` or `ScarletSupernet` (not built)."""
    kwargs = build_model_kwargs(config)
    if isinstance(kwargs["space"], ScarletSpace):
        from scalenas_tf.models.scarlet_supernet import ScarletSupernet

        return ScarletSupernet(kwargs["space"], num_classes=kwargs["num_classes"])
    from scalenas_tf.models.supernet import ScaleNASSupernet

    return ScaleNASSupernet(**kwargs)


def width_from_variant(arg: str | None, default: int) -> int:
    """A config variant `"w32"` -> 32 (`None` -> default); any width works, e.g. `:w8` for CPU work."""
    if arg is None or arg == "":
        return default
    text = str(arg).lower()
    if not text.startswith("w") or not text[1:].isdigit() or int(text[1:]) < 1:
        raise ValueError(f"Config variant must be a width such as 'w32' or 'w8'. Received: {arg!r}")
    return int(text[1:])


_TRAIN_FIELDS = (
    "data.source", "data.batch_size", "train.steps", "train.steps_per_epoch", "train.optimizer",
    "train.learning_rate", "train.sampler", "train.teacher", "train.distill_weight", "train.sparse_updates",
)


def validate_train(config: Any) -> None:
    """Checks what a training job reads (`config.data`, `config.train`); errors name the field."""
    validate(config)
    for field in _TRAIN_FIELDS:
        get_field(config, field)
    for field in ("data.batch_size", "train.steps", "train.steps_per_epoch"):
        value = get_field(config, field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"config.{field} must be a positive int. Received: {value!r}")


OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def build_optimizer(train: Any):
    """`config.train` -> a Keras optimizer with linear warmup then cosine decay over `train.steps`."""
    import keras

    name = train.optimizer
    if name not in OPTIMIZERS:
        raise ValueError(f"config.train.optimizer must be one of {OPTIMIZERS}. Received: {name!r}")
    steps, warmup = int(train.steps), int(train.get("warmup_steps", 0))
    if steps < 1:
        raise ValueError(f"config.train.steps must be >= 1. Received: {steps}")
    if not 0 <= warmup < steps:
        raise ValueError(f"config.train.warmup_steps must be in [0, steps). Received: {warmup}")
    lr = float(train.learning_rate)
    schedule = keras.optimizers.schedules.CosineDecay(
        lr if warmup == 0 else 0.0, decay_steps=steps - warmup, warmup_target=lr if warmup else None, warmup_steps=warmup
    )
    decay = float(train.get("weight_decay", 0.0)) or None
    if name == "sgd":
        return keras.optimizers.SGD(schedule, momentum=float(train.momentum), nesterov=bool(train.nesterov), weight_decay=decay)
    if name == "adam":
        return keras.optimizers.Adam(schedule, weight_decay=decay)
    if name == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=decay or 0.004)
    return keras.optimizers.RMSprop(schedule, momentum=float(train.momentum), weight_decay=decay)


def build_sampler(config: Any, space: ScaleNASSpace | ScarletSpace):
    """`config.train.sampler` (+ `sampler_kwargs`) -> an `ArchSampler` seeded with `config.seed`."""
    from scalenas_tf.training import sampler as sampler_lib

    name = config.train.sampler
    kwargs = dict(config.train.get("sampler_kwargs", {}) or {})
    if name == "largest":
        return sampler_lib.FixedSampler(space, space.largest(), seed=config.seed)
    if name not in sampler_lib.SAMPLERS:
        raise ValueError(
            f"config.train.sampler must be one of {sorted(sampler_lib.SAMPLERS) + ['largest']}. Received: {name!r}"
        )
    wanted = sampler_lib.SAMPLERS[name].space_type
    if wanted is not None and not isinstance(space, wanted):
        fitting = sorted(k for k, c in sampler_lib.SAMPLERS.items() if c.space_type is None or isinstance(space, c.space_type))
        raise ValueError(
            f"config.train.sampler={name!r} samples a {wanted.__name__}, not a {type(space).__name__}. "
            f"Samplers for this space: {fitting + ['largest']}"
        )
    try:
        return sampler_lib.make_sampler(name, space, seed=config.seed, **kwargs)
    except TypeError as e:
        raise ValueError(f"config.train.sampler_kwargs {kwargs} do not fit sampler {name!r}: {e}") from None


def check_precision(value: str) -> str:
    if value not in PRECISIONS:
        raise ValueError(f"config.train.precision must be one of {PRECISIONS}. Received: {value!r}")
    return value


# === Search and export ===

COST_MEASURES = {"macs": ("gmacs", 1e9), "params": ("mparams", 1e6), "madds": ("madds_m", 1e6)}
_SETTINGS_FIELDS = (
    "population", "top_k", "children", "crossover_prob", "mutation_prob", "budget", "fusion_probs", "seed",
    "max_cost", "min_metric",
)
_SEARCH_FIELDS = _SETTINGS_FIELDS + (
    "methods", "cost_measure", "calibration_batches", "calibration_batch_size", "validation_examples", "batch_size",
    "recalibrate",
)
SEARCH_METHODS = ("evolution", "random")
SCARLET_SEARCH_METHODS = ("nsga2", "random")
_EVALUATION_FIELDS = ("methods", "calibration_batches", "calibration_batch_size", "validation_examples", "batch_size",
                      "recalibrate")


def search_methods(config: Any) -> tuple[str, ...]:
    """The search methods of the config's space: ScaleNAS evolution or SCARLET NSGA-II, plus random."""
    return SCARLET_SEARCH_METHODS if space_type(config) == "scarlet" else SEARCH_METHODS


def cost_measure(config: Any) -> str:
    """`config.search.cost_measure`: `"macs"` (default) or `"params"`; always `"madds"` for SCARLET."""
    if space_type(config) == "scarlet":
        return "madds"
    return get_field(config, "search").get("cost_measure", "macs")


def _scarlet_settings_fields():
    from scalenas_tf.search.nsga2 import NSGA2Settings

    return tuple(f.name for f in dataclasses.fields(NSGA2Settings))


def search_section(config: Any) -> Any:
    """`config.search`, checked: unknown fields, methods and the cost measure (errors name the field)."""
    search = get_field(config, "search")
    scarlet = space_type(config) == "scarlet"
    known = (_scarlet_settings_fields() + _EVALUATION_FIELDS) if scarlet else _SEARCH_FIELDS
    unknown = sorted(set(search) - set(known))
    if unknown:
        raise ValueError(f"Unknown field(s) in config.search: {unknown}. Known: {list(known)}")
    allowed = search_methods(config)
    methods = tuple(search.get("methods", allowed))
    if not methods or any(m not in allowed for m in methods) or len(set(methods)) != len(methods):
        raise ValueError(f"config.search.methods must be distinct names from {allowed}. Received: {methods}")
    if not scarlet and search.get("cost_measure", "macs") not in ("macs", "params"):
        raise ValueError(
            f"config.search.cost_measure must be one of ['macs', 'params']. Received: {search.get('cost_measure')!r}"
        )
    for field in ("calibration_batches", "calibration_batch_size", "validation_examples", "batch_size"):
        value = search.get(field, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"config.search.{field} must be a positive int. Received: {value!r}")
    return search


def build_search_settings(config: Any):
    """`config.search` -> `EvolutionSettings` (ScaleNAS) or `NSGA2Settings` (SCARLET), paper defaults
    for missing fields."""
    from scalenas_tf.search.evolution import EvolutionSettings

    search = search_section(config)
    if space_type(config) == "scarlet":
        from scalenas_tf.search.nsga2 import NSGA2Settings

        kwargs = {k: search[k] for k in _scarlet_settings_fields() if k in search}
        if "weights" in kwargs:
            kwargs["weights"] = tuple(kwargs["weights"])
        return NSGA2Settings(**kwargs)
    kwargs = {k: search[k] for k in _SETTINGS_FIELDS if k in search and search[k] is not None}
    if "fusion_probs" in kwargs:
        kwargs["fusion_probs"] = tuple(kwargs["fusion_probs"])
    return EvolutionSettings(**kwargs)
