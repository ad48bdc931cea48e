"""Cost report of one arch of a config: analytic counts, optionally checked against the extracted model.

The config's family (`config.search_space.type`) counts the cost and formats the report; options a
family does not take (e.g. `as_extracted` for ScaleNAS, `official_mask` for SCARLET) are an error
naming the option.
"""

from __future__ import annotations

import math
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
