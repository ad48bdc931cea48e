r"""ScaleNet: base models x scaling strategies (depth, width, resolution per scaling stage).

Variants:
  :official        (default) the official super-supernet's space: K3/5/7 E6 + SE (stage 1 E1 + SE),
                   SE bottleneck = hidden // 4, 3 searched scaling stages (271 strategies).
  :paper           the paper's per-layer choices: K3/5/7 x E3/6 x SE yes/no.
  :released        the retrained ScaleNet-S0..S5 as published: SE bottleneck = block input // 4.
  :efficientnet_b0 EfficientNet-B0's skeleton (24 / 112 channels), swish, SE from the block input
                   with a sigmoid gate: efficientnet_b0 and EfficientNet-S1..S5 are points of it.
  :cpu             the official space with quartered widths, at most 2 blocks per stage and a 32 px
                   base on the embedded shapes data: train -> search (MCEA) -> export in minutes.

  python bin/train_supernet.py --config=configs/scalenet.py:cpu --workdir=saved_models/scalenet_cpu
  python bin/search.py --config=configs/scalenet.py:cpu --workdir=saved_models/scalenet_cpu
  python bin/export.py --config=configs/scalenet.py:cpu --workdir=saved_models/scalenet_cpu

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

from scalenas_tf.config import export_section
from scalenas_tf.config import tfds_source_kwargs

VARIANTS = ("official", "paper", "released", "efficientnet_b0", "cpu")


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
    # ImageNet super-supernet training as the official code: SGD (Nesterov) 0.12, cosine, warmup,
    # weight decay 4e-5, HSS, no distillation (label smoothing 0.1 is the classification loss).
    config.data = dict(
        source="imagenet2012",
        source_kwargs=tfds_source_kwargs(),  # --config.data.source_kwargs.manual_dir=/data/imagenet
        batch_size=256,
        train_examples=None,
        validation_examples=None,
    )
    config.train = dict(
        steps=750_000,
        steps_per_epoch=5000,
        optimizer="sgd",
        learning_rate=0.12,
        momentum=0.9,
        nesterov=True,
        weight_decay=4e-5,
        warmup_steps=3750,
        sampler="hss",
        sampler_kwargs=dict(),
        teacher="none",
        teacher_weights="",
        init_from_teacher=False,
        distill_weight=0.0,
        sparse_updates=True,
        per_replica_subnets=False,
        stacked_optimizer_slots=True,  # False: resume a checkpoint with one slot per variable
        precision="float32",
        graph_optimizations="fast",  # "full": TF's default grappler; "off": none (training/graph_options.py)
    )
    # MCEA as the paper: T = 8 rounds, P = 50, N = 40, 20 initial bases, tolerances 25M / 50M x 2^j.
    config.search = dict(
        methods=("mcea",),
        iterations=8,
        population=50,
        generations=40,
        initial_bases=20,
        f0=None,
        budget_samples=10_000,
        budget_step=0.05,
        base_tolerance=0.025,
        stage_tolerance=0.05,
        generalization="linear",
        generalize_to=2,
        seed=0,
        cost_measure="macs",  # macs (GMACs) | latency_ms (predicted ms; needs latency_model, and f0 and the
        # tolerances in ms)
        latency_model="",  # a predictor JSON from bin/benchmark.py --what=latency
        calibration_batches=20,
        calibration_batch_size=64,
        validation_examples=10_000,
        batch_size=250,
        recalibrate=True,
    )
    config.export = export_section()
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
    if name == "cpu":
        _cpu(config)
    return config


def _cpu(config):
    """32 px shapes classification: widths quartered, at most 2 blocks per stage (4 depth slots), two
    values of each official list per scaling stage (8 strategies per stage), resolutions ceil(32 r)."""
    multipliers = ((1.0,), (1.08, 1.16), (1.24, 1.32), (1.48, 1.64))
    config.search_space.update(
        stem_channels=8,
        stage_channels=(8, 8, 16, 16, 24, 32, 48),
        max_blocks=(1, 2, 2, 2, 2, 2, 1),
        head_channels=128,
        depth_multipliers=multipliers,
        width_multipliers=multipliers,
        resolutions=((32,), (35, 37), (39, 42), (46, 51)),
        resolution_multipliers=((1.0,), (1.07, 1.14), (1.21, 1.285), (1.425, 1.58)),
        base_resolution=32,
    )
    config.model = dict(task="cls", num_classes=4, input_size=(32, 32))
    config.data = dict(
        source="shapes",
        source_kwargs=dict(min_size=0.5, max_objects=1),
        batch_size=32,
        train_examples=8192,
        validation_examples=512,
    )
    # Measured: the smallest path trained alone reaches validation accuracy 0.29 after 400 steps and
    # 0.49 after 1000 here; the supernet gets 1500.
    config.train.update(
        steps=1500,
        steps_per_epoch=250,
        optimizer="adam",
        learning_rate=0.003,
        nesterov=False,
        weight_decay=0.0,
        warmup_steps=30,
    )
    # Budgets in GMACs at this size (random bases: 0.42M-2.5M MACs, mean 0.73M): f0 from 2,000 random
    # bases to the nearest 0.1M, bases within 0.2M of it, strategies within 0.5M x 2^j. MCEA evaluates
    # about 200 archs (48 for the initial strategies, ~78 per round); random search gets the budget.
    config.search.update(
        methods=("mcea", "random"),
        iterations=2,
        population=6,
        generations=2,
        initial_bases=2,
        budget_samples=2000,
        budget_step=0.0001,
        base_tolerance=0.0002,
        stage_tolerance=0.0005,
        budget=240,
        calibration_batches=2,
        calibration_batch_size=64,
        validation_examples=256,
        batch_size=128,
    )
