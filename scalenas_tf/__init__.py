"""scalenas_tf: one-shot NAS of scale-aware vision networks in Keras 3 / TensorFlow.

The pure-Python parts (search spaces, cost counters, searches) import without TensorFlow; the Keras
parts are loaded on first use (`scalenas_tf.ScaleNASSupernet`, `scalenas_tf.extract_subnet`).
Each search space is a family under `scalenas_tf/families/`, registered in `scalenas_tf.registry`.
"""

import importlib

from scalenas_tf.arch import ArchError
from scalenas_tf.families.scalenas.space import ModuleArch
from scalenas_tf.families.scalenas.space import ScaleNASArch
from scalenas_tf.families.scalenas.space import ScaleNASSpace
from scalenas_tf.families.scarlet.space import PRESETS
from scalenas_tf.families.scarlet.space import ScarletArch
from scalenas_tf.families.scarlet.space import ScarletSpace

__version__ = "0.1.0"

# name -> (module, attribute): loaded on first use, since these import TensorFlow.
_LAZY = {
    "Supernet": ("scalenas_tf.models.supernet", "Supernet"),
    "ScaleNASSupernet": ("scalenas_tf.families.scalenas.supernet", "ScaleNASSupernet"),
    "ScarletSupernet": ("scalenas_tf.families.scarlet.supernet", "ScarletSupernet"),
    "extract_subnet": ("scalenas_tf.models.extraction", "extract_subnet"),
    "extract": ("scalenas_tf.models.extraction", "extract"),
    "count_cost": ("scalenas_tf.families.scalenas.cost", "count"),
    "count_scarlet_cost": ("scalenas_tf.families.scarlet.cost", "count"),
    "Experiment": ("scalenas_tf.experiment", "Experiment"),
}


def __getattr__(name):
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'scalenas_tf' has no attribute {name!r}")


__all__ = [
    "ArchError",
    "ModuleArch",
    "ScaleNASArch",
    "ScaleNASSpace",
    "PRESETS",
    "ScarletArch",
    "ScarletSpace",
    *_LAZY,
]
