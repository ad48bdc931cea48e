"""PyTorch HRNet and ScaleNAS checkpoints -> ScaleNAS layers: timm's `hrnet_w*` (`timm_hrnet`), the official
HRNet repositories' segmentation, pose and classification models (`hrnet_official`) and the ScaleNAS
authors' segmentation supernet (`scalenas_official`).

An HRNet is the ScaleNAS network of an HRNet-like arch: every branch of a module has the same depth
and all branches fuse once, after the last block (`ScaleNASSpace.hrnet(depth)`); top-down pose
HRNet's last module fuses into branch 0 only (`multi_scale_output=False`, which `hrnet` applies to
a pose space). All sources share the backbone's names, in PyTorch (left) and here (right;
extraction keeps them):

    conv1, bn1, conv2, bn2                    stem_conv1, stem_bn1, stem_conv2, stem_bn2
    layer1.{n}.conv1 ... downsample.{0,1}     stem_layer1_b{n}_conv1 ... _down_conv, _down_bn
    transition{t}.{i}.{0,1}                   trans{t+1}_b{i}_conv0, _bn0        (existing branch)
    transition{t}.{i}.{c}.{0,1}               trans{t+1}_b{i}_conv{c}, _bn{c}    (new branch)
    stage{S}.{m}.branches.{i}.{s}.conv1 ...   s{S}m{m}_b{i}_k{s}_conv1 ...
    stage{S}.{m}.fuse_layers.{j}.{k}.{0,1}    s{S}m{m}_f{j}s{d-1}k{k}_conv0, _bn0      (k > j)
    stage{S}.{m}.fuse_layers.{j}.{k}.{c}.{0,1} s{S}m{m}_f{j}s{d-1}k{k}_conv{c}, _bn{c} (k < j)

The ScaleNAS supernet (supernashg/AutoRecist_ScaleNAS_versions `lib/models/superscalenet_seg.py`,
`SuperScaleNet_Seg`) has the same stem, layer1, transitions and BasicBlocks, `max(DEPTH_LIST)`
blocks per branch, and one fuse layer per block step instead of one per module, every target and
source at every step (their forward reads the mask's bits `f[j][s]`; nearest `nn.Upsample` for
k > j, as this family's default `fusion_upsampling`):

    stage{S}.{m}.branches.{i}.{s}.conv1 ...              s{S}m{m}_b{i}_k{s}_conv1 ...   (every step s)
    stage{S}.{m}.fuse_layers_{s+1}.{j}.{k}.{0,1}         s{S}m{m}_f{j}s{s}k{k}_conv0, _bn0       (k > j)
    stage{S}.{m}.fuse_layers_{s+1}.{j}.{k}.{c}.{0,1}     s{S}m{m}_f{j}s{s}k{k}_conv{c}, _bn{c}   (k < j)

The heads:

    cls  (timm, HRNet-Image-Classification)   incre_modules.{i}.0.conv1 ...  -> head_incre{i}_conv1 ...
                                              downsamp_modules.{i}.{0,1}     -> head_down{i}_conv, _bn
                                              final_layer.{0,1}, classifier  -> head_final_conv, _bn, head_classifier
    seg  (HRNet-Semantic-Segmentation         last_layer.0, .1, .3           -> head_conv1, head_bn1, head_conv2
          lib/models/seg_hrnet.py, HRNetV2;
          also SuperScaleNet_Seg)
    pose (deep-high-resolution-net.pytorch    final_layer                    -> head_conv
          lib/models/pose_hrnet.py)

timm `hrnet_w18/w30/w32/w40/w44/w48/w64` are `configs/scalenas_cls.py:wN` with the arch `hrnet`;
`hrnet_w18_small_v2` is a space with `num_modules=(1, 3, 2)`, `layer1_blocks=2` and the arch
`hrnet(depth=2)`; `hrnet_w18_small` (layer1 planes 32 after a 64-wide stem) has no counterpart.
HRNetV2-W48 seg is `configs/scalenas_seg.py:w48` with `fusion_upsampling="bilinear"` (HRNetV2's
fusion, `ALIGN_CORNERS: False` as in the released Cityscapes configs; the config's default is the
ScaleNAS supernet's nearest, and the import then notes the difference) and pose HRNet-W32 is
`configs/scalenas_pose.py:w32`, both at the arch `hrnet`. HRNet-Semantic-Segmentation's training
saves its `FullModel` wrapper: names under `model.` (read as the backbone's) and the loss's class
weights under `loss.` (ignored); so does the ScaleNAS authors' supernet training. Their supernet
checkpoint fills the whole `configs/scalenas_seg.py:wN` supernet (W32, W48: `DEPTH_LIST` 2-5,
modules 1/4/3); a released mask (`ScaleNASSpace.load_official_mask`, e.g. ScaleNet-S1) then picks
the subnet their `set_active_subnet` would run.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from scalenas_tf.arch import ArchError
from scalenas_tf.families.scalenas.space import ScaleNASArch
from scalenas_tf.models.weight_import import WeightImport
from scalenas_tf.models.weight_import import WeightImportError
from scalenas_tf.models.weight_import import WeightMapper
from scalenas_tf.models.weight_import import leaf_layers

_BLOCK_LAYERS = ("1", "2")  # BasicBlock: conv1/bn1, conv2/bn2
_BOTTLENECK_LAYERS = ("1", "2", "3")
# HRNet-Semantic-Segmentation's FullModel(model, loss): what its training scripts save.
_FULL_MODEL_PREFIX = "model."
_FULL_MODEL_LOSS = "loss."
# A leaf layer each task's head holds, to tell which head a (possibly extracted) model has.
_HEAD_MARKERS = (("cls", "head_classifier"), ("seg", "head_conv1"), ("pose", "head_conv"))


def timm_hrnet(state_dict: Any, model, arch: ScaleNASArch) -> WeightImport:
    """Maps a timm `hrnet_w*` state dict onto a ScaleNAS `cls` supernet or extracted model of `arch`.

    Args:
        state_dict: `{name: array}` in PyTorch layouts, or a `torch_checkpoint.StateDict`.
        model: a `ScaleNASSupernet` (task `cls`; built here if it is not) or a model extracted from one.
        arch: the HRNet-like arch the checkpoint holds (e.g. `space.named("hrnet")`): in every module
            all branches have one depth `d` and every cross fusion bit is set at step `d - 1` only.

    Returns:
        A `WeightImport` for `weight_import.apply`. For a supernet, the blocks and edges outside
        `arch` are `unmapped_target`.

    Raises:
        ArchError: `arch` is outside the model's space or not HRNet-like (timm fuses once per module).
        WeightImportError: a shape mismatch (naming both names and shapes), or a model without a
            classification head.
    """
    tensors: Mapping[str, np.ndarray] = getattr(state_dict, "tensors", state_dict)
    _check_arch(model, arch, "timm_hrnet")
    mapper = WeightMapper(tensors, leaf_layers(model))
    if _head_task(mapper) != "cls":
        raise WeightImportError(
            "timm_hrnet imports classification models: the model has no 'head_classifier' layer "
            "(build it with task 'cls')"
        )
    _cls_head(mapper, map_backbone(mapper, arch))
    return mapper.result()


def hrnet_official(state_dict: Any, model, arch: ScaleNASArch) -> WeightImport:
    """Maps an official HRNet state dict onto a ScaleNAS supernet or extracted model of `arch`.

    The head follows the model's task: `seg` from HRNet-Semantic-Segmentation's `seg_hrnet`
    (HRNetV2, `last_layer`), `pose` from deep-high-resolution-net.pytorch's `pose_hrnet`
    (`final_layer`), `cls` from HRNet-Image-Classification (timm's names). A `FullModel` checkpoint
    of HRNet-Semantic-Segmentation (`model.` names, `loss.` buffers) is read as its model.

    Args:
        state_dict: `{name: array}` in PyTorch layouts, or a `torch_checkpoint.StateDict`.
        model: a `ScaleNASSupernet` (built here if it is not) or a model extracted from one.
        arch: the HRNet-like arch the checkpoint holds (`space.named("hrnet")`; for pose the space's
            `multi_scale_output=False` gives its last module a single output, as pose HRNet's).

    Returns:
        A `WeightImport` for `weight_import.apply`.

    Raises:
        ArchError: `arch` is outside the model's space or not HRNet-like.
        WeightImportError: a shape mismatch (naming both names and shapes; e.g. a seg checkpoint
            with `FINAL_CONV_KERNEL: 3`, whose 3x3 classifier the 1x1 head cannot hold).
    """
    tensors: Mapping[str, np.ndarray] = getattr(state_dict, "tensors", state_dict)
    _check_arch(model, arch, "hrnet_official")
    root, ignored = _full_model_root(tensors)
    mapper = WeightMapper(tensors, leaf_layers(model), ignored_prefixes=ignored)
    task = _head_task(mapper)
    branches = map_backbone(mapper, arch, root)
    if task == "cls":
        _cls_head(mapper, branches, root)
    elif task == "seg":
        _seg_head(mapper, root)
        space = getattr(model, "space", None)
        if space is not None and space.fusion_upsampling != "bilinear":
            note = (
                "HRNetV2 segmentation fuses branches with bilinear upsampling; this space fuses with "
                f"{space.fusion_upsampling!r}, so the imported model is not HRNetV2's function (fine as a "
                "ScaleNAS starting point; set search_space.fusion_upsampling='bilinear' for HRNetV2 itself)"
            )
            return dataclasses.replace(mapper.result(), notes=(note,))
    elif task == "pose":
        mapper.conv("head_conv", f"{root}final_layer")
    else:
        raise WeightImportError(
            "hrnet_official: the model has none of the head layers "
            f"{[name for _, name in _HEAD_MARKERS]} (is it a ScaleNAS model?)"
        )
    return mapper.result()


def scalenas_official(state_dict: Any, model, arch: ScaleNASArch) -> WeightImport:
    """Maps the ScaleNAS authors' segmentation supernet (`SuperScaleNet_Seg`) onto a ScaleNAS `seg` model.

    Their supernet holds every choice: `max(DEPTH_LIST)` BasicBlocks per branch
    (`stage{S}.{m}.branches.{i}.{s}`) and one fuse layer per block step (`fuse_layers_{s+1}`, every
    target and source), which become our blocks `s{S}m{m}_b{i}_k{s}` and edges `s{S}m{m}_f{j}s{s}k{k}`.
    A supernet receives all of them, whatever `arch` (one checkpoint then serves every subnet, as
    their `set_active_subnet(mask)` does); a model extracted at `arch` receives the arch's, and the
    checkpoint's other blocks and edges are reported as `ignored`. A saved `FullModel` (`model.`
    names, `loss.` buffers; what their training writes) is read as its model.

    Args:
        state_dict: `{name: array}` in PyTorch layouts, or a `torch_checkpoint.StateDict`.
        model: a `ScaleNASSupernet` of task `seg` (built here if it is not; its space's largest depth
            choice should be the checkpoint's `NUM_BLOCKS`) or a model extracted from one.
        arch: for a supernet, only checked against its space (e.g. `space.largest()` or an official
            mask's arch); for an extracted model, the arch it was extracted at.

    Returns:
        A `WeightImport` for `weight_import.apply`, with a note when the space's
        `fusion_upsampling` is not the supernet's nearest.

    Raises:
        ArchError: `arch` is outside the supernet's space.
        WeightImportError: a shape mismatch (naming both names and shapes), a model without the
            seg head, or an extracted model lacking a layer of `arch`.
    """
    tensors: Mapping[str, np.ndarray] = getattr(state_dict, "tensors", state_dict)
    space = getattr(model, "space", None)
    if space is not None:
        space.validate(arch)
    root, ignored = _full_model_root(tensors)
    steps = _fuse_steps(tensors, root)
    whole = space is not None
    if not whole:
        ignored += _outside_arch(arch, steps, root)
    mapper = WeightMapper(tensors, leaf_layers(model), ignored_prefixes=ignored)
    if _head_task(mapper) != "seg":
        raise WeightImportError(
            "scalenas_official imports the authors' segmentation supernet: the model has no 'head_conv1' "
            "layer (build it with task 'seg')"
        )

    def map_module(mapper, stage, index, module, root):
        # A supernet takes the space's steps (a checkpoint with fewer reports them `missing`, one with
        # more leaves `unmapped_source`); an extracted model the arch's, at least.
        if whole:
            _scalenas_module(mapper, stage, index, module, root, space.max_steps, None)
        else:
            n = max(steps.get((stage, index), 0), module.max_depth)
            _scalenas_module(mapper, stage, index, module, root, n, module)

    map_backbone(mapper, arch, root, map_module)
    _seg_head(mapper, root)
    if space is not None and space.fusion_upsampling != "nearest":
        note = (
            "The ScaleNAS segmentation supernet fuses branches with nearest upsampling; this space fuses "
            f"with {space.fusion_upsampling!r}, so the imported model is not the authors' function"
        )
        return dataclasses.replace(mapper.result(), notes=(note,))
    return mapper.result()


def map_backbone(mapper: WeightMapper, arch: ScaleNASArch, root: str = "", map_module=None) -> int:
    """Adds the stem, transitions and modules of `arch` (checkpoint names under `root`) to `mapper`;
    returns the number of branches of the last module.

    `map_module(mapper, stage, index, module, root)` maps one module (default: HRNet's, for an
    HRNet-like `arch`: one fuse layer after the last block)."""
    map_module = map_module or _module
    _stem(mapper, root)
    prev_branches = 1
    for stage, index, module in _stage_modules(arch):
        if index == 0:
            _transition(mapper, stage, prev_branches, module.num_branches, root)
            prev_branches = module.num_branches
        map_module(mapper, stage, index, module, root)
    return prev_branches


def _check_arch(model, arch: ScaleNASArch, source: str) -> None:
    space = getattr(model, "space", None)
    if space is not None:
        space.validate(arch)
    _check_hrnet_like(arch, source)


def _fused_targets(module) -> int:
    """How many leading targets fuse at the last step: all, or 1 (a single-output module)."""
    d, b = module.depths[0], module.num_branches
    single = all(module.fusion[j][d - 1] == tuple(int(k == j) for k in range(b)) for j in range(1, b))
    return 1 if single and b > 1 else b


def _check_hrnet_like(arch: ScaleNASArch, source: str) -> None:
    """Equal depths per module, fusion only after the last block (into every branch, or into branch
    0 alone in the last module, as pose HRNet's `multi_scale_output=False`)."""
    for m, module in enumerate(arch.modules):
        d = module.depths[0]
        b = module.num_branches
        if any(x != d for x in module.depths):
            raise ArchError(
                f"{source}: module {m} has branch depths {list(module.depths)}; HRNet modules give every "
                "branch the same depth"
            )
        fused = _fused_targets(module) if m == len(arch.modules) - 1 else b
        for j, steps in enumerate(module.fusion):
            for s, bits in enumerate(steps):
                expected = tuple(int((s == d - 1 and j < fused) or (k == j and s < d)) for k in range(b))
                if tuple(bits) != expected:
                    raise ArchError(
                        f"{source}: module {m}, target branch {j}, step {s}: fusion bits {list(bits)}; HRNet "
                        f"fuses every branch once, after the last block (expected {list(expected)})"
                    )


def _head_task(mapper: WeightMapper) -> str | None:
    return next((task for task, layer in _HEAD_MARKERS if mapper.has_layer(layer)), None)


def _stem(mapper: WeightMapper, root: str) -> None:
    for n in ("1", "2"):
        mapper.conv(f"stem_conv{n}", f"{root}conv{n}")
        mapper.batch_norm(f"stem_bn{n}", f"{root}bn{n}")
    n = 0
    while mapper.has_layer(f"stem_layer1_b{n}_conv1"):
        _bottleneck(mapper, f"stem_layer1_b{n}", f"{root}layer1.{n}")
        n += 1


def _bottleneck(mapper: WeightMapper, ours: str, theirs: str) -> None:
    for i in _BOTTLENECK_LAYERS:
        mapper.conv(f"{ours}_conv{i}", f"{theirs}.conv{i}")
        mapper.batch_norm(f"{ours}_bn{i}", f"{theirs}.bn{i}")
    if mapper.has_layer(f"{ours}_down_conv"):
        mapper.conv(f"{ours}_down_conv", f"{theirs}.downsample.0")
        mapper.batch_norm(f"{ours}_down_bn", f"{theirs}.downsample.1")


def _transition(mapper: WeightMapper, stage: int, n_in: int, n_out: int, root: str) -> None:
    ours, theirs = f"trans{stage}", f"{root}transition{stage - 1}"
    for i in range(n_out):
        if i < n_in:
            if mapper.has_layer(f"{ours}_b{i}_conv0"):  # the width changes (else an identity, no weights)
                mapper.conv(f"{ours}_b{i}_conv0", f"{theirs}.{i}.0")
                mapper.batch_norm(f"{ours}_b{i}_bn0", f"{theirs}.{i}.1")
            continue
        for c in range(i + 1 - n_in):
            mapper.conv(f"{ours}_b{i}_conv{c}", f"{theirs}.{i}.{c}.0")
            mapper.batch_norm(f"{ours}_b{i}_bn{c}", f"{theirs}.{i}.{c}.1")


def _module(mapper: WeightMapper, stage: int, index: int, module, root: str) -> None:
    ours, theirs = f"s{stage}m{index}", f"{root}stage{stage}.{index}"
    b, d = module.num_branches, module.depths[0]
    for i in range(b):
        for s in range(d):
            _basic_block(mapper, f"{ours}_b{i}_k{s}", f"{theirs}.branches.{i}.{s}")
    s = d - 1
    for j in range(b):
        for k in range(b):
            if k == j or not module.fusion[j][s][k]:  # a single-output module has fuse_layers.0 only
                continue
            _fusion_edge(mapper, f"{ours}_f{j}s{s}k{k}", f"{theirs}.fuse_layers.{j}.{k}", j, k)


def _scalenas_module(mapper: WeightMapper, stage: int, index: int, module, root: str, steps: int, chosen) -> None:
    """Blocks and per-step fuse layers of a `ScaleResolutionModule`: all `steps`, or with `chosen`
    (a `ModuleArch`) those it runs."""
    ours, theirs = f"s{stage}m{index}", f"{root}stage{stage}.{index}"
    b = module.num_branches
    for i in range(b):
        for s in range(steps):
            if chosen is None or s < chosen.depths[i]:
                _basic_block(mapper, f"{ours}_b{i}_k{s}", f"{theirs}.branches.{i}.{s}")
    for j in range(b):
        for s in range(steps):
            for k in range(b):
                if k != j and (chosen is None or (s < len(chosen.fusion[j]) and chosen.fusion[j][s][k])):
                    _fusion_edge(mapper, f"{ours}_f{j}s{s}k{k}", f"{theirs}.fuse_layers_{s + 1}.{j}.{k}", j, k)


def _fuse_steps(tensors: Mapping[str, np.ndarray], root: str) -> dict[tuple[int, int], int]:
    """`{(stage, module): number of fuse_layers_N}` found in a ScaleNAS supernet checkpoint."""
    pattern = re.compile(rf"^{re.escape(root)}stage(\d+)\.(\d+)\.fuse_layers_(\d+)\.")
    steps: dict[tuple[int, int], int] = {}
    for name in tensors:
        match = pattern.match(name)
        if match:
            key = (int(match[1]), int(match[2]))
            steps[key] = max(steps.get(key, 0), int(match[3]))
    return steps


def _outside_arch(arch: ScaleNASArch, steps: dict[tuple[int, int], int], root: str) -> tuple[str, ...]:
    """Checkpoint prefixes of the supernet's blocks and fuse-layer entries `arch` does not run."""
    prefixes = []
    for stage, index, module in _stage_modules(arch):
        theirs, b = f"{root}stage{stage}.{index}", module.num_branches
        for s in range(steps.get((stage, index), 0)):
            prefixes += [f"{theirs}.branches.{i}.{s}." for i in range(b) if s >= module.depths[i]]
            prefixes += [
                f"{theirs}.fuse_layers_{s + 1}.{j}.{k}."
                for j in range(b)
                for k in range(b)
                if k != j and not (s < len(module.fusion[j]) and module.fusion[j][s][k])
            ]
    return tuple(prefixes)


def _stage_modules(arch: ScaleNASArch):
    """`(stage, index in stage, module)` for each module of `arch` (stages 2, 3, 4 hold 2, 3, 4 branches)."""
    stage_modules: dict[int, int] = {}
    for module in arch.modules:
        stage = module.num_branches
        index = stage_modules.get(stage, 0)
        stage_modules[stage] = index + 1
        yield stage, index, module


def _basic_block(mapper: WeightMapper, ours: str, theirs: str) -> None:
    for n in _BLOCK_LAYERS:
        mapper.conv(f"{ours}_conv{n}", f"{theirs}.conv{n}")
        mapper.batch_norm(f"{ours}_bn{n}", f"{theirs}.bn{n}")


def _fusion_edge(mapper: WeightMapper, edge: str, fuse: str, j: int, k: int) -> None:
    """`fuse_layers[j][k]`: source branch k into target j."""
    if k > j:  # 1x1 conv + BN, then upsampling
        mapper.conv(f"{edge}_conv0", f"{fuse}.0")
        mapper.batch_norm(f"{edge}_bn0", f"{fuse}.1")
    for c in range(j - k):  # k < j: a chain of 3x3 stride-2 convs
        mapper.conv(f"{edge}_conv{c}", f"{fuse}.{c}.0")
        mapper.batch_norm(f"{edge}_bn{c}", f"{fuse}.{c}.1")


def _seg_head(mapper: WeightMapper, root: str) -> None:
    """HRNetV2's `last_layer` (1x1 conv with bias, BN, ReLU, 1x1 conv with bias)."""
    mapper.conv("head_conv1", f"{root}last_layer.0")
    mapper.batch_norm("head_bn1", f"{root}last_layer.1")
    mapper.conv("head_conv2", f"{root}last_layer.3")


def _full_model_root(tensors: Mapping[str, np.ndarray]) -> tuple[str, tuple[str, ...]]:
    """`(root, ignored prefixes)`: `model.` and `loss.` for a saved `FullModel(model, loss)`."""
    if f"{_FULL_MODEL_PREFIX}conv1.weight" in tensors and "conv1.weight" not in tensors:
        return _FULL_MODEL_PREFIX, (_FULL_MODEL_LOSS,)
    return "", ()


def _cls_head(mapper: WeightMapper, num_branches: int, root: str = "") -> None:
    for i in range(num_branches):
        _bottleneck(mapper, f"head_incre{i}", f"{root}incre_modules.{i}.0")
    for i in range(num_branches - 1):
        mapper.conv(f"head_down{i}_conv", f"{root}downsamp_modules.{i}.0")
        mapper.batch_norm(f"head_down{i}_bn", f"{root}downsamp_modules.{i}.1")
    mapper.conv("head_final_conv", f"{root}final_layer.0")
    mapper.batch_norm("head_final_bn", f"{root}final_layer.1")
    mapper.dense("head_classifier", f"{root}classifier")
