r"""Forward parity of the ScaleNAS authors' segmentation supernet: PyTorch logits vs the ScaleNAS supernet.

Not a pytest module: the authors' model needs torch, which is not a dependency of this library. The
model is built from the authors' own file (supernashg/AutoRecist_ScaleNAS_versions), written out of
a checkout into a folder of its own:

  git --git-dir=$REPO show HEAD:lib/models/superscalenet_seg.py > /tmp/scalenas_src/superscalenet_seg.py

Then, in a scratch environment with torch and in the project's own:

  /path/to/scratch/python tests/reference/scalenas_official_parity.py dump /tmp/scalenas_src/superscalenet_seg.py \
      ../shared/fixtures/scalenas_masks/seg_w32_S1.json /tmp/so
  python tests/reference/scalenas_official_parity.py compare /tmp/so

`dump` builds `SuperScaleNet_Seg` with the released W32 Cityscapes supernet's structure
(`superscalenet_seg_w32_..._group_sampling.yaml`: DEPTH_LIST 2-5, five BasicBlocks and five fuse
layers per module, modules 1/4/3, four layer1 Bottlenecks, 19 classes; an optional last argument
sets another width) with PyTorch's default initialization and random BN parameters and statistics
(those of a train-mode pass of the largest subnet, perturbed), writes its state dict with
`torch.save` (`scalenas_official_seg.pth`, a zip file) and, in eval mode for a fixed 64x128 batch,
the logits at the given official mask (`set_active_subnet`, as their test script) and at the largest
subnet (every block and fuse-layer entry) into `scalenas_official_seg_reference.npz` (NHWC, with the
mask as JSON). `compare` reads the checkpoint without torch, maps all of it with the family's
`scalenas_official` importer onto the supernet of `configs/scalenas_seg.py:w32` (nearest fusion, as
the authors'), and prints one JSON line: the max abs logit difference of the supernet at the mask's
arch and at the largest, and of the model extracted at the mask's arch.

  /path/to/scratch/python tests/reference/scalenas_official_parity.py dump_tiny \
      /tmp/scalenas_src/superscalenet_seg.py tests/fixtures

writes the CI fixtures of tests/families/scalenas/test_scalenas_official_import.py: a 2-wide
supernet (one module per stage, DEPTH_LIST 2-3, so three blocks and three fuse layers per module; the
stem and one layer1 Bottleneck 64 channels wide, as the authors' code fixes them) saved in float16
(`scalenas_official_seg_tiny.pth`) and its logits in float32 from those values at `TINY_MASK` and at
the largest subnet (`scalenas_official_seg_tiny.npz`).

The authors' file imports `int2list` from their `utils.utils` (given here) and calls `np.int`
(`hrnet_official_parity.load_official` sets it).
"""

import json
import os
import sys
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hrnet_official_parity as hrnet_parity  # noqa: E402  (the official-file helpers)

_Node = hrnet_parity._Node
DEPTH_LIST = (2, 3, 4, 5)
MODULES = (1, 4, 3)
FULL_INPUT = (2, 3, 64, 128)
FULL_WIDTH = 32
TINY_WIDTH = 2
TINY_DEPTH_LIST = (2, 3)
TINY_CLASSES = 5
TINY_INPUT = (2, 3, 32, 64)
# The ScaleNAS space of the tiny fixture (also used by the pytest module).
TINY_SPACE = dict(
    width=TINY_WIDTH,
    depth_choices=TINY_DEPTH_LIST,
    num_modules=(1, 1, 1),
    layer1_blocks=1,
    stem_channels=64,
    fusion_upsampling="nearest",
    bn_momentum=0.99,
)
# An official mask for TINY_SPACE with per-step fusion (bits at early steps, unequal depths).
TINY_MASK = [
    {"d": [3, 2], "f": [[[1, 1], [1, 0], [1, 1]], [[1, 1], [0, 1], [0, 0]]]},
    {
        "d": [2, 3, 3],
        "f": [[[1, 0, 1], [1, 1, 0], [0, 0, 0]], [[1, 1, 1], [0, 1, 0], [1, 1, 1]], [[0, 1, 1], [1, 0, 1], [1, 0, 1]]],
    },
    {
        "d": [3, 2, 2, 3],
        "f": [
            [[1, 1, 0, 1], [1, 0, 0, 0], [1, 1, 1, 1]],
            [[0, 1, 1, 0], [1, 1, 0, 1], [0, 0, 0, 0]],
            [[1, 0, 1, 1], [0, 1, 1, 0], [0, 0, 0, 0]],
            [[1, 1, 1, 1], [0, 0, 0, 1], [0, 1, 1, 1]],
        ],
    },
]


def int2list(value, repeat_time=1):
    """What the authors' `utils.utils.int2list` returns: lists as they are, a scalar repeated."""
    if isinstance(value, (list, np.ndarray)):
        return value
    if isinstance(value, tuple):
        return list(value)
    return [value] * repeat_time


def official_config(width, num_modules=MODULES, depth_list=DEPTH_LIST, layer1_blocks=4, num_classes=19):
    """The `cfg` `SuperScaleNet_Seg` reads (`MODEL.EXTRA.STAGE{1..4}`, `DATASET.NUM_CLASSES`)."""
    extra = _Node(FINAL_CONV_KERNEL=1)
    extra["STAGE1"] = _Node(NUM_MODULES=1, BLOCK="BOTTLENECK", NUM_BLOCKS=[layer1_blocks], NUM_CHANNELS=[64])
    for stage, modules in zip((2, 3, 4), num_modules):
        extra[f"STAGE{stage}"] = _Node(
            NUM_MODULES=modules,
            NUM_BRANCHES=stage,
            DEPTH_LIST=list(depth_list),
            FUSION_PERCENTAGE=0.5,
            BLOCK="BASIC",
            NUM_BLOCKS=[max(depth_list)] * stage,
            NUM_CHANNELS=[width * 2**i for i in range(stage)],
            FUSE_METHOD="SUM",
        )
    return _Node(MODEL=_Node(NAME="superscalenet_seg", EXTRA=extra), DATASET=_Node(NUM_CLASSES=num_classes))


def build(model_file, cfg):
    utils = types.ModuleType("utils")
    utils.utils = types.ModuleType("utils.utils")
    utils.utils.int2list = int2list
    sys.modules.setdefault("utils", utils)
    sys.modules.setdefault("utils.utils", utils.utils)
    module = hrnet_parity.load_official(model_file)
    return module.SuperScaleNet_Seg(cfg)  # get_seg_model would also init_weights (std 0.001)


def torch_masks(mask):
    """An official JSON mask as `set_active_subnet` reads it (their `.npy` holds `d` as a (B, 1) array)."""
    return [{"d": np.asarray(m["d"], dtype=int).reshape(-1, 1), "f": m["f"]} for m in mask]


def largest_mask(num_modules, depth_list):
    steps = max(depth_list)
    branches = [b for b, n in zip((2, 3, 4), num_modules) for _ in range(n)]
    return [{"d": [steps] * b, "f": [[[1] * b] * steps] * b} for b in branches]


def _run(model, torch, x, mask):
    model.set_active_subnet(torch_masks(mask))
    with torch.no_grad():
        return model(x).numpy().transpose(0, 2, 3, 1)


def dump(model_file, mask_file, out_dir, width=None):
    import torch

    width = int(width or FULL_WIDTH)
    with open(mask_file) as f:
        mask = json.load(f)
    torch.manual_seed(0)
    model = build(model_file, official_config(width)).eval()
    largest = largest_mask(MODULES, DEPTH_LIST)
    model.set_active_subnet(torch_masks(largest))  # every BN sees the statistics pass
    hrnet_parity.randomize_bn(model, torch, torch.randn(8, *FULL_INPUT[1:]))
    x = torch.randn(*FULL_INPUT)
    outputs = {"output_mask": _run(model, torch, x, mask), "output_largest": _run(model, torch, x, largest)}
    os.makedirs(out_dir, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(out_dir, "scalenas_official_seg.pth"))
    np.savez(
        os.path.join(out_dir, "scalenas_official_seg_reference.npz"),
        input=x.numpy().transpose(0, 2, 3, 1),
        mask=json.dumps(mask),
        width=width,
        **outputs,
    )
    params = sum(p.numel() for p in model.parameters())
    shape = list(outputs["output_mask"].shape)
    print(json.dumps({"width": width, "params": params, "output": shape, "torch": torch.__version__}))


def dump_tiny(model_file, out_dir):
    import torch

    torch.manual_seed(0)
    cfg = official_config(TINY_WIDTH, (1, 1, 1), TINY_DEPTH_LIST, layer1_blocks=1, num_classes=TINY_CLASSES)
    model = build(model_file, cfg).eval()
    hrnet_parity._share_wide_convs(model)
    largest = largest_mask((1, 1, 1), TINY_DEPTH_LIST)
    model.set_active_subnet(torch_masks(largest))
    hrnet_parity.randomize_bn(model, torch, torch.randn(8, *TINY_INPUT[1:]))
    os.makedirs(out_dir, exist_ok=True)
    checkpoint = os.path.join(out_dir, "scalenas_official_seg_tiny.pth")
    # Converted in place, so that shared modules keep sharing storages in the file.
    torch.save(model.half().state_dict(), checkpoint)
    model.float()  # runs exactly the float16 values the file holds
    x = torch.randn(*TINY_INPUT)
    np.savez_compressed(
        os.path.join(out_dir, "scalenas_official_seg_tiny.npz"),
        input=x.numpy().transpose(0, 2, 3, 1),
        output_mask=_run(model, torch, x, TINY_MASK),
        output_largest=_run(model, torch, x, largest),
    )
    print(json.dumps({"checkpoint": checkpoint, "bytes": os.path.getsize(checkpoint), "torch": torch.__version__}))


def compare(out_dir):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    from configs import scalenas_seg
    from scalenas_tf.experiment import Experiment
    from scalenas_tf.families.scalenas import torch_import
    from scalenas_tf.models import extraction
    from scalenas_tf.models import torch_checkpoint
    from scalenas_tf.models import weight_import

    reference = np.load(os.path.join(out_dir, "scalenas_official_seg_reference.npz"))
    state = torch_checkpoint.load_state_dict(os.path.join(out_dir, "scalenas_official_seg.pth"))
    experiment = Experiment.from_config(scalenas_seg.get_config(f"w{int(reference['width'])}"))
    space = experiment.space
    arch = space.from_official_mask(json.loads(str(reference["mask"])))
    supernet = experiment.build_supernet()
    imported = torch_import.scalenas_official(state, supernet, arch)
    weight_import.apply(supernet, imported)
    x = reference["input"]

    def diff(ours, key):
        return float(np.max(np.abs(np.asarray(ours) - reference[key])))

    static = extraction.extract_subnet(supernet, arch, input_size=x.shape[1:3])
    direct = extraction.extract_subnet(experiment.build_supernet(), arch, input_size=x.shape[1:3])
    direct_import = torch_import.scalenas_official(state, direct, arch)  # the mask's tensors only
    weight_import.apply(direct, direct_import)
    summary = {
        "width": int(reference["width"]),
        "fusion_upsampling": space.fusion_upsampling,
        "tensors_mapped": imported.num_tensors,
        "ignored": len(imported.ignored),
        "unmapped_source": len(imported.unmapped_source),
        "unmapped_target": len(imported.unmapped_target),
        "missing": len(imported.missing),
        "mask_supernet_max_abs_diff": diff(supernet(x, arch=arch, training=False), "output_mask"),
        "mask_extracted_max_abs_diff": diff(static(x, training=False), "output_mask"),
        "mask_direct_import_max_abs_diff": diff(direct(x, training=False), "output_mask"),
        "mask_max_abs_output": float(np.max(np.abs(reference["output_mask"]))),
        "largest_supernet_max_abs_diff": diff(supernet(x, arch=space.largest(), training=False), "output_largest"),
        "largest_max_abs_output": float(np.max(np.abs(reference["output_largest"]))),
        "direct_import_tensors_mapped": direct_import.num_tensors,
        "direct_import_ignored": len(direct_import.ignored),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"dump": dump, "dump_tiny": dump_tiny, "compare": compare}[command](*args)
