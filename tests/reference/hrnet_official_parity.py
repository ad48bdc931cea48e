r"""Forward parity of official HRNet checkpoints: PyTorch HRNetV2 seg logits / pose heatmaps vs the ScaleNAS supernet.

Not a pytest module: the official models need torch, which is not a dependency of this library. The
models are built from the official repositories' own files, written out of a checkout (the seg file
imports its sibling `bn_helper.py`, so both go in one folder):

  git --git-dir=$SEG_REPO show HEAD:lib/models/seg_hrnet.py > /tmp/hrnet_src/seg/seg_hrnet.py
  git --git-dir=$SEG_REPO show HEAD:lib/models/bn_helper.py > /tmp/hrnet_src/seg/bn_helper.py
  git --git-dir=$POSE_REPO show HEAD:lib/models/pose_hrnet.py > /tmp/hrnet_src/pose/pose_hrnet.py

($SEG_REPO: HRNet/HRNet-Semantic-Segmentation, default branch HRNet-OCR; $POSE_REPO:
leoxiaobin/deep-high-resolution-net.pytorch.) Then, in a scratch environment with torch and in the
project's own:

  /path/to/scratch/python tests/reference/hrnet_official_parity.py dump seg /tmp/hrnet_src/seg/seg_hrnet.py /tmp/ho
  python tests/reference/hrnet_official_parity.py compare seg /tmp/ho
  /path/to/scratch/python tests/reference/hrnet_official_parity.py dump pose /tmp/hrnet_src/pose/pose_hrnet.py /tmp/ho
  python tests/reference/hrnet_official_parity.py compare pose /tmp/ho

`dump` builds the official network at the released configs' structure (seg: HRNetV2-W18, the
Cityscapes yaml's stages with `ALIGN_CORNERS: False`, 19 classes; pose: HRNet-W32, 17 joints; an
optional last argument sets another width) with PyTorch's default initialization and random BN
parameters and statistics (the statistics of a random batch, perturbed), writes its state dict
with `torch.save` (`hrnet_official_<task>.pth`, a zip file) and its output for a fixed random batch
in eval mode (seg 64x128, pose 128x96; `hrnet_official_<task>_reference.npz`, NHWC). `compare`
reads the checkpoint without torch, maps it with the family's `hrnet_official` importer onto the
supernet of `configs/scalenas_seg.py:w18` with bilinear fusion / `configs/scalenas_pose.py:w32`
(nearest, single output) at the arch `hrnet`, and prints one JSON line: the max abs output
difference of the supernet and of the extracted model.

  /path/to/scratch/python tests/reference/hrnet_official_parity.py dump_tiny seg /tmp/hrnet_src/seg/seg_hrnet.py \
      tests/fixtures
  /path/to/scratch/python tests/reference/hrnet_official_parity.py dump_tiny pose /tmp/hrnet_src/pose/pose_hrnet.py \
      tests/fixtures

write the CI fixtures of tests/families/scalenas/test_hrnet_official_import.py: a 2-wide network
(one module per stage, two BasicBlocks per branch; the stem and layer1 as the official code fixes
them: 64 channels, seg one Bottleneck, pose four) saved in float16 (`hrnet_official_<task>_tiny.pth`)
and its output in float32 from those float16 values (`hrnet_official_<task>_tiny.npz`). Some of
the 64-channel tensors share one storage to keep the files small (`_share_wide_convs`).

The official seg file calls `np.int`, which numpy >= 1.24 removed: `np.int = int` is set for it.
"""

import importlib.util
import json
import os
import shutil
import sys
import tempfile

import numpy as np

# Each official file's config, with the structure of the released yaml files.
_DEPTH = 4
_MODULES = (1, 4, 3)
TINY_WIDTH = 2
TINY_CLASSES = {"seg": 5, "pose": 3}
TINY_INPUT = {"seg": (2, 3, 32, 64), "pose": (2, 3, 32, 64)}
FULL_INPUT = {"seg": (2, 3, 64, 128), "pose": (2, 3, 128, 96)}
FULL_WIDTH = {"seg": 18, "pose": 32}
# The ScaleNAS space of each tiny fixture (also used by the pytest module).
TINY_SPACES = {
    "seg": dict(
        width=TINY_WIDTH,
        depth_choices=(2, 3),
        num_modules=(1, 1, 1),
        layer1_blocks=1,
        stem_channels=64,
        fusion_upsampling="bilinear",
        bn_momentum=0.99,
    ),
    "pose": dict(
        width=TINY_WIDTH,
        depth_choices=(2, 3),
        num_modules=(1, 1, 1),
        layer1_blocks=4,
        stem_channels=64,
        multi_scale_output=False,
    ),
}
_BN_RANGES = {"weight": (0.5, 1.5), "bias": (-0.5, 0.5)}


class _Node(dict):
    """A dict read by key or attribute: what the official code reads of a yacs CfgNode."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def official_config(task, width, num_modules=_MODULES, depth=_DEPTH, layer1_blocks=4, num_classes=None):
    """The `cfg` each official constructor reads (`MODEL.EXTRA.STAGE{1..4}`, head settings)."""
    extra = _Node(FINAL_CONV_KERNEL=1, PRETRAINED_LAYERS=["*"])
    extra["STAGE1"] = _Node(
        NUM_MODULES=1, NUM_BRANCHES=1, BLOCK="BOTTLENECK", NUM_BLOCKS=[layer1_blocks], NUM_CHANNELS=[64]
    )
    for stage, modules in zip((2, 3, 4), num_modules):
        extra[f"STAGE{stage}"] = _Node(
            NUM_MODULES=modules,
            NUM_BRANCHES=stage,
            BLOCK="BASIC",
            NUM_BLOCKS=[depth] * stage,
            NUM_CHANNELS=[width * 2**i for i in range(stage)],
            FUSE_METHOD="SUM",
        )
    if task == "seg":
        model = _Node(NAME="seg_hrnet", ALIGN_CORNERS=False, EXTRA=extra)
        return _Node(MODEL=model, DATASET=_Node(NUM_CLASSES=num_classes or 19))
    model = _Node(NAME="pose_hrnet", NUM_JOINTS=num_classes or 17, EXTRA=extra)
    return _Node(MODEL=model)


def load_official(model_file):
    """Imports an official model file (and its siblings, for relative imports) as a throwaway package."""
    if not hasattr(np, "int"):
        np.int = int  # seg_hrnet.py: np.int(np.sum(...)), removed in numpy 1.24
    package = tempfile.mkdtemp(prefix="hrnet_official_")
    shutil.copytree(os.path.dirname(os.path.abspath(model_file)), os.path.join(package, "hrnet_official_src"))
    open(os.path.join(package, "hrnet_official_src", "__init__.py"), "w").close()
    sys.path.insert(0, package)
    name = os.path.splitext(os.path.basename(model_file))[0]
    return importlib.import_module(f"hrnet_official_src.{name}")


def build(task, model_file, cfg):
    module = load_official(model_file)
    if task == "seg":
        return module.HighResolutionNet(cfg)  # get_seg_model would also init_weights (std 0.001)
    return module.PoseHighResolutionNet(cfg)


def randomize_bn(model, torch, x):
    """Random BN affine parameters; moving statistics from a train-mode pass over `x` (activations keep
    a sane scale), then perturbed so that every tensor matters. Covers SyncBatchNorm (seg_hrnet)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for module in norms:
            for field, (low, high) in _BN_RANGES.items():
                getattr(module, field).uniform_(low, high)
            module.momentum = 1.0  # the running statistics become this batch's
        model.train()
        model(x)
        model.eval()
        for module in norms:
            module.momentum = 0.1
            module.running_mean.add_(torch.empty_like(module.running_mean).uniform_(-0.2, 0.2))
            module.running_var.mul_(torch.empty_like(module.running_var).uniform_(0.7, 1.4))


def dump(task, model_file, out_dir, width=None):
    import torch

    width = int(width or FULL_WIDTH[task])
    torch.manual_seed(0)
    model = build(task, model_file, official_config(task, width)).eval()
    shape = FULL_INPUT[task]
    randomize_bn(model, torch, torch.randn(8, *shape[1:]))
    x = torch.randn(*shape)
    with torch.no_grad():
        out = model(x).numpy()
    os.makedirs(out_dir, exist_ok=True)
    checkpoint = os.path.join(out_dir, f"hrnet_official_{task}.pth")
    torch.save(model.state_dict(), checkpoint)
    np.savez(
        os.path.join(out_dir, f"hrnet_official_{task}_reference.npz"),
        input=x.numpy().transpose(0, 2, 3, 1),
        output=out.transpose(0, 2, 3, 1),
        width=width,
    )
    params = sum(p.numel() for p in model.parameters())
    print(
        json.dumps(
            {"task": task, "width": width, "params": params, "output": list(out.shape), "torch": torch.__version__}
        )
    )


def _share_wide_convs(model):
    """Keeps the fixture small: the stem and layer1 are 64 channels wide whatever the width (most of the
    file), so pose's layer1 blocks 2 and 3 are block 1 (one module registered three times), every 64->64
    3x3 conv there shares the stem's conv2 weight and layer1.0's downsample conv shares its conv3
    weight. torch.save writes a shared storage once; the state dict still names every tensor."""
    if len(model.layer1) == 4:  # pose_hrnet.py fixes four layer1 blocks
        model.layer1[2] = model.layer1[1]
        model.layer1[3] = model.layer1[1]
    for block in model.layer1:
        block.conv2.weight = model.conv2.weight
    first = model.layer1[0]
    first.downsample[0].weight = first.conv3.weight


def dump_tiny(task, model_file, out_dir):
    import torch

    torch.manual_seed(0)
    cfg = official_config(
        task, TINY_WIDTH, num_modules=(1, 1, 1), depth=2, layer1_blocks=1, num_classes=TINY_CLASSES[task]
    )
    model = build(task, model_file, cfg).eval()
    _share_wide_convs(model)
    shape = TINY_INPUT[task]
    randomize_bn(model, torch, torch.randn(8, *shape[1:]))
    os.makedirs(out_dir, exist_ok=True)
    checkpoint = os.path.join(out_dir, f"hrnet_official_{task}_tiny.pth")
    # Converted in place, so that shared modules keep sharing storages in the file.
    torch.save(model.half().state_dict(), checkpoint)
    model.float()  # runs exactly the float16 values the file holds
    x = torch.randn(*shape)
    with torch.no_grad():
        out = model(x).numpy()
    np.savez_compressed(
        os.path.join(out_dir, f"hrnet_official_{task}_tiny.npz"),
        input=x.numpy().transpose(0, 2, 3, 1),
        output=out.transpose(0, 2, 3, 1),
    )
    print(json.dumps({"checkpoint": checkpoint, "bytes": os.path.getsize(checkpoint), "torch": torch.__version__}))


def compare(task, out_dir):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    from configs import scalenas_pose
    from configs import scalenas_seg
    from scalenas_tf.experiment import Experiment
    from scalenas_tf.families.scalenas import torch_import
    from scalenas_tf.models import extraction
    from scalenas_tf.models import torch_checkpoint
    from scalenas_tf.models import weight_import

    reference = np.load(os.path.join(out_dir, f"hrnet_official_{task}_reference.npz"))
    state = torch_checkpoint.load_state_dict(os.path.join(out_dir, f"hrnet_official_{task}.pth"))
    config = {"seg": scalenas_seg, "pose": scalenas_pose}[task].get_config(f"w{int(reference['width'])}")
    if task == "seg":
        config.search_space.fusion_upsampling = "bilinear"  # HRNetV2 (the config's default is ScaleNAS's nearest)
    experiment = Experiment.from_config(config)
    supernet = experiment.build_supernet()
    arch = experiment.space.hrnet(_DEPTH)
    imported = torch_import.hrnet_official(state, supernet, arch)
    weight_import.apply(supernet, imported)
    x = reference["input"]
    ours = np.asarray(supernet(x, arch=arch, training=False))
    static = extraction.extract_subnet(supernet, arch, input_size=x.shape[1:3])
    extracted = np.asarray(static(x, training=False))
    expected = reference["output"]
    print(
        json.dumps(
            {
                "task": task,
                "width": int(reference["width"]),
                "fusion_upsampling": experiment.space.fusion_upsampling,
                "tensors_mapped": imported.num_tensors,
                "ignored": len(imported.ignored),
                "unmapped_source": len(imported.unmapped_source),
                "missing": len(imported.missing),
                "supernet_max_abs_diff": float(np.max(np.abs(ours - expected))),
                "extracted_max_abs_diff": float(np.max(np.abs(extracted - expected))),
                "max_abs_output": float(np.max(np.abs(expected))),
            }
        )
    )


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"dump": dump, "dump_tiny": dump_tiny, "compare": compare}[command](*args)
