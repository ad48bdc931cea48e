"""The trained supernet of a run directory: built from the experiment, weights loaded and checked."""

from __future__ import annotations

import os

from scalenas_tf import workdir as workdir_lib


def load_trained_supernet(experiment, workdir: workdir_lib.Workdir):
    """The experiment's supernet with `workdir/supernet.weights.h5` loaded; a clear error if it is
    missing or does not fit."""
    weights = workdir.weights
    if not os.path.isfile(weights):
        raise ValueError(
            f"No trained supernet at {weights}. Train one first: "
            f"python bin/train_supernet.py --config=... --workdir={workdir.root}"
        )
    supernet = experiment.build_supernet()
    supernet.build((None, None, None, 3))
    try:
        supernet.load_weights(weights)
    except (ValueError, OSError, KeyError, TypeError) as e:
        raise ValueError(
            f"{weights} does not fit the supernet of this config, or is not a weights file ({e})"
        ) from None
    return supernet, weights
