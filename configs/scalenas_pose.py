r"""ScaleNAS top-down pose (COCO keypoints, 17 joints): HRNet-like space, heatmap head on branch 0.

Variants set the width: `:w32` (default), `:w48`, or any `:wN` (e.g. `:w8` for CPU work). Add `_coco`
(e.g. `:w32_coco`) for supernet training and search on COCO 2017 person keypoints through TFDS
(HRNet's recipe; needs the data, see README "Real data"):

  python bin/train_supernet.py --config=configs/scalenas_pose.py:w32_coco --workdir=/runs/pose \
      --config.data.source_kwargs.manual_dir=/data/coco

  python bin/cost.py --config=configs/scalenas_pose.py:w32 --input_size=256x192 --arch=hrnet
  # HRNet-W32 pose: 28,536,113 params, 7.120 GFLOPs (MACs/2^30) at 256x192.
"""

import ml_collections

from scalenas_tf.config import real_data_sections
from scalenas_tf.config import split_variant
from scalenas_tf.config import width_from_variant


def get_config(arg=None):
    arg, dataset = split_variant(arg, ("coco",))
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.search_space = dict(
        width=width_from_variant(arg, 32),
        depth_choices=(2, 3, 4, 5),
        num_modules=(1, 4, 3),
        num_branches=(2, 3, 4),
        multi_scale_output=False,  # only branch 0 of the last module feeds the heatmap head
        stem_channels=64,
        layer1_blocks=4,
    )
    config.model = dict(task="pose", num_classes=17, input_size=(256, 192))
    if dataset == "coco":
        _coco(config)
    return config


def _coco(config):
    """HRNet's COCO top-down recipe (149,813 training persons with ground-truth boxes): 256x192 crops
    (scale +-35 %, rotation +-45 degrees, half body, flip), batch 128 (32 x 4 GPUs), Adam 1e-3, 210
    epochs. The search scores PCK on validation crops; COCO AP: `evaluation.keypoints.evaluate_coco`."""
    real_data_sections(
        config,
        "coco_keypoints",
        batch_size=128,
        train=dict(
            steps=245_700,  # 210 epochs of 1170 steps
            steps_per_epoch=1170,
            optimizer="adam",
            learning_rate=1e-3,
            weight_decay=0.0,
            sampler="grouped",
            sampler_kwargs=dict(sandwich=True),
        ),
        search=dict(
            methods=("evolution", "random"),
            calibration_batches=20,
            calibration_batch_size=64,
            validation_examples=2000,
            batch_size=64,
        ),
    )
