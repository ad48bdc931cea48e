"""Imports a PyTorch checkpoint into a config's supernet and writes its weights (`.weights.h5`) atomically.

The config's family maps the checkpoint (`registry.Family.weight_importers[source]`) onto the
supernet at an arch (default: the family's `default_arch`, e.g. `hrnet`); the supernet weights file
is what training (as a starting point), search and export load.
"""

from __future__ import annotations

import os
from typing import Any

from scalenas_tf import workdir as workdir_lib
from scalenas_tf.experiment import Experiment

WEIGHTS_SUFFIX = ".weights.h5"


def run(
    config: Any,
    source: str,
    checkpoint: str,
    out: str,
    arch: str | None = None,
    allow_unmapped: bool = False,
) -> dict[str, Any]:
    """Reads `checkpoint`, maps it onto the supernet of `config` at `arch`, writes `out`.

    Args:
        config: a config of any registered family.
        source: the checkpoint's origin, a key of the family's `weight_importers` (e.g. `"timm_hrnet"`).
        checkpoint: a `.safetensors` file or a torch.save file, zip or legacy (read without torch).
        out: the weights file to write; must end in `.weights.h5`. Written to a temporary file in
            the same directory and renamed into place.
        arch: a named arch of the family or an arch JSON path (default: the family's `default_arch`).
        allow_unmapped: import even when the arch needs layers the checkpoint lacks or checkpoint
            tensors are left unread (they are listed in the summary either way).

    Returns:
        A JSON-ready summary: the checkpoint report, the mapping report, the arch and `out`.

    Raises:
        ValueError: a missing checkpoint, an unknown source, an unsafe or unreadable checkpoint
            (`torch_checkpoint.CheckpointError`), a shape mismatch or left-over tensors
            (`weight_import.WeightImportError`), or a bad `out`.
    """
    from scalenas_tf.models import torch_checkpoint
    from scalenas_tf.models import weight_import

    checkpoint = os.fspath(checkpoint)
    if not os.path.isfile(checkpoint):
        raise ValueError(f"Checkpoint not found: {checkpoint!r} (no such file)")
    out = os.fspath(out)
    if not out.endswith(WEIGHTS_SUFFIX) or os.path.isdir(out):
        raise ValueError(f"`out` must be a file name ending in {WEIGHTS_SUFFIX!r}. Received: out={out!r}")
    experiment = Experiment.from_config(config)
    family = experiment.family
    importer = family.weight_importer(source)
    chosen, label = family.resolve_arch(experiment.space, arch)
    state = torch_checkpoint.load_state_dict(checkpoint)
    supernet = experiment.build_supernet()
    supernet.build((None, None, None, 3))
    imported = importer(state, supernet, chosen)
    layers = weight_import.apply(supernet, imported, strict=not allow_unmapped)
    with workdir_lib.atomic_path(out) as tmp:
        supernet.save_weights(tmp)
    return {
        "checkpoint": state.report(),
        "source": source,
        "arch": label,
        "arch_hash": chosen.hash(),
        "layers_imported": layers,
        "mapping": imported.report(),
        "out": out,
    }
