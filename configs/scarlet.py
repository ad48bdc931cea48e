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

from scalenas_tf.config import export_section
from scalenas_tf.config import tfds_source_kwargs

VARIANTS = ("s1", "s2", "cpu")


def get_config(arg=None):
    name = (arg or "s2").lower()
    identity_op = "els"
    if name.endswith("_skip"):
        name, identity_op = name[: -len("_skip")], "skip"
    if name not in VARIANTS:
        raise ValueError(
            f"configs/scarlet.py variant must be one of {VARIANTS} (optionally + '_skip'). Received: {arg!r}"
        )
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
    # ImageNet-scale supernet training as in SCARLET (FairNAS strict fairness, SGD, 150 epochs of
    # 1.28M images at batch 256 would be ~750k steps; sized here as a starting point, not run).
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
        learning_rate=0.045,
        momentum=0.9,
        nesterov=False,
        weight_decay=4e-5,
        warmup_steps=0,
        sampler="strict_fair",
        sampler_kwargs=dict(),
        teacher="none",
        teacher_weights="",
        init_from_teacher=False,
        distill_weight=0.5,
        sparse_updates=True,
        per_replica_subnets=False,
        stacked_optimizer_slots=True,  # False: resume a checkpoint with one slot per variable
        precision="float32",
        graph_optimizations="fast",  # "full": TF's default grappler; "off": none (training/graph_options.py)
    )
    # SCARLET Algorithm 1: population 70, 120 generations, crowding weights (0.4, 0.4, 0.2) on
    # (accuracy, MAdds, params), MAdds <= 500M checked before any evaluation, accuracy >= 0.4 after.
    config.search = dict(
        methods=("nsga2", "random"),
        population=70,
        generations=120,
        weights=(0.4, 0.4, 0.2),
        max_cost=500.0,
        min_metric=0.4,
        num_outputs=10,
        seed=0,
        cost_measure="madds",  # madds (M) | latency_ms (predicted ms; needs latency_model)
        latency_model="",  # a predictor JSON from bin/benchmark.py --what=latency
        calibration_batches=20,
        calibration_batch_size=64,
        validation_examples=10_000,
        batch_size=250,
        recalibrate=True,
    )
    config.export = export_section()
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
    # One shape covering >= 50% of the side (at 32x32 the default 4% is one pixel). Measured: the
    # extracted largest path, trained alone for 600 steps, reaches 0.81 validation accuracy here; with
    # up to 2 objects of >= 25%, a plain 3-layer CNN reached only 0.40 train accuracy in 600 steps.
    config.data = dict(
        source="shapes",
        source_kwargs=dict(min_size=0.5, max_objects=1),
        batch_size=32,
        train_examples=8192,
        validation_examples=512,
    )
    config.train.update(
        steps=1200,
        steps_per_epoch=200,
        optimizer="adam",
        learning_rate=0.003,
        weight_decay=0.0,
        warmup_steps=50,
        sampler="spos",
    )
    # MAdds at 32x32: 0.27M (smallest) to 2.08M (largest); uniform paths 0.70-1.54M (median 1.11M).
    config.search.update(
        population=20,
        generations=5,
        max_cost=1.2,
        min_metric=0.3,
        num_outputs=5,
        calibration_batches=2,
        calibration_batch_size=64,
        validation_examples=512,
        batch_size=128,
    )
