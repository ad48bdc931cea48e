r"""ScaleNet: base models x scaling strategies (depth, width, resolution per scaling stage).

Variants:
  :official        (default) the official super-supernet's space: K3/5/7 E6 + SE (stage 1 E1 + SE),
                   SE bottleneck = hidden // 4, 3 searched scaling stages (271 strategies).
  :paper           the paper's per-layer choices: K3/5/7 x E3/6 x SE yes/no.
  :released        the retrained ScaleNet-S0..S5 as published: SE bottleneck = block input // 4.
  :efficientnet_b0 EfficientNet-B0's skeleton (24 / 112 channels), swish, SE from the block input
                   with a sigmoid gate: efficientnet_b0 and EfficientNet-S1..S5 are points of it.

  python bin/cost.py --config=configs/scalenet.py:released --arch=scalenet_s3
  python bin/cost.py --config=configs/scalenet.py:efficientnet_b0 --arch=efficientnet_b0
  # 5,288,548 params, 385.8M MACs
  python bin/cost.py --config=configs/scalenet.py:efficientnet_b0 --arch=efficientnet_b3 \
      --config.search_space.path_generation=efficientnet
  # the official counter's convention (supplement Table 4's FLOPs column):
  python bin/cost.py --config=configs/scalenet.py:official --arch=scalenet_s4 \
      --config.search_space.spatial=floor --config.search_space.hidden_rule=scale_then_expand

See ../shared/reference/scalenet.md for the sources of every rule and the conventions.
"""

import ml_collections

VARIANTS = ("official", "paper", "released", "efficientnet_b0")


def get_config(arg=None):
    name = (arg or "official").lower()
    if name not in VARIANTS:
        raise ValueError(f"configs/scalenet.py variant must be one of {VARIANTS}. Received: {arg!r}")
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.search_space = dict(
        type="scalenet",
        choices="paper" if name == "paper" else "official",
        stem_channels=32,
        stage_channels=(16, 32, 40, 80, 96, 192, 320),
        stage_strides=(1, 2, 2, 2, 1, 2, 1),
        min_blocks=(1, 1, 1, 1, 1, 1, 1),
        max_blocks=(1, 4, 4, 4, 4, 4, 1),
        head_channels=1280,
        # One list per scaling stage j = 0..3, shared by depth and width (supplement Table 2).
        depth_multipliers=(
            (1.0,),
            (1.04, 1.08, 1.12, 1.16),
            (1.2, 1.24, 1.28, 1.32, 1.36),
            (1.4, 1.44, 1.48, 1.52, 1.56, 1.6, 1.64),
        ),
        width_multipliers=(
            (1.0,),
            (1.04, 1.08, 1.12, 1.16),
            (1.2, 1.24, 1.28, 1.32, 1.36),
            (1.4, 1.44, 1.48, 1.52, 1.56, 1.6, 1.64),
        ),
        resolutions=((224,), (224, 240, 256), (272, 288, 304), (320, 336, 354)),
        resolution_multipliers=((1.0,), (1.0, 1.07, 1.14), (1.21, 1.285, 1.355), (1.425, 1.5, 1.58)),
        base_resolution=224,
        se_squeeze="hidden",
        hidden_rule="base_then_scale",
        spatial="ceil",
        path_generation="scalenet",
        activation="hswish",
        se_activation="relu",
        se_gate="hard_sigmoid",
        f0=None,
    )
    config.model = dict(task="cls", num_classes=1000, input_size=(224, 224))
    if name == "released":
        config.search_space.se_squeeze = "input"
    if name == "efficientnet_b0":
        config.search_space.update(
            stage_channels=(16, 24, 40, 80, 112, 192, 320),
            se_squeeze="input",
            activation="swish",
            se_activation="swish",
            se_gate="sigmoid",
        )
    return config
