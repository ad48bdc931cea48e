"""Cost report of one arch of a config: analytic counts, optionally checked against the extracted model.

ScaleNAS configs are counted by `search/cost.py`, SCARLET configs (`search_space.type="scarlet"`) by
`search/scarlet_cost.py`.
"""

from __future__ import annotations

import math
import os
from typing import Any

from scalenas_tf import config as config_lib
from scalenas_tf.scarlet_space import PRESETS
from scalenas_tf.scarlet_space import ScarletArch
from scalenas_tf.scarlet_space import ScarletSpace
from scalenas_tf.scarlet_space import fold_plan
from scalenas_tf.search import cost as cost_lib
from scalenas_tf.search import scarlet_cost
from scalenas_tf.search_space import ArchError
from scalenas_tf.search_space import ScaleNASArch
from scalenas_tf.search_space import ScaleNASSpace

NAMED = ("hrnet", "largest", "smallest")
SCARLET_NAMED = ("largest", "smallest", *sorted(PRESETS))


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


def resolve_scarlet_arch(space: ScarletSpace, arch: str | None = None) -> tuple[ScarletArch, str]:
    """`arch` -> (arch, label): None (largest), a name `space.named` accepts (largest, smallest,
    scarlet_a/b/c, all_<choice>) or a path to a JSON file (a list of choice names, or `ScarletArch.to_json`)."""
    arch = arch or "largest"
    if arch in SCARLET_NAMED or (arch.startswith("all_") and not os.path.exists(arch)):
        return space.named(arch), arch
    if not os.path.exists(arch):
        raise ArchError(
            f"Unknown SCARLET arch {arch!r}: expected one of {list(SCARLET_NAMED)}, all_<choice> (e.g. all_K7E6) "
            "or a path to a JSON list of choice names"
        )
    return space.load_arch(arch), os.path.basename(arch)


def run(
    config: Any,
    arch: str | None = None,
    official_mask: str | None = None,
    input_size: str | tuple[int, int] | None = None,
    extract: bool = False,
    allow_pickle: bool = False,
    as_extracted: bool = False,
) -> dict:
    """Counts the arch's cost; with `extract`, also builds the extracted Keras model and counts its params.

    Args:
        config: a ScaleNAS or SCARLET config (`config.search_space.type`).
        arch: ScaleNAS: hrnet, largest, smallest or an encoding JSON path (default hrnet). SCARLET:
            largest, smallest, scarlet_a/b/c, all_<choice> or a JSON path (default largest).
        official_mask: a mask in the ScaleNAS authors' format (ScaleNAS only).
        input_size: `"HxW"` or `(h, w)`; default `config.model.input_size`.
        extract: also build the extracted Keras model and count its weights.
        allow_pickle: allow a pickled `.npy` official mask.
        as_extracted: SCARLET only: count the extracted model (ELS folds applied, kept ELS convs
            counted) instead of the papers' model (identity as a plain skip).

    Returns:
        A summary dict: `arch`, `arch_hash`, `task` and the cost fields (ScaleNAS: `Cost.to_dict()`;
        SCARLET: `space: "scarlet"`, `ScarletCost.to_dict()` with `madds_m`, and `fold_plan` when
        identity is an ELS conv). With `extract`: `keras_params` (weights other than BN moving
        statistics, the figures' convention) and `keras_count_params` (Keras' `count_params()`).

    Raises:
        ValueError: bad config, arch, input size, or an option the config's space does not take.
    """
    config_lib.validate(config)
    space = config_lib.build_space(config)
    size = config_lib.parse_input_size(input_size if input_size else config.model.input_size)
    if isinstance(space, ScarletSpace):
        return _run_scarlet(config, space, size, arch, official_mask, extract, as_extracted)
    if as_extracted:
        raise ValueError(
            "`as_extracted` applies to SCARLET configs only; a ScaleNAS summary already reports the "
            "extracted model's share as live_params/live_macs"
        )
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


def _run_scarlet(config, space, size, arch, official_mask, extract, as_extracted):
    if official_mask:
        raise ValueError(
            f"Official masks are ScaleNAS-only; a SCARLET arch is given with `arch` (a name or a JSON path). "
            f"Received: official_mask={official_mask!r}"
        )
    chosen, label = resolve_scarlet_arch(space, arch)
    cost = scarlet_cost.count(space, chosen, config.model.num_classes, size, as_extracted=as_extracted)
    summary = {
        "arch": label,
        "arch_hash": chosen.hash(),
        "task": config.model.task,
        "space": "scarlet",
        "variant": space.variant,
        "identity_op": space.identity_op,
        **cost.to_dict(),
    }
    if space.identity_op == "els":
        summary["fold_plan"] = [fold.to_dict() for fold in fold_plan(space, chosen)]
    if extract:
        from scalenas_tf.models.scarlet_subnet import extract_scarlet_subnet  # TensorFlow only when asked for

        supernet = config_lib.build_supernet(config)
        model, _ = extract_scarlet_subnet(supernet, chosen, input_size=size)
        moving = sum(math.prod(w.shape) for w in model.weights if _is_bn_statistic(w))
        summary["keras_count_params"] = int(model.count_params())
        summary["keras_params"] = summary["keras_count_params"] - moving
    return summary


def _is_bn_statistic(weight) -> bool:
    return weight.name.split("/")[-1].split(":")[0] in ("moving_mean", "moving_variance")


def format_report(summary: dict) -> str:
    """Human-readable lines (the binary prints these, then the JSON line)."""
    if summary.get("space") == "scarlet":
        return _format_scarlet(summary)
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


def _format_scarlet(summary: dict) -> str:
    h, w = summary["input_size"]
    if summary["as_extracted"]:
        counted = "as extracted (ELS folds applied, kept ELS convs counted)"
    else:
        counted = "the papers' (identity layers as plain skips)"
    lines = [
        f"arch: {summary['arch']} (hash {summary['arch_hash']})  space: scarlet {summary['variant']}"
        f" (identity: {summary['identity_op']})  task: {summary['task']}  input: {h}x{w}",
        f"count: {counted}",
        f"params: {summary['params']:,} ({summary['params'] / 1e6:.3f} M; BN moving statistics excluded,"
        f" with them {summary['params_with_bn_statistics']:,})",
        f"MACs:   {summary['macs']:,} = {summary['madds_m']:.3f} MAdds (M) (MACs/1e6, mobile papers' convention)"
        f" = {summary['gflops_hrnet']:.3f} GFLOPs (MACs/2^30, HRNet/ScaleNAS convention)",
    ]
    folds = summary.get("fold_plan") or []
    if folds:
        kept = sum(fold["action"] == "kept" for fold in folds)
        note = "" if summary["as_extracted"] or not kept else f"; the {kept} kept conv(s) are not in this count"
        lines.append(f"ELS folds at extraction ({len(folds)}{note}):")
    for fold in folds:
        layers = ", ".join(str(i) for i in fold["layers"])
        pool = " after 3x3 s2 max pooling" if fold["pool"] else ""
        conv = f"{fold['in_channels']}->{fold['out_channels']}"
        if fold["action"] == "kept":
            lines.append(f"  layers [{layers}]: kept as a 1x1 conv {conv}{pool} ({fold['reason']})")
        else:
            target = fold["target"] if isinstance(fold["target"], str) else f"layer {fold['target']}"
            lines.append(f"  layers [{layers}]: {conv}{pool}, folded {fold['action']} into {target}")
    if "keras_params" in summary:
        lines.append(
            f"extracted Keras model: {summary['keras_params']:,} params "
            f"(count_params() with BN moving statistics: {summary['keras_count_params']:,})"
        )
    return "\n".join(lines)
