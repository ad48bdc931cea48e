"""PyTorch HRNet checkpoints -> ScaleNAS layers: timm's `hrnet_w*` classification models (`timm_hrnet`).

timm's `HighResolutionNet` (HRNet-Image-Classification) is the ScaleNAS `cls` network of an HRNet-like
arch: every branch of a module has the same depth and all branches fuse once, after the last block
(`ScaleNASSpace.hrnet(depth)`). `hrnet_w18/w30/w32/w40/w44/w48/w64` are `configs/scalenas_cls.py:wN`
with the arch `hrnet`; `hrnet_w18_small_v2` is a space with `num_modules=(1, 3, 2)`, `layer1_blocks=2`
and the arch `hrnet(depth=2)`. `hrnet_w18_small` (layer1 planes 32 after a 64-wide stem) has no
counterpart. Names, in timm (left) and here (right; extraction keeps them):

    conv1, bn1, conv2, bn2                    stem_conv1, stem_bn1, stem_conv2, stem_bn2
    layer1.{n}.conv1 ... downsample.{0,1}     stem_layer1_b{n}_conv1 ... _down_conv, _down_bn
    transition{t}.{i}.{0,1}                   trans{t+1}_b{i}_conv0, _bn0        (existing branch)
    transition{t}.{i}.{c}.{0,1}               trans{t+1}_b{i}_conv{c}, _bn{c}    (new branch)
    stage{S}.{m}.branches.{i}.{s}.conv1 ...   s{S}m{m}_b{i}_k{s}_conv1 ...
    stage{S}.{m}.fuse_layers.{j}.{k}.{0,1}    s{S}m{m}_f{j}s{d-1}k{k}_conv0, _bn0      (k > j)
    stage{S}.{m}.fuse_layers.{j}.{k}.{c}.{0,1} s{S}m{m}_f{j}s{d-1}k{k}_conv{c}, _bn{c} (k < j)
    incre_modules.{i}.0.conv1 ...             head_incre{i}_conv1 ...
    downsamp_modules.{i}.{0,1}                head_down{i}_conv, head_down{i}_bn
    final_layer.{0,1}, classifier             head_final_conv, head_final_bn, head_classifier
"""

from __future__ import annotations

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
    space = getattr(model, "space", None)
    if space is not None:
        space.validate(arch)
    _check_hrnet_like(arch)
    leaves = leaf_layers(model)
    mapper = WeightMapper(tensors, leaves)
    if not mapper.has_layer("head_classifier"):
        raise WeightImportError(
            "timm_hrnet imports classification models: the model has no 'head_classifier' layer "
            "(build it with task 'cls')"
        )
    _stem(mapper)
    stage_modules: dict[int, int] = {}
    prev_branches = 1
    for module in arch.modules:
        stage = module.num_branches  # stages 2, 3, 4 hold 2, 3, 4 branches
        index = stage_modules.get(stage, 0)
        stage_modules[stage] = index + 1
        if index == 0:
            _transition(mapper, stage, prev_branches, module.num_branches)
            prev_branches = module.num_branches
        _module(mapper, stage, index, module)
    _head(mapper, prev_branches)
    return mapper.result()


def _check_hrnet_like(arch: ScaleNASArch) -> None:
    for m, module in enumerate(arch.modules):
        d = module.depths[0]
        b = module.num_branches
        if any(x != d for x in module.depths):
            raise ArchError(
                f"timm_hrnet: module {m} has branch depths {list(module.depths)}; timm's HRNet modules give "
                "every branch the same depth"
            )
        for j, steps in enumerate(module.fusion):
            for s, bits in enumerate(steps):
                expected = tuple(int(s == d - 1 or (k == j and s < d)) for k in range(b))
                if tuple(bits) != expected:
                    raise ArchError(
                        f"timm_hrnet: module {m}, target branch {j}, step {s}: fusion bits {list(bits)}; timm's "
                        f"HRNet fuses every branch once, after the last block (expected {list(expected)})"
                    )


def _stem(mapper: WeightMapper) -> None:
    for n in ("1", "2"):
        mapper.conv(f"stem_conv{n}", f"conv{n}")
        mapper.batch_norm(f"stem_bn{n}", f"bn{n}")
    n = 0
    while mapper.has_layer(f"stem_layer1_b{n}_conv1"):
        _bottleneck(mapper, f"stem_layer1_b{n}", f"layer1.{n}")
        n += 1


def _bottleneck(mapper: WeightMapper, ours: str, theirs: str) -> None:
    for i in _BOTTLENECK_LAYERS:
        mapper.conv(f"{ours}_conv{i}", f"{theirs}.conv{i}")
        mapper.batch_norm(f"{ours}_bn{i}", f"{theirs}.bn{i}")
    if mapper.has_layer(f"{ours}_down_conv"):
        mapper.conv(f"{ours}_down_conv", f"{theirs}.downsample.0")
        mapper.batch_norm(f"{ours}_down_bn", f"{theirs}.downsample.1")


def _transition(mapper: WeightMapper, stage: int, n_in: int, n_out: int) -> None:
    ours, theirs = f"trans{stage}", f"transition{stage - 1}"
    for i in range(n_out):
        if i < n_in:
            if mapper.has_layer(f"{ours}_b{i}_conv0"):  # the width changes (else an identity, no weights)
                mapper.conv(f"{ours}_b{i}_conv0", f"{theirs}.{i}.0")
                mapper.batch_norm(f"{ours}_b{i}_bn0", f"{theirs}.{i}.1")
            continue
        for c in range(i + 1 - n_in):
            mapper.conv(f"{ours}_b{i}_conv{c}", f"{theirs}.{i}.{c}.0")
            mapper.batch_norm(f"{ours}_b{i}_bn{c}", f"{theirs}.{i}.{c}.1")


def _module(mapper: WeightMapper, stage: int, index: int, module) -> None:
    ours, theirs = f"s{stage}m{index}", f"stage{stage}.{index}"
    b, d = module.num_branches, module.depths[0]
    for i in range(b):
        for s in range(d):
            for n in _BLOCK_LAYERS:
                mapper.conv(f"{ours}_b{i}_k{s}_conv{n}", f"{theirs}.branches.{i}.{s}.conv{n}")
                mapper.batch_norm(f"{ours}_b{i}_k{s}_bn{n}", f"{theirs}.branches.{i}.{s}.bn{n}")
    s = d - 1
    for j in range(b):
        for k in range(b):
            edge, fuse = f"{ours}_f{j}s{s}k{k}", f"{theirs}.fuse_layers.{j}.{k}"
            if k > j:  # 1x1 conv + BN, then upsampling
                mapper.conv(f"{edge}_conv0", f"{fuse}.0")
                mapper.batch_norm(f"{edge}_bn0", f"{fuse}.1")
            for c in range(j - k):  # k < j: a chain of 3x3 stride-2 convs
                mapper.conv(f"{edge}_conv{c}", f"{fuse}.{c}.0")
                mapper.batch_norm(f"{edge}_bn{c}", f"{fuse}.{c}.1")


def _head(mapper: WeightMapper, num_branches: int) -> None:
    for i in range(num_branches):
        _bottleneck(mapper, f"head_incre{i}", f"incre_modules.{i}.0")
    for i in range(num_branches - 1):
        mapper.conv(f"head_down{i}_conv", f"downsamp_modules.{i}.0")
        mapper.batch_norm(f"head_down{i}_bn", f"downsamp_modules.{i}.1")
    mapper.conv("head_final_conv", "final_layer.0")
    mapper.batch_norm("head_final_bn", "final_layer.1")
    mapper.dense("head_classifier", "classifier")
