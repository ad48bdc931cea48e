r"""ScaleNAS image classification (ImageNet, 1000 classes): HRNet-like space, HRNet classification head.

Variants set the width: `:w18`, `:w32` (default), `:w48`, or any `:wN`. Add `_imagenet` (e.g.
`:w18_imagenet`, HRNet's ImageNet recipe) or `_cifar10` (32x32, e.g. `:w8_cifar10`, small enough to
try on a CPU; TFDS downloads CIFAR-10 with `--config.data.source_kwargs.download=True`) for supernet
training and search on real data (see README "Real data"):

  python bin/train_supernet.py --config=configs/scalenas_cls.py:w18_imagenet --workdir=/runs/cls \
      --config.data.source_kwargs.manual_dir=/data/imagenet

  python bin/cost.py --config=configs/scalenas_cls.py:w18 --arch=hrnet
  # hrnet_w18: 21,299,004 params, 3.989 GFLOPs (MACs/2^30) at 224x224.
"""

import ml_collections

from scalenas_tf.config import real_data_sections
from scalenas_tf.config import split_variant
from scalenas_tf.config import width_from_variant


def get_config(arg=None):
    arg, dataset = split_variant(arg, ("imagenet", "cifar10"))
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
    if dataset == "imagenet":
        _imagenet(config)
    elif dataset == "cifar10":
        _cifar10(config)
    return config


_SAMPLER = dict(sampler="grouped", sampler_kwargs=dict(sandwich=True), nesterov=True)


def _imagenet(config):
    """HRNet's ImageNet recipe: random-resized 224 crops and flips, batch 256, SGD 0.1 (Nesterov),
    weight decay 1e-4, 100 epochs; scored (top-1, top-5 in the log) on 87.5 % centre crops."""
    real_data_sections(
        config,
        "imagenet2012",
        batch_size=256,
        train=dict(steps=500_500, steps_per_epoch=5005, learning_rate=0.1, weight_decay=1e-4, **_SAMPLER),
        search=dict(
            methods=("evolution", "random"),
            calibration_batches=20,
            calibration_batch_size=64,
            validation_examples=10_000,
            batch_size=250,
        ),
    )


def _cifar10(config):
    """CIFAR-10 at 32x32 (pad-crop and flip), batch 128, SGD 0.1 (Nesterov), weight decay 5e-4, 100 epochs."""
    config.search_space.stem_channels = 32
    config.search_space.layer1_blocks = 1
    config.model.update(num_classes=10, input_size=(32, 32))
    real_data_sections(
        config,
        "cifar10",
        batch_size=128,
        train=dict(steps=39_100, steps_per_epoch=391, learning_rate=0.1, weight_decay=5e-4, **_SAMPLER),
        search=dict(
            methods=("evolution", "random"),
            calibration_batches=10,
            calibration_batch_size=128,
            validation_examples=10_000,
            batch_size=500,
        ),
    )
