"""The one place search-space families are registered and looked up (by `config.search_space.type`).

A family is one search space with everything generic code needs to serve it: how to build the space
from config fields, its supernet, extraction, cost counter, named archs, samplers and searches. Each
family registers itself in `families/<name>/family.py`; runners, the trainer, the evaluator, config
handling and bin/ only ever ask this registry, so adding a space is one folder and one config
(see README, "Adding a search space").

Space, cost and search pieces are pure Python; the Keras pieces (supernet, samplers, extraction)
are imported only when first called, so that `bin/cost.py` runs without TensorFlow.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable
from typing import Any

_FAMILIES: dict[str, Family] = {}
_LOADED = False


def _load(target: str):
    """`"package.module:attribute"` -> the attribute (imported on first use)."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclasses.dataclass(frozen=True)
class Extraction:
    """A static subnet extracted from a supernet: the plain Keras `model` and a JSON-ready `report`
    of what extraction did (e.g. SCARLET's ELS folds), merged into export metadata."""

    model: Any
    report: dict[str, Any] = dataclasses.field(default_factory=dict)
    log_lines: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Family:
    """One search space and its machinery.

    Args:
        name: the `config.search_space.type` value.
        space_class: the space (a frozen dataclass; its fields are the config fields).
        tasks: the tasks its supernet serves.
        supernet: `"module:Class"` of its supernet (`Class(space, task=, num_classes=)`).
        extractor: `"module:function"`: `(supernet, arch, input_size, name) -> Extraction`.
        count: `(space, arch, task, num_classes, input_size, **options) -> cost record` (a
            `search.cost.MacUnits` with `params`, `macs`, `to_dict()`, and `features`: the
            `search.cost.LatencyFeatures` of the work the extracted model executes).
        cost_options: the keyword options `count` takes beyond those (e.g. `as_extracted`).
        named_archs: `space -> tuple of names` that `space.named` accepts (for help and errors).
        default_arch: the name `bin/cost.py` counts when none is given.
        samplers: sampler name -> `"module:Class"` (`Class(space, seed=, **kwargs)`).
        default_sampler: the name `SandwichSampler` draws its random subnets with.
        searches: method name -> `"module:function"`: `(space, evaluate, cost_of, settings) -> SearchResult`.
        settings_class: `"module:Class"` of the searches' settings (a frozen dataclass with
            `evaluations`, `max_cost`, `min_metric`, `EXTENDABLE` and `to_dict()`).
        cost_measures: the measures a search may compare (`search.cost.COST_MEASURES`); the first is
            the default. `"latency_ms"` compares the latency a fitted `search.latency.LatencyModel`
            predicts from the record's `features` (`Experiment.cost_of` attaches it).
        search_cost: `(cost record, measure) -> float | (float, params)`: what the search compares.
        export_cost: `(space, arch, task, num_classes, input_size, measure) -> dict`, the cost entry
            of an exported model's metadata (what the exported model holds).
        cost_report: `(family, space, task, num_classes, input_size, arch=None, **cost_options)` ->
            `(arch, summary dict)`, the report of bin/cost.py (`summary` is JSON-ready).
        format_cost: `summary -> str`, its human-readable lines.
        load_arch_file: `(space, path, **options) -> arch`; default `space.load_arch(path)`.
        arch_file_options: the options `load_arch_file` takes (e.g. `allow_pickle`).
        weight_importers: checkpoint source name (e.g. `"timm_hrnet"`) -> `"module:function"`:
            `(state_dict, model, arch) -> models.weight_import.WeightImport`, mapping a PyTorch
            state dict onto a supernet or extracted model of `arch`. Default: none.
    """

    name: str
    space_class: type
    tasks: tuple[str, ...]
    supernet: str
    extractor: str
    count: Callable[..., Any]
    named_archs: Callable[[Any], tuple[str, ...]]
    default_arch: str
    samplers: dict[str, str]
    default_sampler: str
    searches: dict[str, str]
    settings_class: str
    cost_measures: tuple[str, ...]
    search_cost: Callable[[Any, str], Any]
    export_cost: Callable[..., dict[str, Any]]
    cost_report: Callable[..., tuple[Any, dict[str, Any]]]
    format_cost: Callable[[dict[str, Any]], str]
    cost_options: tuple[str, ...] = ()
    load_arch_file: Callable[..., Any] | None = None
    arch_file_options: tuple[str, ...] = ()
    weight_importers: dict[str, str] = dataclasses.field(default_factory=dict)
    description: str = ""

    # === Space ===

    def space_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.space_class))

    def build_space(self, fields: dict[str, Any]):
        """The space from config fields; unknown fields and bad values raise ValueError naming them."""
        known = self.space_fields()
        unknown = sorted(set(fields) - set(known))
        if unknown:
            raise ValueError(f"Unknown field(s) in config.search_space ({self.name}): {unknown}. Known: {list(known)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
        try:
            return self.space_class(**kwargs)
        except TypeError as e:
            raise ValueError(f"config.search_space ({self.name}): {e}") from None

    def resolve_arch(self, space, text: str | None = None, **options) -> tuple[Any, str]:
        """`(arch, label)` from a name `space.named` accepts or the path of an arch JSON file.

        Raises:
            ArchError: an unknown name, a missing or malformed file (the message names it).
        """
        from scalenas_tf.arch import ArchError

        text = text or self.default_arch
        if not os.path.isfile(text):
            try:
                return space.named(text), text
            except ArchError as e:
                if not str(e).startswith("Unknown named arch"):
                    raise  # a known name that does not fit this space: its own message says why
                names = ", ".join(self.named_archs(space))
                raise ArchError(
                    f"Unknown arch {text!r}. Not found: no such file, and not a named arch of the {self.name} space "
                    f"({names})"
                ) from None
        loader = self.load_arch_file or (lambda s, path: s.load_arch(path))
        shown = text if text.isprintable() else repr(text)  # a newline in the path would break the one-line message
        try:
            return loader(space, text, **options), os.path.basename(text)
        except ArchError as e:
            raise ArchError(f"{shown}: {e}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ArchError(f"Cannot read arch file {shown}: {e}") from None
        except RecursionError:
            raise ArchError(f"{shown}: JSON nested too deeply") from None

    # === Keras pieces (import TensorFlow) ===

    def build_supernet(self, space, task: str, num_classes: int):
        """The family's supernet over `space` (not built)."""
        return _load(self.supernet)(space, task=task, num_classes=num_classes)

    def extract(self, supernet, arch, input_size, name=None) -> Extraction:
        """The static subnet of `arch` with copied weights (see `Extraction`)."""
        return _load(self.extractor)(supernet, arch, input_size, name)

    def sampler_names(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.samplers) | {"sandwich", "largest"}))

    def make_sampler(self, name: str, space, seed: int = 0, **kwargs):
        """A sampler of this family (or a generic one: `sandwich`) by name."""
        from scalenas_tf.training import sampler as sampler_lib

        if name in self.samplers:
            cls = _load(self.samplers[name])
        elif name in sampler_lib.GENERIC_SAMPLERS:
            cls = sampler_lib.GENERIC_SAMPLERS[name]
        elif name == "largest":
            return sampler_lib.FixedSampler(space, space.largest(), seed=seed)
        else:
            raise ValueError(
                f"config.train.sampler={name!r} is not a sampler of the {self.name} space. "
                f"Samplers for this space: {list(self.sampler_names())}"
            )
        try:
            return cls(space, seed=seed, **kwargs)
        except TypeError as e:
            raise ValueError(f"config.train.sampler_kwargs {kwargs} do not fit sampler {name!r}: {e}") from None

    def weight_importer(self, source: str):
        """The importer of checkpoints from `source` (see `weight_importers`)."""
        if source not in self.weight_importers:
            known = sorted(self.weight_importers) or "none"
            raise ValueError(f"Unknown weight source {source!r} for the {self.name} space. Sources it imports: {known}")
        return _load(self.weight_importers[source])

    # === Search ===

    def settings(self, fields: dict[str, Any]):
        """The searches' settings from `config.search` fields (paper defaults for missing ones)."""
        cls = _load(self.settings_class)
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in fields.items() if v is not None}
        return cls(**kwargs)

    def settings_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(_load(self.settings_class)))

    def search(self, method: str):
        """The search function of `method`."""
        if method not in self.searches:
            raise ValueError(
                f"Unknown search method {method!r} for the {self.name} space. Expected one of {list(self.searches)}"
            )
        return _load(self.searches[method])


def register(family: Family) -> Family:
    """Adds `family` under `family.name`; a second family of the same name is an error."""
    if family.name in _FAMILIES and _FAMILIES[family.name] is not family:
        raise ValueError(f"A search-space family named {family.name!r} is already registered")
    _FAMILIES[family.name] = family
    return family


def _ensure_loaded() -> None:
    global _LOADED
    if not _LOADED:
        importlib.import_module("scalenas_tf.families")
        _LOADED = True


def names() -> tuple[str, ...]:
    """The registered family names (the values `config.search_space.type` takes)."""
    _ensure_loaded()
    return tuple(_FAMILIES)


def get(name: str) -> Family:
    """The family registered as `name`; ValueError naming the field and the known names otherwise."""
    _ensure_loaded()
    if not isinstance(name, str) or name not in _FAMILIES:  # a list or dict name is unhashable
        raise ValueError(f"config.search_space.type must be one of {list(_FAMILIES)}. Received: {name!r}")
    return _FAMILIES[name]


def family_of(space) -> Family:
    """The family whose space class `space` is an instance of."""
    _ensure_loaded()
    for family in _FAMILIES.values():
        if isinstance(space, family.space_class):
            return family
    raise TypeError(f"No registered search-space family serves a {type(space).__name__}")
