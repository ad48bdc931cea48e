"""Registers the ScaleNAS family: what generic code needs to serve the multi-resolution space."""

from __future__ import annotations

import os
from typing import Any

from scalenas_tf import registry
from scalenas_tf.arch import ArchError
from scalenas_tf.families.scalenas import cost as cost_lib
from scalenas_tf.families.scalenas.space import ScaleNASSpace
from scalenas_tf.search.cost import COST_MEASURES

NAMED = ("hrnet", "largest", "smallest")
_PKG = "scalenas_tf.families.scalenas"


def _count(space, arch, task, num_classes, input_size, validate=True):
    return cost_lib.count(space, arch, task, num_classes, input_size, validate=validate)


def _search_cost(record, measure: str) -> float:
    return record.measure(measure)


def _export_cost(space, arch, task, num_classes, input_size, measure) -> dict[str, Any]:
    counted = cost_lib.count(space, arch, task, num_classes, input_size)
    entry = {
        "params": counted.params,
        "macs": counted.macs,
        "gmacs": counted.gmacs,
        "input_size": list(input_size),
    }
    if measure != "latency_ms":  # the export runner adds the latency its latency model predicts
        entry[COST_MEASURES[measure][0]] = counted.measure(measure)
    return entry


def _load_arch_file(space, path, official_mask=False, allow_pickle=False):
    """An encoding JSON, or with `official_mask` a mask in the ScaleNAS authors' format."""
    if official_mask:
        return space.load_official_mask(path, allow_pickle=allow_pickle)
    return space.load_arch(path)


def cost_report(family, space, task, num_classes, input_size, arch=None, official_mask=None, allow_pickle=False):
    """`(arch, summary)` for bin/cost.py: `arch` (a name or a JSON path) or an official mask path."""
    if arch and official_mask:
        raise ArchError("Give either an arch or an official mask, not both")
    if official_mask:
        if not os.path.isfile(official_mask):
            raise ArchError(f"Official mask file not found: {official_mask}")
        chosen, label = family.resolve_arch(space, official_mask, official_mask=True, allow_pickle=allow_pickle)
    else:
        chosen, label = family.resolve_arch(space, arch)
    cost = cost_lib.count(space, chosen, task, num_classes, input_size)
    return chosen, {"arch": label, "arch_hash": chosen.hash(), "task": task, **cost.to_dict()}


def format_cost(summary: dict) -> str:
    """Human-readable lines of a ScaleNAS cost summary."""
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
    return "\n".join(lines)


FAMILY = registry.register(
    registry.Family(
        name="scalenas",
        description="ScaleNAS multi-resolution space (HRNet-like): per-branch depth, any-to-any fusion",
        space_class=ScaleNASSpace,
        tasks=("cls", "seg", "pose"),
        supernet=f"{_PKG}.supernet:ScaleNASSupernet",
        extractor=f"{_PKG}.subnet:extract",
        count=_count,
        named_archs=lambda space: NAMED,
        default_arch="hrnet",
        samplers={
            "uniform": f"{_PKG}.samplers:UniformSampler",
            "fusion": f"{_PKG}.samplers:FusionSampler",
            "grouped": f"{_PKG}.samplers:GroupedSampler",
        },
        default_sampler="uniform",
        searches={"evolution": f"{_PKG}.evolution:topology_evolution", "random": f"{_PKG}.evolution:random_search"},
        settings_class=f"{_PKG}.evolution:EvolutionSettings",
        cost_measures=("macs", "params", "latency_ms"),
        search_cost=_search_cost,
        export_cost=_export_cost,
        cost_report=cost_report,
        format_cost=format_cost,
        cost_options=("official_mask", "allow_pickle"),
        load_arch_file=_load_arch_file,
        weight_importers={
            "timm_hrnet": f"{_PKG}.torch_import:timm_hrnet",
            "hrnet_official": f"{_PKG}.torch_import:hrnet_official",
            "scalenas_official": f"{_PKG}.torch_import:scalenas_official",
        },
    )
)
