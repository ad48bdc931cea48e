r"""Searches the trained supernet in --workdir: ScaleNAS topology evolution or, for a SCARLET config,
SCARLET's constrained weighted NSGA-II; each beside a random baseline with the same budget.

  python bin/search.py --config=configs/quickstart.py --workdir=saved_models/quickstart
  python bin/search.py --config=configs/quickstart.py --workdir=saved_models/quickstart \
      --config.search.budget=400 --config.search.max_cost=0.05
  python bin/search.py --config=configs/scarlet.py:cpu --workdir=saved_models/scarlet_cpu \
      --config.search.generations=10

Every evaluation is appended to workdir/search/evaluations.jsonl as it finishes; running the same
command again continues where it stopped (a larger --config.search.budget, or for NSGA-II a larger
--config.search.generations, extends a finished search).
Writes pareto_front.json/.csv, pareto.png and search_summary.json beside it.
Exit codes: 0 ok; 1 bad config, missing supernet or an unusable search log (a message on stderr).
"""

import json

from absl import app
from absl import flags
from ml_collections import config_flags

from scalenas_tf import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Python config file[:variant] with a `search` section.")
_WORKDIR = flags.DEFINE_string("workdir", None, "The training workdir (holds supernet.weights.h5).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from scalenas_tf.runners import search as search_runner

    summary = search_runner.run(_CONFIG.value, _WORKDIR.value)
    print(search_runner.format_summary(summary))
    print(json.dumps({k: summary[k] for k in ("metric", "cost_unit", "budget", "seconds", "workdir")}, sort_keys=True))
    return 0


if __name__ == "__main__":
    cli.run(main, "search.py", required=["config", "workdir"])
