"""scalenas_tf: one-shot NAS of scale-aware vision networks in Keras 3 / TensorFlow.

The pure-Python parts (search space, cost counter) import without TensorFlow; the Keras parts are
loaded on first use (`scalenas_tf.ScaleNASSupernet`, `scalenas_tf.extract_subnet`).
"""

import importlib

from scalenas_tf.search_space import ArchError
from scalenas_tf.search_space import ModuleArch
from scalenas_tf.search_space import ScaleNASArch
from scalenas_tf.search_space import ScaleNASSpace

__version__ = "0.1.0"

_LAZY = {
    "ScaleNASSupernet": "scalenas_tf.models.supernet",
    "extract_subnet": "scalenas_tf.models.subnet",
    "count_cost": "scalenas_tf.search.cost",
}


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return getattr(module, "count" if name == "count_cost" else name)
    raise AttributeError(f"module 'scalenas_tf' has no attribute {name!r}")


__all__ = ["ArchError", "ModuleArch", "ScaleNASArch", "ScaleNASSpace", "ScaleNASSupernet", "extract_subnet", "count_cost"]
