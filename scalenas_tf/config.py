"""Where ConfigDicts meet the library: `validate(config)` and `build_*` (ConfigDict -> plain objects/kwargs)."""

from __future__ import annotations

from typing import Any

from scalenas_tf import tasks
from scalenas_tf.search_space import ScaleNASSpace

_SPACE_FIELDS = ("width", "depth_choices", "num_modules", "num_branches", "multi_scale_output", "stem_channels", "layer1_blocks")


def _get(config: Any, dotted: str):
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
    task = _get(config, "model.task")
    num_classes = _get(config, "model.num_classes")
    tasks.validate_task(task, num_classes)
    parse_input_size(_get(config, "model.input_size"))
    build_space(config)


def build_space(config: Any) -> ScaleNASSpace:
    """`config.search_space` -> `ScaleNASSpace` (unknown fields are an error, not ignored)."""
    fields = dict(_get(config, "search_space"))
    unknown = sorted(set(fields) - set(_SPACE_FIELDS))
    if unknown:
        raise ValueError(f"Unknown field(s) in config.search_space: {unknown}. Known: {list(_SPACE_FIELDS)}")
    for key in ("depth_choices", "num_modules", "num_branches"):
        if key in fields:
            fields[key] = tuple(fields[key])
    return ScaleNASSpace(**fields)


def build_model_kwargs(config: Any) -> dict:
    """kwargs for `ScaleNASSupernet(**kwargs)`."""
    return {"space": build_space(config), "task": config.model.task, "num_classes": config.model.num_classes}


def width_from_variant(arg: str | None, default: int) -> int:
    """A config variant `"w32"` -> 32 (`None` -> default); any width works, e.g. `:w8` for CPU work."""
    if arg is None or arg == "":
        return default
    text = str(arg).lower()
    if not text.startswith("w") or not text[1:].isdigit() or int(text[1:]) < 1:
        raise ValueError(f"Config variant must be a width such as 'w32' or 'w8'. Received: {arg!r}")
    return int(text[1:])
