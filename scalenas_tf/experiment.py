"""The validated, frozen experiment a runner works from: `Experiment.from_config(config)`, once per run.

Every field a runner, the trainer, the evaluator or a search reads is checked here, at start-up,
with a one-line `ConfigError` naming the field and the value: unknown fields, wrong types and
out-of-range values (a negative or NaN learning rate, momentum outside [0, 1), steps <= 0, ...).
After this no code reads a ConfigDict; it gets the plain objects below.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from scalenas_tf import registry
from scalenas_tf import tasks
from scalenas_tf.config import parse_input_size

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
TEACHERS = ("inplace", "none", "static")
GRAPH_OPTIMIZATIONS = ("fast", "full", "off")  # = training.graph_options.MODES (this module imports no TF)
SECTIONS = ("seed", "search_space", "model", "data", "train", "search", "export")


class ConfigError(ValueError):
    """A config field that is missing, unknown, of the wrong type or out of range."""


# === Field readers: each names the field and the value it received ===


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _section(config: Any, name: str, required: bool) -> dict[str, Any] | None:
    if name not in config or config[name] is None:
        if required:
            raise ConfigError(f"Config is missing the section `config.{name}`")
        return None
    value = config[name]
    try:
        return dict(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config.{name} must be a dict of fields. Received: {_short(value)}") from None


def _unknown(section: str, fields: dict[str, Any], known) -> None:
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ConfigError(f"Unknown field(s) in config.{section}: {unknown}. Known: {sorted(known)}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(fields, section, name, default=None, low=1, required=False, allow_none=False):
    if name not in fields:
        if required:
            raise ConfigError(f"Config is missing the field `config.{section}.{name}`")
        return default
    value = fields[name]
    if value is None and allow_none:
        return None
    if not _is_int(value) or value < low:
        raise ConfigError(f"config.{section}.{name} must be an int >= {low}. Received: {_short(value)}")
    return value


def _float(
    fields,
    section,
    name,
    default=None,
    low=None,
    high=None,
    low_open=False,
    high_open=False,
    required=False,
    allow_none=False,
):
    if name not in fields:
        if required:
            raise ConfigError(f"Config is missing the field `config.{section}.{name}`")
        return default
    value = fields[name]
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bounds = ""
        if low is not None or high is not None:
            left = "(" if low_open else "["
            right = ")" if high_open else "]"
            bounds = f" in {left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ConfigError(f"config.{section}.{name} must be a finite number{bounds}. Received: {_short(value)}")
    return float(value)


def _bool(fields, section, name, default):
    value = fields.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(f"config.{section}.{name} must be true or false. Received: {_short(value)}")
    return value


def _graph_optimizations(fields, section):
    """`train.graph_optimizations`: a `GRAPH_OPTIMIZATIONS` name (see `training.graph_options`); true/false
    (the field's type before the modes) read as `"fast"`/`"off"`."""
    value = fields.get("graph_optimizations", "fast")
    if isinstance(value, bool):
        return "fast" if value else "off"
    if value not in GRAPH_OPTIMIZATIONS:
        raise ConfigError(
            f"config.{section}.graph_optimizations must be one of {list(GRAPH_OPTIMIZATIONS)} (or true/false "
            f"for 'fast'/'off'). Received: {_short(value)}"
        )
    return value


def _choice(fields, section, name, choices, default=None, required=False):
    if name not in fields:
        if required:
            raise ConfigError(f"Config is missing the field `config.{section}.{name}`")
        return default
    value = fields[name]
    if value not in choices:
        raise ConfigError(f"config.{section}.{name} must be one of {list(choices)}. Received: {_short(value)}")
    return value


def _str(fields, section, name, default=""):
    value = fields.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ConfigError(f"config.{section}.{name} must be a string. Received: {_short(value)}")
    return value


def _kwargs(fields, section, name):
    value = fields.get(name)
    if value is None:
        return {}
    try:
        value = dict(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config.{section}.{name} must be a dict. Received: {_short(value)}") from None
    if not all(isinstance(k, str) for k in value):
        raise ConfigError(f"config.{section}.{name} must have string keys. Received: {_short(value)}")
    return value


# === Settings ===


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    task: str
    num_classes: int
    input_size: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class DataSettings:
    source: str
    batch_size: int | None
    train_examples: int | None
    validation_examples: int | None
    source_kwargs: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    steps: int
    steps_per_epoch: int
    optimizer: str
    learning_rate: float
    momentum: float
    nesterov: bool
    weight_decay: float
    warmup_steps: int
    sampler: str
    sampler_kwargs: dict[str, Any]
    teacher: str
    teacher_weights: str
    init_from_teacher: bool
    teacher_checkpoint: str
    teacher_arch: str
    distill_weight: float
    sparse_updates: bool
    per_replica_subnets: bool
    stacked_optimizer_slots: bool
    precision: str
    graph_optimizations: str


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """How archs are evaluated (shared by every family) and the family's search `algorithm` settings."""

    methods: tuple[str, ...]
    cost_measure: str
    calibration_batches: int
    calibration_batch_size: int
    validation_examples: int
    batch_size: int
    recalibrate: bool
    algorithm: Any
    latency_model: str = ""  # a `search.latency.LatencyModel` JSON; required by cost_measure="latency_ms"

    @property
    def cost_unit(self) -> str:
        from scalenas_tf.search.cost import COST_MEASURES

        return COST_MEASURES[self.cost_measure][0]


@dataclasses.dataclass(frozen=True)
class ExportSettings:
    """Which subnet to export, in which formats (`export.tflite.FORMATS`), and how each is checked."""

    arch: str
    budget: float | None
    name: str
    formats: tuple[str, ...]
    isolated_check: bool
    parity_atol: float
    max_metric_drop: dict[str, float]
    calibration_samples: int
    int8_io: bool
    qat_steps: int
    qat_learning_rate: float


_DATA_FIELDS = ("source", "batch_size", "train_examples", "validation_examples", "source_kwargs")
_TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainSettings))
_EVALUATION_FIELDS = (
    "methods",
    "cost_measure",
    "calibration_batches",
    "calibration_batch_size",
    "validation_examples",
    "batch_size",
    "recalibrate",
    "latency_model",
)
_EXPORT_FIELDS = tuple(f.name for f in dataclasses.fields(ExportSettings))
DEFAULT_EXPORT_FORMATS = ("saved_model", "tflite_fp32")
# Largest drop of the task metric (mIoU, top-1, AP: fractions) a quantized format may show on the
# validation split before the export is refused.
DEFAULT_MAX_METRIC_DROP = {"tflite_fp16": 0.005, "tflite_dynamic": 0.02, "tflite_int8": 0.03, "tflite_qat": 0.03}


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything a run needs, validated: the family and its space, model, data, train, search, export.

    `train`, `search` and `data` are None when the config has no such section (e.g. a cost-only
    config); a runner that needs one asks with `require("train")`.
    """

    family: registry.Family
    space: Any
    seed: int
    model: ModelSettings
    data: DataSettings | None
    train: TrainSettings | None
    search: SearchSettings | None
    export: ExportSettings
    config_json: str
    search_space_fields: dict[str, Any]

    @classmethod
    def from_config(cls, config: Any, require: tuple[str, ...] = ()) -> Experiment:
        """Validates `config` (a ConfigDict or dict) and builds the experiment.

        Args:
            config: the config.
            require: sections the caller needs (`"data"`, `"train"`, `"search"`).

        Raises:
            ConfigError: the first problem found, naming the field and the value.
        """
        try:
            # A ConfigDict as plain dicts: a nested ConfigDict's repr spans lines, which would break
            # the one-line messages below.
            top = config.to_dict() if callable(getattr(type(config), "to_dict", None)) else dict(config)
        except (TypeError, ValueError):
            raise ConfigError(f"A config must be a dict of sections. Received: {_short(config)}") from None
        _unknown("<top level>", top, SECTIONS)
        seed = top.get("seed", 0)
        if not _is_int(seed) or seed < 0:
            raise ConfigError(f"config.seed must be an int >= 0. Received: {_short(seed)}")
        space_fields = _section(top, "search_space", True)
        kind = space_fields.pop("type", "scalenas")
        try:
            family = registry.get(kind)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        model = _model(_section(top, "model", True), family)
        try:
            space = family.build_space(space_fields)
        except ValueError as e:
            message = str(e)
            raise ConfigError(
                message if "config.search_space" in message else f"config.search_space: {message}"
            ) from None
        train = _train(_section(top, "train", "train" in require), family)
        search = _search(_section(top, "search", "search" in require), family, model)
        data = _data(_section(top, "data", "data" in require or "train" in require), "train" in require, model)
        export = _export(_section(top, "export", False) or {})
        if search is not None and data is None:
            raise ConfigError("Config is missing the section `config.data` (the search evaluates on it)")
        try:
            config_json = config.to_json_best_effort(indent=2)
        except AttributeError:
            config_json = json.dumps(top, indent=2, default=repr)
        return cls(family, space, seed, model, data, train, search, export, config_json, dict(top["search_space"]))

    def require(self, section: str):
        value = getattr(self, section)
        if value is None:
            raise ConfigError(f"Config is missing the section `config.{section}`")
        return value

    @property
    def graph_optimizations(self) -> str:
        """How the supernet's compiled functions are optimized (`training.graph_options`): the config's
        `train.graph_optimizations`, `"fast"` without a train section (e.g. a search-only config)."""
        return self.train.graph_optimizations if self.train is not None else "fast"

    # === Builders (plain objects from the settings) ===

    def build_supernet(self):
        """The family's supernet over the space (not built)."""
        return self.family.build_supernet(self.space, self.model.task, self.model.num_classes)

    def build_sampler(self, space=None):
        train = self.require("train")
        from scalenas_tf.training.sampler import make_sampler

        return make_sampler(train.sampler, space or self.space, seed=self.seed, **train.sampler_kwargs)

    def build_optimizer(self):
        """`train` -> a Keras optimizer with linear warmup then cosine decay over `train.steps`."""
        from scalenas_tf.config import build_optimizer

        return build_optimizer(self.require("train"))

    def build_trainer(self, supernet, teacher=None):
        """A `SupernetTrainer` for `supernet` with the `train` settings (sampler, distillation, sparse updates).

        `teacher` is None, "inplace" or a keras.Model (the runner resolves `train.teacher` to one of these).
        """
        from scalenas_tf.training.trainer import SupernetTrainer

        train = self.require("train")
        return SupernetTrainer(
            supernet,
            sampler=self.build_sampler(supernet.space),
            teacher=teacher,
            distill_weight=train.distill_weight,
            sparse_updates=train.sparse_updates,
            per_replica_subnets=train.per_replica_subnets,
            stacked_slots=train.stacked_optimizer_slots,
        )

    def cost_of(self, validate: bool = False):
        """`arch -> cost` as the searches compare it (the family's `search_cost` in `search.cost_measure`).

        With `search.latency_model` set, each cost record gets the latency that model predicts from
        its features (`record.latency_ms`) first, which `cost_measure="latency_ms"` compares.
        """
        search = self.require("search")
        family, space, model = self.family, self.space, self.model
        predictor = None
        if search.latency_model:
            from scalenas_tf.search.latency import LatencyModel

            predictor = LatencyModel.load(search.latency_model)

        def cost_of(arch):
            record = family.count(space, arch, model.task, model.num_classes, model.input_size, validate=validate)
            if predictor is not None:
                record = dataclasses.replace(record, latency_ms=predictor.predict(record.features))
            return family.search_cost(record, search.cost_measure)

        return cost_of


def _model(fields: dict[str, Any], family: registry.Family) -> ModelSettings:
    _unknown("model", fields, ("task", "num_classes", "input_size"))
    for name in ("task", "num_classes", "input_size"):
        if name not in fields:
            raise ConfigError(f"Config is missing the field `config.model.{name}`")
    task, num_classes = fields["task"], fields["num_classes"]
    try:
        tasks.validate_task(task, num_classes)
        size = parse_input_size(fields["input_size"])
    except ValueError as e:
        raise ConfigError(f"config.model: {e}") from None
    if task not in family.tasks:
        raise ConfigError(
            f"config.model.task must be one of {list(family.tasks)} for the {family.name} space. Received: {task!r}"
        )
    return ModelSettings(task, num_classes, size)


def _data(fields, need_batch, model: ModelSettings) -> DataSettings | None:
    if fields is None:
        return None
    from scalenas_tf.data.pipeline import SOURCES

    _unknown("data", fields, _DATA_FIELDS)
    source = fields.get("source")
    if not isinstance(source, str) or source not in SOURCES:
        raise ConfigError(f"config.data.source must be one of {list(SOURCES)}. Received: {_short(source)}")
    served = SOURCES[source].num_classes
    if model.task not in served:
        raise ConfigError(
            f"config.data.source={source!r} has data for the tasks {list(served)} only; config.model.task is "
            f"{model.task!r}"
        )
    if served[model.task] != model.num_classes:
        raise ConfigError(
            f"config.model.num_classes must be {served[model.task]} for {model.task} on {source!r}. "
            f"Received: {model.num_classes}"
        )
    return DataSettings(
        source=source,
        batch_size=_int(fields, "data", "batch_size", required=need_batch, allow_none=not need_batch),
        train_examples=_int(fields, "data", "train_examples", allow_none=True),
        validation_examples=_int(fields, "data", "validation_examples", allow_none=True),
        source_kwargs=_kwargs(fields, "data", "source_kwargs"),
    )


def _train(fields, family: registry.Family) -> TrainSettings | None:
    if fields is None:
        return None
    section = "train"
    _unknown(section, fields, _TRAIN_FIELDS)
    steps = _int(fields, section, "steps", required=True)
    warmup = _int(fields, section, "warmup_steps", default=0, low=0)
    if warmup >= steps:
        raise ConfigError(f"config.train.warmup_steps must be in [0, steps={steps}). Received: {warmup}")
    sampler = fields.get("sampler")
    if sampler not in family.sampler_names():
        raise ConfigError(
            f"config.train.sampler must be one of {list(family.sampler_names())} for the {family.name} space. "
            f"Received: {_short(sampler)}"
        )
    teacher = _choice(fields, section, "teacher", TEACHERS, required=True)
    teacher_weights = _str(fields, section, "teacher_weights")
    teacher_checkpoint = _str(fields, section, "teacher_checkpoint")
    init_from_teacher = _bool(fields, section, "init_from_teacher", False)
    if teacher_weights and teacher_checkpoint:
        raise ConfigError(
            "config.train.teacher_weights (an extracted model) and config.train.teacher_checkpoint (supernet "
            "weights) both name the teacher: set one"
        )
    if teacher == "static" and not (teacher_weights or teacher_checkpoint):
        raise ConfigError(
            "config.train.teacher='static' needs config.train.teacher_weights (an extracted model's .weights.h5) "
            "or config.train.teacher_checkpoint (supernet weights, e.g. from bin/import_weights.py)"
        )
    if teacher_checkpoint and teacher != "static" and not init_from_teacher:
        raise ConfigError(
            "config.train.teacher_checkpoint is used by teacher='static' or init_from_teacher=True; neither is set. "
            f"Received: teacher={teacher!r}, init_from_teacher=False"
        )
    return TrainSettings(
        steps=steps,
        steps_per_epoch=_int(fields, section, "steps_per_epoch", required=True),
        optimizer=_choice(fields, section, "optimizer", OPTIMIZERS, required=True),
        learning_rate=_float(fields, section, "learning_rate", low=0.0, low_open=True, required=True),
        momentum=_float(fields, section, "momentum", default=0.9, low=0.0, high=1.0, high_open=True),
        nesterov=_bool(fields, section, "nesterov", False),
        weight_decay=_float(fields, section, "weight_decay", default=0.0, low=0.0),
        warmup_steps=warmup,
        sampler=sampler,
        sampler_kwargs=_kwargs(fields, section, "sampler_kwargs"),
        teacher=teacher,
        teacher_weights=teacher_weights,
        init_from_teacher=init_from_teacher,
        teacher_checkpoint=teacher_checkpoint,
        teacher_arch=_str(fields, section, "teacher_arch"),
        distill_weight=_float(fields, section, "distill_weight", required=True, low=0.0),
        sparse_updates=_bool(fields, section, "sparse_updates", True),
        per_replica_subnets=_bool(fields, section, "per_replica_subnets", False),
        stacked_optimizer_slots=_bool(fields, section, "stacked_optimizer_slots", True),
        precision=_choice(fields, section, "precision", PRECISIONS, default="float32"),
        graph_optimizations=_graph_optimizations(fields, section),
    )


def _search(fields, family: registry.Family, model: ModelSettings) -> SearchSettings | None:
    if fields is None:
        return None
    section = "search"
    algorithm_fields = family.settings_fields()
    _unknown(section, fields, tuple(algorithm_fields) + _EVALUATION_FIELDS)
    methods = fields.get("methods", tuple(family.searches))
    if isinstance(methods, str) or not isinstance(methods, (list, tuple)):
        methods = (methods,)
    methods = tuple(methods)
    if (
        not methods
        or not all(isinstance(m, str) for m in methods)  # a list or dict entry is unhashable
        or any(m not in family.searches for m in methods)
        or len(set(methods)) != len(methods)
    ):
        raise ConfigError(
            f"config.search.methods must be distinct names from {list(family.searches)}. Received: {_short(methods)}"
        )
    measure = _choice(fields, section, "cost_measure", family.cost_measures, default=family.cost_measures[0])
    latency_model = _latency_model(fields, family, model, measure)
    try:
        algorithm = family.settings({k: fields[k] for k in algorithm_fields if k in fields})
    except (TypeError, ValueError) as e:
        raise ConfigError(
            str(e) if str(e).startswith("search.") or "config.search" in str(e) else f"config.search: {e}"
        ) from None
    return SearchSettings(
        methods=methods,
        cost_measure=measure,
        calibration_batches=_int(fields, section, "calibration_batches", default=10),
        calibration_batch_size=_int(fields, section, "calibration_batch_size", default=64),
        validation_examples=_int(fields, section, "validation_examples", default=512),
        batch_size=_int(fields, section, "batch_size", default=64),
        recalibrate=_bool(fields, section, "recalibrate", True),
        algorithm=algorithm,
        latency_model=latency_model,
    )


def _latency_model(fields, family: registry.Family, model: ModelSettings, measure: str) -> str:
    """`config.search.latency_model`: "" or the path of a readable latency model of this family and
    input size (its weights hold for the feature counts at that size only)."""
    path = _str(fields, "search", "latency_model")
    if not path:
        if measure == "latency_ms":
            raise ConfigError(
                "config.search.cost_measure='latency_ms' needs config.search.latency_model, the JSON file "
                "`bin/benchmark.py --what=latency --latency_model=PATH` writes. Received: latency_model=''"
            )
        return ""
    from scalenas_tf.search.cost import LATENCY_FEATURES
    from scalenas_tf.search.latency import LatencyModel

    try:
        predictor = LatencyModel.load(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"config.search.latency_model: {e}") from None  # the message names the file
    if predictor.family != family.name:
        raise ConfigError(
            f"config.search.latency_model={_short(path)} was fitted for the {predictor.family!r} space; this config "
            f"searches the {family.name!r} space"
        )
    if predictor.input_size is not None and tuple(predictor.input_size) != model.input_size:
        raise ConfigError(
            f"config.search.latency_model={_short(path)} was fitted at input size {list(predictor.input_size)}; "
            f"config.model.input_size is {list(model.input_size)} (fit one there: bin/benchmark.py --what=latency)"
        )
    unknown = sorted(set(predictor.feature_names) - set(LATENCY_FEATURES))
    if unknown:
        raise ConfigError(
            f"config.search.latency_model={_short(path)} weighs features the cost counters do not report: {unknown}. "
            f"Known: {list(LATENCY_FEATURES)}"
        )
    return path


def _export(fields) -> ExportSettings:
    from scalenas_tf.export import tflite

    section = "export"
    if "tflite" in fields:
        raise ConfigError(
            "config.export.tflite was replaced by config.export.formats, e.g. "
            '("saved_model", "tflite_fp32"). Received: tflite=' + _short(fields["tflite"])
        )
    _unknown(section, fields, _EXPORT_FIELDS)
    try:
        formats = tflite.check_formats(fields.get("formats", DEFAULT_EXPORT_FORMATS), "config.export.formats")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    drops = dict(DEFAULT_MAX_METRIC_DROP)
    for fmt, value in _kwargs(fields, section, "max_metric_drop").items():
        if fmt not in tflite.QUANTIZED_FORMATS:
            raise ConfigError(
                f"config.export.max_metric_drop keys must be from {list(tflite.QUANTIZED_FORMATS)} (float formats "
                f"are held to parity_atol). Received: {fmt!r}"
            )
        drops[fmt] = _float({fmt: value}, f"{section}.max_metric_drop", fmt, low=0.0)
    return ExportSettings(
        arch=_str(fields, section, "arch"),
        budget=_float(fields, section, "budget", allow_none=True),
        name=_str(fields, section, "name"),
        formats=formats,
        isolated_check=_bool(fields, section, "isolated_check", True),
        parity_atol=_float(fields, section, "parity_atol", default=1e-4, low=0.0, low_open=True),
        max_metric_drop=drops,
        calibration_samples=_int(fields, section, "calibration_samples", default=200),
        int8_io=_bool(fields, section, "int8_io", False),
        qat_steps=_int(fields, section, "qat_steps", default=200),
        qat_learning_rate=_float(fields, section, "qat_learning_rate", default=1e-5, low=0.0, low_open=True),
    )
