"""Registers the ScaleNet family: base models x scaling strategies, the super-supernet, HSS and MCEA."""

from __future__ import annotations

from typing import Any

from scalenas_tf import registry
from scalenas_tf.families.scalenet import cost as cost_lib
from scalenas_tf.families.scalenet.space import ScaleNetSpace

_PKG = "scalenas_tf.families.scalenet"


def _count(space, arch, task, num_classes, input_size, validate=True):
    # The arch's own resolution is its input size (the supernet resizes to it).
    return cost_lib.count(space, arch, num_classes, None, validate=validate)


def _search_cost(record, measure: str) -> float:
    return record.measure(measure)


def _export_cost(space, arch, task, num_classes, input_size, measure) -> dict[str, Any]:
    counted = cost_lib.count(space, arch, num_classes)
    return {
        "params": counted.params,
        "macs": counted.macs,
        "gmacs": counted.gmacs,
        "madds_m": counted.madds_m,
        "resolution": arch.resolution,
        "input_size": list(input_size),
        "strategy": {"depth": arch.depth, "width": arch.width, "resolution": arch.resolution},
        "depths": list(counted.depths),
        "counted": "at the arch's resolution (the model resizes its input to it)",
    }


def cost_report(family, space, task, num_classes, input_size, arch=None, input_size_given=False, budget_samples=0):
    """`(arch, summary)` for bin/cost.py: at the arch's resolution unless an input size is given; with
    `budget_samples`, also the Monte Carlo FLOPs budgets (`budget`)."""
    chosen, label = family.resolve_arch(space, arch)
    size = tuple(input_size) if input_size_given else None
    counted = cost_lib.count(space, chosen, num_classes, size)
    summary = {
        "arch": label,
        "arch_hash": chosen.hash(),
        "task": task,
        "strategy": {"depth": chosen.depth, "width": chosen.width, "resolution": chosen.resolution},
        "conventions": {
            "se_squeeze": space.se_squeeze,
            "hidden_rule": space.hidden_rule,
            "spatial": space.spatial,
            "path_generation": space.path_generation,
        },
        "stage": space.stage_of(chosen),
        **counted.to_dict(),
    }
    if budget_samples:
        mean = cost_lib.mean_base_macs(space, int(budget_samples), num_classes=num_classes)
        f0 = cost_lib.estimate_f0(mean)
        summary["budget"] = {
            "samples": int(budget_samples),
            "mean_base_macs": mean,
            "f0": f0,
            "stage_budgets": cost_lib.budgets(f0, space.num_scaling_stages),
        }
    return chosen, summary


def format_cost(summary: dict) -> str:
    """Human-readable lines of a ScaleNet cost summary."""
    h, w = summary["input_size"]
    s, c = summary["strategy"], summary["conventions"]
    stage = "generalized (not a trained stage)" if summary["stage"] is None else f"scaling stage {summary['stage']}"
    lines = [
        f"arch: {summary['arch']} (hash {summary['arch_hash']})  task: {summary['task']}  input: {h}x{w}",
        f"strategy: depth {s['depth']:g}, width {s['width']:g}, {s['resolution']} px ({stage}); "
        f"blocks per stage {summary['depths']}",
        f"conventions: se_squeeze={c['se_squeeze']} hidden_rule={c['hidden_rule']} spatial={c['spatial']} "
        f"path_generation={c['path_generation']}",
        f"params: {summary['params']:,} ({summary['params'] / 1e6:.3f} M; BN moving statistics excluded; "
        f"without the classifier {summary['params_without_classifier']:,})",
        f"MACs:   {summary['macs']:,} = {summary['madds_m']:.3f} MAdds (M) = {summary['gmacs']:.4f} GMACs "
        f'("FLOPs (G)" of the ScaleNet tables, MACs/1e9) = {summary["gflops_hrnet"]:.4f} GFLOPs (MACs/2^30)',
    ]
    if "budget" in summary:
        b = summary["budget"]
        stages = ", ".join(f"S{j} {v / 1e6:,.0f}M" for j, v in enumerate(b["stage_budgets"]))
        lines.append(
            f"budgets from {b['samples']:,} random base paths: mean {b['mean_base_macs'] / 1e6:,.1f}M MACs -> "
            f"f0 = {b['f0'] / 1e6:,.0f}M; 2^j f0: {stages}"
        )
    return "\n".join(lines)


FAMILY = registry.register(
    registry.Family(
        name="scalenet",
        description="ScaleNet scaling stages: base models x depth/width/resolution, HSS sampling, MCEA",
        space_class=ScaleNetSpace,
        tasks=("cls",),
        supernet=f"{_PKG}.supernet:ScaleNetSupernet",
        extractor=f"{_PKG}.subnet:extract",
        count=_count,
        named_archs=lambda space: space.named_archs(),
        default_arch="largest",
        samplers={
            "hss": f"{_PKG}.samplers:HierarchicalSampler",
            "uniform": f"{_PKG}.samplers:UniformScalingSampler",
            "fixed": f"{_PKG}.samplers:NamedFixedSampler",
        },
        default_sampler="hss",
        searches={"mcea": f"{_PKG}.mcea:mcea_search", "random": f"{_PKG}.mcea:random_search"},
        settings_class=f"{_PKG}.mcea:MCEASettings",
        cost_measures=("macs", "latency_ms"),
        search_cost=_search_cost,
        export_cost=_export_cost,
        cost_report=cost_report,
        format_cost=format_cost,
        cost_options=("input_size_given", "budget_samples"),
    )
)
