"""Cost report of one arch of a config: analytic counts, optionally checked against the extracted model.

The config's family (`config.search_space.type`) counts the cost and formats the report; options a
family does not take (e.g. `as_extracted` for ScaleNAS, `official_mask` for SCARLET) are an error
naming the option.
"""

from __future__ import annotations

import math
import os
from typing import Any

from scalenas_tf.config import parse_input_size
from scalenas_tf.experiment import Experiment


def run(
    config: Any,
    arch: str | None = None,
    official_mask: str | None = None,
    input_size: str | tuple[int, int] | None = None,
    extract: bool = False,
    allow_pickle: bool = False,
    as_extracted: bool = False,
    budget_samples: int = 0,
) -> dict:
    """Counts the arch's cost; with `extract`, also builds the extracted Keras model and counts its params.

    Args:
        config: a config of any registered family (`config.search_space.type`).
        arch: a named arch of the family (`Family.named_archs`) or an arch JSON path (default: the
            family's `default_arch`: hrnet for ScaleNAS, largest for SCARLET).
        official_mask: ScaleNAS: a mask in the ScaleNAS authors' format.
        input_size: `"HxW"` or `(h, w)`; default `config.model.input_size`.
        extract: also build the extracted Keras model and count its weights.
        allow_pickle: ScaleNAS: allow a pickled `.npy` official mask.
        as_extracted: SCARLET: count the extracted model (ELS folds applied, kept ELS convs counted)
            instead of the papers' model (identity as a plain skip).
        budget_samples: ScaleNet: also estimate the FLOPs budgets from this many random base paths
            (`budget` in the summary: mean MACs, f0 and 2^j f0 per scaling stage).

    Returns:
        A summary dict: `arch`, `arch_hash`, `task` and the family's cost fields. With `extract`:
        `keras_params` (weights other than BN moving statistics, the figures' convention) and
        `keras_count_params` (Keras' `count_params()`).

    Raises:
        ValueError: bad config, arch, input size, or an option the config's family does not take.
    """
    experiment = Experiment.from_config(config)
    family, space, model = experiment.family, experiment.space, experiment.model
    size = parse_input_size(model.input_size if input_size is None else input_size)
    given = {
        "official_mask": official_mask,
        "allow_pickle": allow_pickle,
        "as_extracted": as_extracted,
        "budget_samples": budget_samples,
    }
    options = {k: v for k, v in given.items() if v}
    for option in options:
        if option not in family.cost_options:
            raise ValueError(
                f"`{option}` does not apply to a {family.name} config; "
                f"its options: {list(family.cost_options) or 'none'}"
            )
    if "input_size_given" in family.cost_options:  # a family whose archs carry their own resolution
        options["input_size_given"] = input_size is not None
    chosen, summary = family.cost_report(family, space, model.task, model.num_classes, size, arch=arch, **options)
    if extract:
        from scalenas_tf.models.extraction import extract_subnet  # TensorFlow only when asked for

        static = extract_subnet(experiment.build_supernet(), chosen, input_size=size)
        moving = sum(math.prod(w.shape) for w in static.weights if _is_bn_statistic(w))
        summary["keras_count_params"] = int(static.count_params())
        summary["keras_params"] = summary["keras_count_params"] - moving
    summary["space"] = family.name
    return summary


def _is_bn_statistic(weight) -> bool:
    return weight.name.split("/")[-1].split(":")[0] in ("moving_mean", "moving_variance")


def format_report(summary: dict) -> str:
    """Human-readable lines (the binary prints these, then the JSON line)."""
    from scalenas_tf import registry

    lines = [registry.get(summary["space"]).format_cost(summary)]
    if "keras_params" in summary:
        lines.append(
            f"extracted Keras model: {summary['keras_params']:,} params "
            f"(count_params() with BN moving statistics: {summary['keras_count_params']:,})"
        )
    return "\n".join(lines)


def sampler_costs(config: Any, path: str, samples: int = 2000) -> dict:
    """Draws `samples` steps of the config's training sampler (`config.train.sampler`), counts every drawn
    arch, and plots the MACs histogram per sampler group (ScaleNet's HSS: the scaling stage) to the PNG
    `path`, written atomically.

    Returns:
        `{"sampler", "samples", "plot", "groups": {group: {"count", "median_macs", "p10_macs", "p90_macs"}}}`.

    Raises:
        ValueError: the config has no `train` section, `samples` < 1, or `path` is not a `.png` file name.
    """
    import numpy as np

    from scalenas_tf import workdir as workdir_lib

    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"`sampler_samples` must be an int >= 1. Received: {samples!r}")
    if not str(path).lower().endswith(".png") or os.path.isdir(path):
        raise ValueError(f"`sampler_plot` must be the path of a .png file. Received: {path!r}")
    experiment = Experiment.from_config(config, require=("train",))
    family, space, model = experiment.family, experiment.space, experiment.model
    sampler = experiment.build_sampler()
    vectors, info = sampler.sample_numpy(range(samples))
    groups = info.get("group", np.full(vectors.shape[:2], -1))
    by_group: dict[int, list[int]] = {}
    for step_vectors, step_groups in zip(vectors, groups):
        for vector, group in zip(step_vectors, step_groups):
            arch = space.from_vector(vector)
            macs = family.count(space, arch, model.task, model.num_classes, model.input_size).macs
            by_group.setdefault(int(group), []).append(macs)
    summary = {
        "sampler": experiment.train.sampler,
        "samples": samples,
        "plot": os.path.abspath(path),
        "groups": {
            str(g): {
                "count": len(m),
                "median_macs": float(np.median(m)),
                "p10_macs": float(np.percentile(m, 10)),
                "p90_macs": float(np.percentile(m, 90)),
            }
            for g, m in sorted(by_group.items())
        },
    }
    with workdir_lib.atomic_path(path) as tmp:
        _plot_sampler_costs(tmp, by_group, summary)
    return summary


def _plot_sampler_costs(path, by_group, summary):
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    everything = np.concatenate([np.asarray(m, float) for m in by_group.values()]) / 1e6
    bins = np.geomspace(everything.min(), everything.max() * 1.001, 40)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for group, macs in sorted(by_group.items()):
        label = "all draws" if group < 0 else f"group {group}"
        ax.hist(np.asarray(macs) / 1e6, bins=bins, alpha=0.55, label=f"{label} ({len(macs)})")
    ax.set_xscale("log")
    ax.set_xlabel("MACs (M)")
    ax.set_ylabel("draws")
    ax.set_title(f"sampler {summary['sampler']!r}: {summary['samples']} steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
