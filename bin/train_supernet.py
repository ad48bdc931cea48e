r"""Trains the supernet of a config (any registered family): sampled subnets, distillation, checkpoints, logs.

  python bin/train_supernet.py --config=configs/shapes_seg.py --workdir=/tmp/shapes_seg
  python bin/train_supernet.py --config=configs/shapes_seg.py --workdir=/tmp/shapes_seg --strategy=mirrored
  TF_CONFIG=... python bin/train_supernet.py --config=... --workdir=... --strategy=multi_worker

Restarting the same command resumes from the workdir (fit: BackupAndRestore at every epoch end;
multi_worker: the custom loop's checkpoints). Override any config field with --config.train.steps=...
The last line of standard output is one JSON summary. Exit codes: 0 ok; 1 bad flags or bad input.
"""

import json

from absl import app
from absl import flags
from ml_collections import config_flags

from scalenas_tf import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Python config file[:variant].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and the trained weights.")
_STRATEGY = flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"], "tf.distribute strategy.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _STRATEGY.value == "multi_worker":
        # MultiWorkerMirroredStrategy must exist before any other TensorFlow op.
        from scalenas_tf import distribute

        distribute.get_strategy("multi_worker")
    from scalenas_tf.runners import train as train_runner

    summary = train_runner.run(_CONFIG.value, _WORKDIR.value, strategy=_STRATEGY.value)
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    cli.run(main, "train_supernet.py", required=["config", "workdir"])
