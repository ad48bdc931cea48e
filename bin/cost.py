r"""Prints the params and MACs of a ScaleNAS, SCARLET or ScaleNet arch, from its encoding (no graph build).

  python bin/cost.py --config=configs/scalenas_pose.py:w32 --input_size=256x192 --arch=hrnet
  python bin/cost.py --config=configs/scalenas_seg.py:w32 --official_mask=seg_w32_S1.json --extract
  python bin/cost.py --config=configs/scarlet.py:s2 --input_size=224x224 --arch=scarlet_a
  python bin/cost.py --config=configs/scalenet.py:efficientnet_b0 --arch=efficientnet_b0
  python bin/cost.py --config=configs/scalenet.py:official --budget_samples=100000

ScaleNAS: --arch takes hrnet, largest, smallest or a path to an encoding JSON (ScaleNASArch.to_json);
--official_mask takes the ScaleNAS authors' mask format instead (.json; .npy needs --allow_pickle).
SCARLET: --arch takes largest (default), smallest, scarlet_a, scarlet_b, scarlet_c, all_<choice>
(e.g. all_K7E6) or a path to a JSON list of 19 choice names (or ScarletArch.to_json); identity
layers count as plain skips (the papers' figures) unless --as_extracted.
ScaleNet: --arch takes largest (default), smallest, scalenet_s0 .. scalenet_s5, efficientnet_b0, efficientnet_s1 .. s5,
efficientnet_b1 .. b5 or a path to an arch JSON ({"base": [...], "depth", "width",
"resolution"}); the input is the arch's resolution unless --input_size is given; --budget_samples=N also
estimates f0 and the per-stage FLOPs budgets from N random base paths.
Any config with a train section: --sampler_plot=PATH.png draws --sampler_samples steps of its sampler and
plots the MACs of the drawn archs per sampler group (ScaleNet's HSS: one histogram per scaling stage).
The last line of standard output is one JSON object: params, macs, gmacs (MACs/1e9), gflops_hrnet
(MACs/2^30), live_params, ... for ScaleNAS; params, macs, madds_m (MACs/1e6, the mobile papers'
MAdds), gflops_hrnet, fold_plan, ... for SCARLET; plus keras_params and keras_count_params with
--extract.
Exit codes: 0 ok; 1 bad flags or bad input (a one-line message on standard error).
"""

import json

from absl import app
from absl import flags
from ml_collections import config_flags

from scalenas_tf import cli
from scalenas_tf.runners import cost as cost_runner

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Python config file[:variant], e.g. configs/scalenas_pose.py:w32."
)
_ARCH = flags.DEFINE_string(
    "arch",
    None,
    "ScaleNAS: hrnet | largest | smallest | path to an encoding JSON (default: hrnet). SCARLET: largest | smallest "
    "| scarlet_a | scarlet_b | scarlet_c | all_<choice> | path to a JSON list of choice names (default: largest). "
    "ScaleNet: scalenet_s0..s5 | efficientnet_b0..b5 | efficientnet_s1..s5 | largest | smallest | path to an arch "
    "JSON (default: largest).",
)
_OFFICIAL_MASK = flags.DEFINE_string(
    "official_mask", None, "Path to a mask in the ScaleNAS authors' format (ScaleNAS configs only)."
)
_ALLOW_PICKLE = flags.DEFINE_bool("allow_pickle", False, "Allow loading a pickled .npy official mask (runs code).")
_INPUT_SIZE = flags.DEFINE_string("input_size", None, "HEIGHTxWIDTH, e.g. 256x192 (default: config.model.input_size).")
_EXTRACT = flags.DEFINE_bool("extract", False, "Also build the extracted Keras model and report its params.")
_BUDGET_SAMPLES = flags.DEFINE_integer(
    "budget_samples",
    0,
    "ScaleNet: estimate f0 (the mean MACs of this many random base paths, to the nearest 50M) and the "
    "budgets 2^j f0 of the scaling stages.",
    lower_bound=0,
)
_SAMPLER_PLOT = flags.DEFINE_string(
    "sampler_plot",
    None,
    "Also draw --sampler_samples steps of config.train.sampler and plot their MACs per sampler group "
    "(ScaleNet HSS: per scaling stage) to this .png file.",
)
_SAMPLER_SAMPLES = flags.DEFINE_integer("sampler_samples", 2000, "Steps drawn for --sampler_plot.", lower_bound=1)
_AS_EXTRACTED = flags.DEFINE_bool(
    "as_extracted",
    False,
    "SCARLET: count the extracted model (ELS folds applied, kept ELS convs counted) instead of the papers' "
    "plain-skip count.",
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    summary = cost_runner.run(
        _CONFIG.value,
        arch=_ARCH.value,
        official_mask=_OFFICIAL_MASK.value,
        input_size=_INPUT_SIZE.value,
        extract=_EXTRACT.value,
        allow_pickle=_ALLOW_PICKLE.value,
        as_extracted=_AS_EXTRACTED.value,
        budget_samples=_BUDGET_SAMPLES.value,
    )
    if _SAMPLER_PLOT.value:
        summary["sampler"] = cost_runner.sampler_costs(_CONFIG.value, _SAMPLER_PLOT.value, _SAMPLER_SAMPLES.value)
        for group, stats in summary["sampler"]["groups"].items():
            print(
                f"sampler group {group}: {stats['count']} draws, median {stats['median_macs'] / 1e6:,.1f}M MACs "
                f"(10-90%: {stats['p10_macs'] / 1e6:,.1f}-{stats['p90_macs'] / 1e6:,.1f}M)"
            )
        print(f"sampler plot: {summary['sampler']['plot']}")
    print(cost_runner.format_report(summary))
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    cli.run(main, "cost.py", required=["config"])
