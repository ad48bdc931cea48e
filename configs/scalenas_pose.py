r"""ScaleNAS top-down pose (COCO keypoints, 17 joints): HRNet-like space, heatmap head on branch 0.

Variants set the width: `:w32` (default), `:w48`, or any `:wN` (e.g. `:w8` for CPU work).

  python bin/cost.py --config=configs/scalenas_pose.py:w32 --input_size=256x192 --arch=hrnet
  # HRNet-W32 pose: 28,536,113 params, 7.120 GFLOPs (MACs/2^30) at 256x192.
"""

import ml_collections

from scalenas_tf.config import width_from_variant


def get_config(arg=None):
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
    return config
