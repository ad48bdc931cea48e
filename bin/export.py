r"""Exports a subnet of the trained supernet in --workdir to SavedModel and TFLite, with parity checks.

  python bin/export.py --config=configs/quickstart.py --workdir=saved_models/quickstart
  python bin/export.py --config=configs/quickstart.py --workdir=saved_models/quickstart --budget=0.03
  python bin/export.py --config=configs/quickstart.py --workdir=saved_models/quickstart --arch=largest
  python bin/export.py --config=configs/scarlet.py:cpu --workdir=saved_models/scarlet_cpu --arch=scarlet_c

Without --arch the arch comes from the search's Pareto front (workdir/search/pareto_front.json): the
best point, or the best point costing at most --budget (the search's cost unit: GMACs or M params;
MAdds in M for SCARLET). SCARLET exports fold the ELS convs and list the folds in metadata.json.
  python bin/export.py --config=configs/quickstart.py --workdir=saved_models/quickstart \
      --formats=saved_model,tflite_fp32,tflite_fp16,tflite_dynamic,tflite_int8

Writes workdir/export/<name>/{saved_model/, model*.tflite, metadata.json} and prints a summary with each
format's size, task metric and parity. Quantized formats may lose at most config.export.max_metric_drop of
the metric (e.g. --config.export.max_metric_drop.tflite_int8=0.05); int8 calibrates on
config.export.calibration_samples training images (--config.export.int8_io=true: int8 input and outputs).
Exit codes: 0 ok; 1 bad flags or input; 2 a parity or metric check failed (the report is kept as
workdir/export/<name>.parity_failed.json).
"""

import json

from absl import app
from absl import flags
from ml_collections import config_flags

from scalenas_tf import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Python config file[:variant].")
_WORKDIR = flags.DEFINE_string("workdir", None, "The training/search workdir.")
_ARCH = flags.DEFINE_string(
    "arch",
    None,
    "A named arch (largest, smallest; hrnet; scarlet_a/b/c, all_<choice>) or an arch JSON path "
    "(default: config.export.arch).",
)
_BUDGET = flags.DEFINE_float(
    "budget", None, "Pick the best Pareto point costing at most this (default: config.export.budget)."
)
_NAME = flags.DEFINE_string("name", None, "Subfolder of workdir/export (default: config.export.name or the arch hash).")
_FORMATS = flags.DEFINE_list(
    "formats",
    None,
    "Comma-separated formats from saved_model, tflite_fp32, tflite_fp16, tflite_dynamic, tflite_int8, "
    "tflite_qat (needs the [qat] extra) (default: config.export.formats).",
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from scalenas_tf.runners import export as export_runner
    from scalenas_tf.runners import search as search_runner

    # Read (and check) the search summary first: a malformed one must fail before the export is written.
    search_summary = search_runner.load_summary(_WORKDIR.value)
    # None: the config's export settings decide.
    summary = export_runner.run(
        _CONFIG.value, _WORKDIR.value, arch=_ARCH.value, budget=_BUDGET.value, name=_NAME.value, formats=_FORMATS.value
    )
    if search_summary is not None:
        print(search_runner.format_summary(search_summary))
    print(export_runner.format_summary(summary))
    print(
        json.dumps(
            {
                "export_dir": summary["export_dir"],
                "arch_hash": summary["arch_hash"],
                "metric": summary["metric"]["value"],
                "constant_baseline": summary["metric"]["constant_baseline"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    cli.run(main, "export.py", required=["config", "workdir"])
