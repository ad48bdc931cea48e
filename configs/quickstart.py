r"""The quickstart: a small ScaleNAS supernet on the embedded shapes data, trained, searched and exported
on a CPU in minutes (README, "Quickstart").

  python bin/train_supernet.py --config=configs/quickstart.py --workdir=saved_models/quickstart
  python bin/search.py --config=configs/quickstart.py --workdir=saved_models/quickstart
  python bin/export.py --config=configs/quickstart.py --workdir=saved_models/quickstart

Everything here is sized for 2 CPU cores; `configs/shapes_seg.py` is the same space with longer
training, and the paper's search settings are the defaults of `families.scalenas.evolution.EvolutionSettings`.
"""

import ml_collections
from ml_collections import config_dict

from scalenas_tf.config import export_section


def get_config(arg=None):
    if arg:
        raise ValueError(f"configs/quickstart.py takes no variant. Received: {arg!r}")
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.search_space = dict(
        width=8,
        depth_choices=(2, 3, 4, 5),
        num_modules=(1, 1, 1),
        num_branches=(2, 3, 4),
        multi_scale_output=True,
        stem_channels=16,
        layer1_blocks=1,
    )
    config.model = dict(task="seg", num_classes=5, input_size=(64, 64))
    # Objects of at least 12% of the image side (the default data goes down to 4%, a few pixels,
    # which a 1/4-resolution head cannot resolve after minutes of CPU training).
    config.data = dict(
        source="shapes",
        source_kwargs=dict(min_size=0.12),
        batch_size=16,
        train_examples=8192,
        validation_examples=256,
    )
    # 1500 steps of one sampled subnet each (~110 ms per step on 2 CPU cores; an in-place teacher
    # would double that). Measured: validation mIoU 0.258 for the largest arch with shared BN,
    # 0.29-0.33 for searched subnets after BN recalibration; a constant prediction scores 0.164.
    config.train = dict(
        steps=1500,
        steps_per_epoch=250,
        optimizer="adam",
        learning_rate=0.003,
        momentum=0.9,
        nesterov=False,
        weight_decay=0.0,
        warmup_steps=50,
        sampler="grouped",
        sampler_kwargs=dict(sandwich=True),
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
    # The paper's search is n0=1000, k=100, N=2000 (the EvolutionSettings defaults); at ~0.8 s per
    # arch here, the quickstart searches 140 archs per method, the first 60 shared by both.
    config.search = dict(
        methods=("evolution", "random"),
        population=60,
        top_k=20,
        children=20,
        crossover_prob=0.25,
        mutation_prob=0.5,
        budget=140,
        fusion_probs=(0.2, 0.5, 0.8),
        seed=0,
        cost_measure="macs",  # macs (search cost in GMACs) | params (M) | latency_ms (predicted, see below)
        latency_model="",  # a predictor JSON from bin/benchmark.py --what=latency; needed by latency_ms
        max_cost=config_dict.placeholder(float),
        min_metric=config_dict.placeholder(float),
        calibration_batches=2,
        calibration_batch_size=64,
        validation_examples=256,
        batch_size=64,
        recalibrate=True,
    )
    # Which formats to write and how each is checked: scalenas_tf.config.export_section lists the fields.
    config.export = export_section(budget=config_dict.placeholder(float))
    return config
