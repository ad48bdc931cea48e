r"""ScaleNAS image classification (ImageNet, 1000 classes): HRNet-like space, HRNet classification head.

Variants set the width: `:w18`, `:w32` (default), `:w48`, or any `:wN`.

  python bin/cost.py --config=configs/scalenas_cls.py:w18 --arch=hrnet
  # hrnet_w18: 21,299,004 params, 3.989 GFLOPs (MACs/2^30) at 224x224.
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
    config.model = dict(task="cls", num_classes=1000, input_size=(224, 224))
    return config
