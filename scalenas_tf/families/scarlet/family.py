"""Registers the SCARLET family: what generic code needs to serve the mobile space."""

from __future__ import annotations

from typing import Any

from scalenas_tf import registry
from scalenas_tf.families.scarlet import cost as cost_lib
from scalenas_tf.families.scarlet.space import PRESETS
from scalenas_tf.families.scarlet.space import ScarletSpace
from scalenas_tf.families.scarlet.space import fold_plan

_PKG = "scalenas_tf.families.scarlet"


def _named(space) -> tuple[str, ...]:
    return ("largest", "smallest", *sorted(PRESETS), "all_<choice>")


def _count(space, arch, task, num_classes, input_size, validate=True, as_extracted=False):
    return cost_lib.count(space, arch, num_classes, input_size, as_extracted=as_extracted, validate=validate)


def _search_cost(record, measure: str) -> tuple[float, float]:
    # NSGA-II's two cost objectives: MAdds (minimized) and params (maximized at equal MAdds).
    return record.measure(measure), float(record.params)


def _export_cost(space, arch, task, num_classes, input_size, measure) -> dict[str, Any]:
    counted = cost_lib.count(space, arch, num_classes, input_size, as_extracted=True)
    return {
        "params": counted.params,
        "macs": counted.macs,
        "gmacs": counted.gmacs,
        "madds_m": counted.madds_m,
        "counted": "as extracted (ELS folds applied)",
        "input_size": list(input_size),
    }


def cost_report(family, space, task, num_classes, input_size, arch=None, as_extracted=False):
    """`(arch, summary)` for bin/cost.py; identity counts as a plain skip unless `as_extracted`."""
    chosen, label = family.resolve_arch(space, arch)
    cost = cost_lib.count(space, chosen, num_classes, input_size, as_extracted=as_extracted)
    summary = {
        "arch": label,
        "arch_hash": chosen.hash(),
        "task": task,
        "space": "scarlet",
        "variant": space.variant,
        "identity_op": space.identity_op,
        **cost.to_dict(),
    }
    if space.identity_op == "els":
        summary["fold_plan"] = [fold.to_dict() for fold in fold_plan(space, chosen)]
    return chosen, summary


def format_cost(summary: dict) -> str:
    """Human-readable lines of a SCARLET cost summary, with the ELS fold plan."""
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
    return "\n".join(lines)


FAMILY = registry.register(
    registry.Family(
        name="scarlet",
        description="SCARLET mobile space: 19 layers x 13 choices, identity as a foldable ELS conv",
        space_class=ScarletSpace,
        tasks=("cls",),
        supernet=f"{_PKG}.supernet:ScarletSupernet",
        extractor=f"{_PKG}.subnet:extract",
        count=_count,
        named_archs=_named,
        default_arch="largest",
        samplers={"spos": f"{_PKG}.samplers:SinglePathSampler", "strict_fair": f"{_PKG}.samplers:StrictFairSampler"},
        default_sampler="spos",
        searches={"nsga2": f"{_PKG}.nsga2:nsga2_search", "random": f"{_PKG}.nsga2:random_search"},
        settings_class=f"{_PKG}.nsga2:NSGA2Settings",
        cost_measures=("madds", "latency_ms"),
        search_cost=_search_cost,
        export_cost=_export_cost,
        cost_report=cost_report,
        format_cost=format_cost,
        cost_options=("as_extracted",),
    )
)
