r"""ScaleNAS semantic segmentation (Cityscapes, 19 classes): HRNet-like space, HRNetV2 head.

Variants set the width: `:w32` (default), `:w48`, or any `:wN` (e.g. `:w8` for CPU work).

  python bin/cost.py --config=configs/scalenas_seg.py:w32 --arch=hrnet
  # HRNetV2-W32: 29,546,515 params, 336.418 GFLOPs (MACs/2^30) at 1024x2048.
  python bin/cost.py --config=configs/scalenas_seg.py:w32 --official_mask=seg_w32_S1.json
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
        multi_scale_output=True,
        stem_channels=64,
        layer1_blocks=4,
    )
    config.model = dict(task="seg", num_classes=19, input_size=(1024, 2048))
    return config
