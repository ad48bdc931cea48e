r"""A small-width ScaleNAS supernet on the embedded shapes segmentation data (runs on a CPU).

  python bin/train_supernet.py --config=configs/shapes_seg.py --workdir=/tmp/shapes_seg
  python bin/train_supernet.py --config=configs/shapes_seg.py --workdir=/tmp/shapes_seg \
      --config.train.steps=200 --strategy=mirrored
  python bin/benchmark.py --what=train_step --config=configs/shapes_seg.py

Variants set the width: `:w8` (default) or any `:wN`.
"""

import ml_collections

from scalenas_tf.config import width_from_variant


def get_config(arg=None):
    config = ml_collections.ConfigDict()
    config.seed = 0
    # Two modules per stage would double the trace time; one keeps the job small but searchable:
    # 3 modules x (depth per branch, fusion bits).
    config.search_space = dict(
        width=width_from_variant(arg, 8),
        depth_choices=(2, 3, 4, 5),
        num_modules=(1, 1, 1),
        num_branches=(2, 3, 4),
        multi_scale_output=True,
        stem_channels=16,
        layer1_blocks=1,
    )
    config.model = dict(task="seg", num_classes=5, input_size=(64, 64))
    config.data = dict(source="shapes", batch_size=16, train_examples=2048, validation_examples=256)
    config.train = dict(
        steps=600,
        steps_per_epoch=100,  # a checkpoint (BackupAndRestore) at every epoch end
        # sgd | adam | adamw | rmsprop. Measured over 600 steps (val mIoU of the largest arch, shared
        # BN; constant background 0.180): SGD 0.05 momentum 0.9 reached 0.200, Adam 3e-3 0.228.
        optimizer="adam",
        learning_rate=0.003,
        momentum=0.9,  # sgd and rmsprop only
        nesterov=False,
        weight_decay=0.0,
        warmup_steps=50,
        sampler="grouped",  # uniform | fusion | grouped | sandwich | largest
        sampler_kwargs=dict(sandwich=True),
        teacher="inplace",  # inplace | none | static (config.train.teacher_weights: an extracted largest model)
        teacher_weights="",
        init_from_teacher=False,
        distill_weight=0.5,  # ScaleNAS paper 1.0, released code 0.5
        sparse_updates=True,
        per_replica_subnets=False,
        stacked_optimizer_slots=True,  # False: resume a checkpoint with one slot per variable
        # float32 | mixed_bfloat16 | mixed_float16 (GPUs). On a CPU without AMX (the CI machine, AMD
        # EPYC) a mixed_bfloat16 step measured 3.2-3.9x slower than float32, hence float32.
        precision="float32",
        graph_optimizations="fast",  # "full": TF's default grappler; "off": none (training/graph_options.py)
    )
    return config
