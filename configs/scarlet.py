r"""SCARLET-NAS mobile search (ImageNet-size skeleton, 19 layers), and a small CPU variant.

Variants:
  :s2   (default) 13 choices per layer: K{3,5,7} x E{3,6} with and without SE, plus identity.
  :s1   7 choices per layer: K{3,5,7} x E{3,6}, plus identity.
  :cpu  S2 at 32x32 on the embedded shapes data, small enough to train, search and export on a CPU.
  Add `_skip` (e.g. `:cpu_skip`) for the ablation: identity as a parameter-free skip instead of ELS.

  python bin/cost.py --config=configs/scarlet.py:s2 --input_size=224x224 --arch=scarlet_a
  # SCARLET-A: 6,708,... params, 365.307 MAdds (M) (figures.md)
  python bin/train_supernet.py --config=configs/scarlet.py:cpu --workdir=saved_models/scarlet_cpu
  python bin/search.py --config=configs/scarlet.py:cpu --workdir=saved_models/scarlet_cpu
  python bin/export.py --config=configs/scarlet.py:cpu --workdir=saved_models/scarlet_cpu
"""

import ml_collections

VARIANTS = ("s1", "s2", "cpu")


def get_config(arg=None):
    name = (arg or "s2").lower()
    identity_op = "els"
    if name.endswith("_skip"):
        name, identity_op = name[: -len("_skip")], "skip"
    if name not in VARIANTS:
        raise ValueError(f"configs/scarlet.py variant must be one of {VARIANTS} (optionally + '_skip'). Received: {arg!r}")
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.search_space = dict(
        type="scarlet",
        variant="s1" if name == "s1" else "s2",
        channels=(32, 32, 40, 40, 40, 40, 80, 80, 80, 80, 96, 96, 96, 96, 192, 192, 192, 192, 320),
        strides=(2, 1, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1),
        stem_channels=32,
        first_channels=16,
        head_channels=1280,
        activation="hswish",
        identity_everywhere=False,
        identity_op=identity_op,
    )
    config.model = dict(task="cls", num_classes=1000, input_size=(224, 224))
    if name == "cpu":
        _cpu(config)
    return config


def _cpu(config):
    """32x32 shapes classification; the skeleton's widths quartered, its strides and depth kept."""
    config.search_space.channels = (8, 8, 16, 16, 16, 16, 24, 24, 24, 24, 32, 32, 32, 32, 48, 48, 48, 48, 64)
    config.search_space.stem_channels = 8
    config.search_space.first_channels = 8
    config.search_space.head_channels = 128
    config.model = dict(task="cls", num_classes=4, input_size=(32, 32))
