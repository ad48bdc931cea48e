r"""ScaleNAS semantic segmentation (Cityscapes, 19 classes): HRNet-like space, HRNetV2 head.

Variants set the width: `:w32` (default), `:w48`, or any `:wN` (e.g. `:w8` for CPU work). Add
`_cityscapes` (e.g. `:w32_cityscapes`) for supernet training and search on Cityscapes through TFDS
(HRNet's recipe; needs the data, see README "Real data"):

  python bin/train_supernet.py --config=configs/scalenas_seg.py:w32_cityscapes --workdir=/runs/seg \
      --config.data.source_kwargs.manual_dir=/data/cityscapes

  python bin/cost.py --config=configs/scalenas_seg.py:w32 --arch=hrnet
  # HRNetV2-W32: 29,546,515 params, 336.418 GFLOPs (MACs/2^30) at 1024x2048.
  python bin/cost.py --config=configs/scalenas_seg.py:w32 --official_mask=seg_w32_S1.json
"""

import ml_collections

from scalenas_tf.config import real_data_sections
from scalenas_tf.config import split_variant
from scalenas_tf.config import width_from_variant


def get_config(arg=None):
    arg, dataset = split_variant(arg, ("cityscapes",))
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
        # Fusion as the authors' ScaleNAS segmentation supernet (superscalenet_seg.py): nearest
        # upsampling inside the modules. HRNetV2 itself (HRNet-Semantic-Segmentation, and its
        # checkpoints for bin/import_weights.py --source=hrnet_official) resizes bilinearly:
        # --config.search_space.fusion_upsampling=bilinear. BN as the authors' segmentation code:
        # PyTorch momentum 0.01, i.e. Keras 0.99. Neither changes params or MACs.
        fusion_upsampling="nearest",
        bn_momentum=0.99,
    )
    config.model = dict(task="seg", num_classes=19, input_size=(1024, 2048))
    if dataset == "cityscapes":
        _cityscapes(config)
    return config


def _cityscapes(config):
    """HRNet-Semantic-Segmentation's Cityscapes recipe (2975 training images): 512x1024 crops of the
    image rescaled 0.5-2.0, batch 12, SGD 0.01 momentum 0.9, weight decay 5e-4, 484 epochs; scored on
    full-resolution images. The teacher is the in-place largest subnet."""
    config.model.input_size = (512, 1024)  # the training crop; the cost at 1024x2048: --input_size=1024x2048
    real_data_sections(
        config,
        "cityscapes",
        batch_size=12,
        train=dict(
            steps=120_000,  # 484 epochs of 248 steps
            steps_per_epoch=248,
            learning_rate=0.01,
            weight_decay=5e-4,
            sampler="grouped",
            sampler_kwargs=dict(sandwich=True),
        ),
        # The paper's evolution (n0=1000, k=100, N=2000) is the default; the evaluator holds its
        # validation batches in memory: 100 full-resolution images take about 3.3 GB.
        search=dict(
            methods=("evolution", "random"),
            calibration_batches=20,
            calibration_batch_size=12,
            validation_examples=100,
            batch_size=4,
        ),
        validation_size=(1024, 2048),
    )
