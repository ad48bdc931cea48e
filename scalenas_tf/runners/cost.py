"""Cost report of one arch of a config: analytic counts, optionally checked against the extracted model."""

from __future__ import annotations

import os
from typing import Any

from scalenas_tf import config as config_lib
from scalenas_tf.search import cost as cost_lib
from scalenas_tf.search_space import ArchError
from scalenas_tf.search_space import ScaleNASArch
from scalenas_tf.search_space import ScaleNASSpace

NAMED = ("hrnet", "largest", "smallest")


def resolve_arch(
    space: ScaleNASSpace, arch: str | None = None, official_mask: str | None = None, allow_pickle: bool = False
) -> tuple[ScaleNASArch, str]:
    """`arch` (a named point or an encoding JSON path) or `official_mask` (a path) -> (arch, label)."""
    if arch and official_mask:
        raise ArchError("Give either an arch or an official mask, not both")
    if official_mask:
        if not os.path.exists(official_mask):
            raise ArchError(f"Official mask file not found: {official_mask}")
        return space.load_official_mask(official_mask, allow_pickle=allow_pickle), os.path.basename(official_mask)
    arch = arch or "hrnet"
    if arch in NAMED:
        return space.named(arch), arch
    if not os.path.exists(arch):
        raise ArchError(f"Unknown arch {arch!r}: expected one of {list(NAMED)} or a path to an encoding JSON")
    return space.load_arch(arch), os.path.basename(arch)


def run(
    config: Any,
    arch: str | None = None,
    official_mask: str | None = None,
    input_size: str | tuple[int, int] | None = None,
    extract: bool = False,
    allow_pickle: bool = False,
) -> dict:
    """Counts the arch's cost; with `extract`, also builds the extracted Keras model and counts its params.

    Returns:
        A summary dict: the `Cost.to_dict()` fields plus `arch`, `arch_hash`, `task`, and with
        `extract` `keras_params` (weights other than BN moving statistics, the figures' convention)
        and `keras_count_params` (Keras' `count_params()`, which includes them).
    """
    config_lib.validate(config)
    space = config_lib.build_space(config)
    size = config_lib.parse_input_size(input_size if input_size else config.model.input_size)
    chosen, label = resolve_arch(space, arch, official_mask, allow_pickle)
    cost = cost_lib.count(space, chosen, config.model.task, config.model.num_classes, size)
    summary = {"arch": label, "arch_hash": chosen.hash(), "task": config.model.task, **cost.to_dict()}
    if extract:
        from scalenas_tf.models.subnet import extract_subnet  # TensorFlow only when asked for
        from scalenas_tf.models.supernet import ScaleNASSupernet

        supernet = ScaleNASSupernet(**config_lib.build_model_kwargs(config))
        model = extract_subnet(supernet, chosen, input_size=size)
        moving = sum(int(w.shape.num_elements()) for w in model.non_trainable_weights)
        summary["keras_count_params"] = int(model.count_params())
        summary["keras_params"] = summary["keras_count_params"] - moving
    return summary


def format_report(summary: dict) -> str:
    """Human-readable lines (the binary prints these, then the JSON line)."""
    h, w = summary["input_size"]
    lines = [
        f"arch: {summary['arch']} (hash {summary['arch_hash']})  task: {summary['task']}  input: {h}x{w}",
        f"params: {summary['params']:,} ({summary['params'] / 1e6:.3f} M; BN moving statistics excluded)",
        f"MACs:   {summary['macs']:,} = {summary['gmacs']:.3f} GMACs (MACs/1e9)"
        f" = {summary['gflops_hrnet']:.3f} GFLOPs (HRNet/ScaleNAS papers' convention, MACs/2^30)",
    ]
    if summary["live_params"] != summary["params"]:
        lines.append(
            f"live (work that reaches the head; what an extracted model holds): "
            f"{summary['live_params']:,} params, {summary['live_macs'] / 2**30:.3f} GFLOPs (MACs/2^30)"
        )
    if "keras_params" in summary:
        lines.append(
            f"extracted Keras model: {summary['keras_params']:,} params "
            f"(count_params() with BN moving statistics: {summary['keras_count_params']:,})"
        )
    return "\n".join(lines)
