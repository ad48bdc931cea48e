"""Tests for scalenas_tf.families.scarlet.cost.count against shared/reference/figures.md, and the
SCARLET path of runners/cost.py and bin/cost.py (no TensorFlow here)."""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import pytest

from configs import scalenas_pose
from configs import scarlet
from scalenas_tf.arch import ArchError
from scalenas_tf.families.scarlet.cost import ScarletCost
from scalenas_tf.families.scarlet.cost import count
from scalenas_tf.families.scarlet.space import PRESETS
from scalenas_tf.families.scarlet.space import ScarletArch
from scalenas_tf.families.scarlet.space import ScarletSpace
from scalenas_tf.families.scarlet.space import fold_plan
from scalenas_tf.runners import cost as cost_runner

REPO = pathlib.Path(__file__).resolve().parents[3]
FIGURES = REPO / ".." / "shared" / "reference" / "figures.md"

# === Reference figures (figures.md, "SCARLET / mobile space"), 224x224, 1000 classes ===

# (named arch, params M, MAdds M), 3 decimals as printed
FIGURE_ROWS = [
    ("all_K7E6", "5.090", "557.406"),
    ("scarlet_a", "6.708", "365.307"),
    ("scarlet_b", "6.532", "326.853"),
    ("scarlet_c", "6.074", "280.083"),
]
# Exact values this counter gives for the rows above (golden; params, MACs).
EXACT = {
    "all_K7E6": (5_090_024, 557_405_696),
    "scarlet_a": (6_707_720, 365_307_392),
    "scarlet_b": (6_531_556, 326_853_440),
    "scarlet_c": (6_073_684, 280_082_912),
}


def test_hard_coded_rows_match_figures_md():
    """The rows above are copied from figures.md; catch a typo or a changed reference."""
    if not FIGURES.is_file():
        pytest.skip(f"shared reference {FIGURES} is absent (expected the shared folder at <repo>/../shared)")
    rows = [line for line in FIGURES.read_text().splitlines() if line.startswith("| ")]
    labels = {
        "all_K7E6": "| all K7E6",
        "scarlet_a": "| SCARLET-A",
        "scarlet_b": "| SCARLET-B",
        "scarlet_c": "| SCARLET-C",
    }
    for name, params, madds in FIGURE_ROWS:
        (row,) = [r for r in rows if r.startswith(labels[name])]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == params
        assert cells[3].split()[0] == madds
        if name in PRESETS:
            assert [c.strip() for c in cells[1].split(",")] == list(PRESETS[name])


@pytest.mark.parametrize("name, params, madds", FIGURE_ROWS)
def test_figures(name, params, madds):
    space = ScarletSpace()
    cost = count(space, space.named(name), num_classes=1000, input_size=(224, 224))
    assert f"{round(cost.params / 1e6, 3):.3f}" == params
    assert f"{round(cost.macs / 1e6, 3):.3f}" == madds
    assert f"{cost.madds_m:.3f}" == madds
    assert (cost.params, cost.macs) == EXACT[name]


def test_defaults_are_imagenet():
    space = ScarletSpace()
    arch = space.named("scarlet_a")
    assert count(space, arch) == count(space, arch, num_classes=1000, input_size=(224, 224))


def test_s1_space_counts_no_se_archs_the_same():
    s1, s2 = ScarletSpace(variant="s1"), ScarletSpace()
    assert count(s1, s1.named("all_K7E6")) == count(s2, s2.named("all_K7E6"))


# === Hand-counted tiny networks ===

# Two layers 4 -> 8 (stride 2) -> 8 (stride 1); stem 4, first 4, head 16; 8x8 input, 3 classes.
TINY = dict(channels=(8, 8), strides=(2, 1), stem_channels=4, first_channels=4, head_channels=16)


def _bn(c):
    return 2 * c  # gamma + beta


def test_tiny_network_by_hand():
    space = ScarletSpace(**TINY)
    cost = count(space, ScarletArch(("K3E3", "K5E6+SE")), num_classes=3, input_size=(8, 8))
    # Feature maps: stem 8x8 -> 4x4 (16 px); layer 0 (stride 2) -> 2x2 (4 px); layer 1 -> 2x2; head 2x2.
    stem = (3 * 3 * 3 * 4 + _bn(4), 16 * 4 * 27)
    depthwise = (4 * 9 + _bn(4), 16 * 4 * 9)
    pointwise = (4 * 4 + _bn(4), 16 * 4 * 4)
    # Layer 0, K3E3 from 4: hidden 12; expand at 4x4, depthwise and project at 2x2.
    l0_expand = (4 * 12 + _bn(12), 16 * 4 * 12)
    l0_dw = (12 * 3 * 3 + _bn(12), 4 * 12 * 9)
    l0_project = (12 * 8 + _bn(8), 4 * 12 * 8)
    # Layer 1, K5E6+SE from 8: hidden 48, SE squeezes to 12 with biases, at 1x1.
    l1_expand = (8 * 48 + _bn(48), 4 * 8 * 48)
    l1_dw = (48 * 25 + _bn(48), 4 * 48 * 25)
    l1_se = (48 * 12 + 12 + 12 * 48 + 48, 48 * 12 + 12 * 48)
    l1_project = (48 * 8 + _bn(8), 4 * 48 * 8)
    head_conv = (8 * 16 + _bn(16), 4 * 8 * 16)
    classifier = (16 * 3 + 3, 16 * 3)
    parts = [
        stem,
        depthwise,
        pointwise,
        l0_expand,
        l0_dw,
        l0_project,
        l1_expand,
        l1_dw,
        l1_se,
        l1_project,
        head_conv,
        classifier,
    ]
    assert cost.params == sum(p for p, _ in parts)
    assert cost.params == 116 + 44 + 24 + 72 + 132 + 112 + 480 + 1296 + 1212 + 400 + 160 + 51
    assert cost.macs == sum(m for _, m in parts)
    assert cost.macs == 1728 + 576 + 256 + 768 + 432 + 384 + 1536 + 4800 + 1152 + 1536 + 512 + 48
    assert cost.bn_channels == 4 + 4 + 4 + 12 + 12 + 8 + 48 + 48 + 8 + 16
    assert cost.params_with_bn_statistics == cost.params + 2 * cost.bn_channels
    names = [name for name, _, _ in cost.layers]
    assert names == ["stem", "separable", "layer00", "layer01", "head"]
    assert sum(p for _, p, _ in cost.layers) == cost.params
    assert sum(m for _, _, m in cost.layers) == cost.macs
    assert cost.layers[3] == ("layer01", 480 + 1296 + 1212 + 400, 1536 + 4800 + 1152 + 1536)


def test_tiny_identity_is_free():
    space = ScarletSpace(**TINY)
    block = count(space, ScarletArch(("K3E3", "K5E6+SE")), 3, (8, 8))
    identity = count(space, ScarletArch(("K3E3", "id")), 3, (8, 8))
    assert block.params - identity.params == 480 + 1296 + 1212 + 400
    assert block.macs - identity.macs == 1536 + 4800 + 1152 + 1536
    assert identity.layers[3] == ("layer01", 0, 0)


def test_se_squeeze_is_at_least_one_channel():
    # Expansion 2 from 1 channel: hidden 2, hidden // 4 == 0 -> the SE squeezes to 1 channel.
    space = ScarletSpace(
        channels=(1,),
        strides=(1,),
        stem_channels=1,
        first_channels=1,
        head_channels=1,
        kernel_sizes=(3,),
        expand_ratios=(2,),
    )
    plain = count(space, ScarletArch(("K3E2",)), 1, (2, 2))
    se = count(space, ScarletArch(("K3E2+SE",)), 1, (2, 2))
    assert se.params - plain.params == (2 * 1 + 1) + (1 * 2 + 2)
    assert se.macs - plain.macs == 2 * 1 + 1 * 2


def test_odd_input_sizes_round_up():
    space = ScarletSpace()
    arch = space.named("scarlet_c")
    a = count(space, arch, input_size=(224, 224))
    b = count(space, arch, input_size=(223, 223))  # ceil at every stride 2: 112, 56, 28, 14, 7
    c = count(space, arch, input_size=(225, 224))  # 113 x 112 after the stem
    assert (b.params, b.macs, b.input_size) == (a.params, a.macs, (223, 223))
    assert c.params == a.params and c.macs > a.macs


def test_num_classes_only_changes_the_classifier():
    space = ScarletSpace()
    arch = space.named("scarlet_a")
    a, b = count(space, arch, num_classes=1000), count(space, arch, num_classes=1001)
    assert b.params - a.params == 1280 + 1
    assert b.macs - a.macs == 1280
    assert b.bn_channels == a.bn_channels


def test_cost_grows_with_the_choice():
    """Every larger kernel, expansion or SE at any single layer costs more params and MACs."""
    space = ScarletSpace()
    base = ["K3E3"] * space.num_layers
    reference = count(space, ScarletArch(tuple(base)))
    for i in range(space.num_layers):
        for name in ("K5E3", "K3E6", "K3E3+SE"):
            arch = list(base)
            arch[i] = name
            cost = count(space, ScarletArch(tuple(arch)))
            assert cost.params > reference.params
            assert cost.macs > reference.macs


# === Extraction (as_extracted) ===


def test_as_extracted_equals_papers_count_when_every_fold_is_exact():
    space = ScarletSpace()
    for name in ("all_K7E6", "scarlet_a", "scarlet_c", "largest", "smallest"):
        arch = space.named(name)
        assert all(fold.action != "kept" for fold in fold_plan(space, arch)), name
        papers, extracted = count(space, arch), count(space, arch, as_extracted=True)
        assert extracted.params == papers.params
        assert extracted.macs == papers.macs
        assert extracted.bn_channels == papers.bn_channels
        assert not papers.as_extracted and extracted.as_extracted


def test_scarlet_c_identities_fold_backward():
    space = ScarletSpace()
    plan = fold_plan(space, space.named("scarlet_c"))
    assert [(f.layers, f.action, f.target) for f in plan] == [((3, 4), "backward", 2), ((15,), "backward", 14)]


def test_kept_els_adds_c_by_c_conv():
    """SCARLET-B's identities (layers 8 and 16) sit between residual blocks: extraction keeps a
    1x1 C x C conv for each, C x C params and C x C x H x W MACs (figures.md)."""
    space = ScarletSpace()
    arch = space.named("scarlet_b")
    plan = fold_plan(space, arch)
    assert [(f.layers, f.action) for f in plan] == [((8,), "kept"), ((16,), "kept")]
    papers, extracted = count(space, arch), count(space, arch, as_extracted=True)
    sizes = space.feature_sizes((224, 224))
    assert (space.channels[8], sizes[9]) == (80, (14, 14))
    assert (space.channels[16], sizes[17]) == (192, (7, 7))
    assert extracted.params - papers.params == 80 * 80 + 192 * 192
    assert extracted.macs - papers.macs == 80 * 80 * 14 * 14 + 192 * 192 * 7 * 7
    assert extracted.bn_channels == papers.bn_channels  # the ELS conv has no BN
    assert dict((n, (p, m)) for n, p, m in extracted.layers)["layer08"] == (80 * 80, 80 * 80 * 14 * 14)
    assert f"{extracted.madds_m:.3f}" == "329.914"


def test_skip_identity_is_free_even_as_extracted():
    space = ScarletSpace(identity_op="skip")
    arch = space.named("scarlet_b")
    assert fold_plan(space, arch) == []
    assert count(space, arch, as_extracted=True).params == count(space, arch).params == EXACT["scarlet_b"][0]


# Identity everywhere (the LET rule): layers 4 -> 8 -> 12 -> 12, stride 1, at 4x4 after the stem.
WIDE = dict(
    channels=(8, 12, 12),
    strides=(1, 1, 1),
    stem_channels=4,
    first_channels=4,
    head_channels=16,
    identity_everywhere=True,
)
WIDE_PX = 4 * 4  # every layer keeps the stem's 4x4 output (8x8 input)


def test_width_changing_identity_counts_its_conv():
    space = ScarletSpace(**WIDE)
    block = count(space, ScarletArch(("K3E3", "K3E3", "K3E3")), 3, (8, 8))
    identity = count(space, ScarletArch(("K3E3", "id", "K3E3")), 3, (8, 8))
    # Layer 1 as K3E3 from 8 to 12: hidden 24; as identity: a bias-free 1x1 conv 8 -> 12.
    l1_block = (8 * 24 + _bn(24)) + (24 * 9 + _bn(24)) + (24 * 12 + _bn(12))
    l1_block_macs = WIDE_PX * (8 * 24 + 24 * 9 + 24 * 12)
    assert block.params - identity.params == l1_block - 8 * 12
    assert block.macs - identity.macs == l1_block_macs - WIDE_PX * 8 * 12


def test_width_changing_identity_folded_forward():
    """Identity 4 -> 8 at layer 0 before a non-residual block (8 -> 12): its expand conv reads 4 channels."""
    space = ScarletSpace(**WIDE)
    arch = ScarletArch(("id", "K3E3", "K3E3"))
    (fold,) = fold_plan(space, arch)
    assert (fold.action, fold.target, fold.in_channels, fold.out_channels) == ("forward", 1, 4, 8)
    papers, extracted = count(space, arch, 3, (8, 8)), count(space, arch, 3, (8, 8), as_extracted=True)
    hidden = 8 * 3  # the block keeps its width; only the expand conv's input shrinks from 8 to 4
    assert papers.params - extracted.params == 4 * 8 + (8 - 4) * hidden
    assert papers.macs - extracted.macs == WIDE_PX * (4 * 8 + (8 - 4) * hidden)


def test_width_changing_identity_folded_backward():
    """Identity 8 -> 12 at layer 1 before a residual block: layer 0's projection writes 12 channels."""
    space = ScarletSpace(**WIDE)
    arch = ScarletArch(("K3E3", "id", "K3E3"))
    (fold,) = fold_plan(space, arch)
    assert (fold.action, fold.target, fold.in_channels, fold.out_channels) == ("backward", 0, 8, 12)
    papers, extracted = count(space, arch, 3, (8, 8)), count(space, arch, 3, (8, 8), as_extracted=True)
    hidden = 4 * 3
    # Extracted: the projection gains 4 output channels (kernel and BN); the ELS conv 8 -> 12 is gone.
    assert extracted.params - papers.params == 4 * hidden + _bn(4) - 8 * 12
    assert extracted.macs - papers.macs == WIDE_PX * (4 * hidden - 8 * 12)
    assert extracted.bn_channels - papers.bn_channels == 4


def test_identity_folded_forward_into_block_and_head():
    space = ScarletSpace(**WIDE)
    arch = ScarletArch(("id", "K3E3", "id"))  # layer 1 8 -> 12 no residual: layer 0 folds forward
    plan = fold_plan(space, arch)
    assert [(f.action, f.target) for f in plan] == [("forward", 1), ("forward", "head")]
    extracted = count(space, arch, 3, (8, 8), as_extracted=True)
    expected = count(space, ScarletArch(("K3E3", "K3E3", "K3E3")), 3, (8, 8))
    # Against the all-block net: no layer-0 and layer-2 blocks, layer 1's expand reads 4, the head reads 12 (same).
    layer0 = (4 * 12 + _bn(12)) + (12 * 9 + _bn(12)) + (12 * 8 + _bn(8))
    layer2 = (12 * 36 + _bn(36)) + (36 * 9 + _bn(36)) + (36 * 12 + _bn(12))
    assert expected.params - extracted.params == layer0 + layer2 + (8 - 4) * 24
    assert dict((n, p) for n, p, _ in extracted.layers)["head"] == 12 * 16 + _bn(16) + 16 * 3 + 3


def test_identity_folded_backward_into_the_stem():
    space = ScarletSpace(**dict(WIDE, channels=(6, 6, 6)))  # layer 0 id 4 -> 6, then residual blocks
    arch = ScarletArch(("id", "K3E3", "K3E3"))
    (fold,) = fold_plan(space, arch)
    assert (fold.action, fold.target) == ("backward", "stem")
    papers, extracted = count(space, arch, 3, (8, 8)), count(space, arch, 3, (8, 8), as_extracted=True)
    # The separable conv's pointwise 4 -> 4 becomes 4 -> 6 (+ BN); the ELS conv 4 -> 6 is gone.
    assert extracted.params - papers.params == 4 * 2 + _bn(2) - 4 * 6
    assert extracted.macs - papers.macs == WIDE_PX * (4 * 2 - 4 * 6)


def test_strided_identity_kept_after_pooling():
    space = ScarletSpace(**dict(WIDE, channels=(8, 8, 8), strides=(2, 1, 1)))
    arch = ScarletArch(("id", "K3E3", "K3E3"))  # 4 -> 8 with stride 2; layer 1 is residual
    (fold,) = fold_plan(space, arch)
    assert (fold.action, fold.pool) == ("kept", True)
    papers, extracted = count(space, arch, 3, (8, 8)), count(space, arch, 3, (8, 8), as_extracted=True)
    assert papers == dataclasses.replace(extracted, as_extracted=False)  # the same conv, at 2x2
    assert dict((n, (p, m)) for n, p, m in papers.layers)["layer00"] == (4 * 8, 2 * 2 * 4 * 8)


# === ScarletCost ===


def test_cost_properties_and_to_dict():
    space = ScarletSpace()
    cost = count(space, space.named("scarlet_a"))
    assert isinstance(cost, ScarletCost)
    assert cost.madds_m == cost.macs / 1e6
    assert cost.gmacs == cost.macs / 1e9
    assert cost.gflops_hrnet == cost.macs / 2**30
    assert cost.params_with_bn_statistics == cost.params + 2 * cost.bn_channels
    d = cost.to_dict()
    assert d["params"] == cost.params and d["macs"] == cost.macs
    assert d["madds_m"] == pytest.approx(cost.madds_m, abs=1e-6)
    assert d["gflops_hrnet"] == pytest.approx(cost.gflops_hrnet, abs=1e-6)
    assert d["gmacs"] == pytest.approx(cost.gmacs, abs=1e-6)
    assert d["params_with_bn_statistics"] == cost.params_with_bn_statistics
    assert d["bn_channels"] == cost.bn_channels
    assert d["input_size"] == [224, 224]
    assert d["as_extracted"] is False
    assert json.loads(json.dumps(d)) == d
    with pytest.raises(AttributeError):
        cost.params = 0  # frozen


# === Bad inputs ===


@pytest.mark.parametrize(
    "arch, match",
    [
        (ScarletArch(("K7E6",) * 18), "19 choices"),
        (ScarletArch(("K9E6",) * 19), r"choices\[0\]='K9E6'"),
        (ScarletArch(("K7E6", "K7E6", "id") + ("K7E6",) * 16), r"choices\[2\]='id': identity is offered only"),
        (ScarletArch(("k7e6",) * 19), "K<kernel>E<expand>"),
        (("K7E6",) * 19, "Expected a ScarletArch"),
    ],
)
def test_invalid_arch_raises_arch_error(arch, match):
    space = ScarletSpace()
    with pytest.raises(ArchError, match=match):
        count(space, arch)


def test_s1_space_rejects_se():
    space = ScarletSpace(variant="s1")
    with pytest.raises(ArchError, match="not a choice of this s1 space"):
        count(space, ScarletArch(PRESETS["scarlet_a"]))


def test_unvalidated_arch_must_still_be_countable():
    space = ScarletSpace()
    outside = ScarletArch(("K9E8",) * 19)  # not in the space, but well-formed
    inside = count(space, space.named("all_K7E6"))
    assert count(space, outside, validate=False).params > inside.params
    with pytest.raises(ArchError, match="19 choices"):
        count(space, ScarletArch(("K3E3",)), validate=False)
    with pytest.raises(ArchError, match=r"choices\[0\]"):
        count(space, ScarletArch(("conv",) * 19), validate=False)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 2.0}, "num_classes"),
        ({"num_classes": True}, "num_classes"),
        ({"input_size": (0, 224)}, "input_size"),
        ({"input_size": (224,)}, "input_size"),
        ({"input_size": (224.0, 224)}, "input_size"),
        ({"input_size": "224x224"}, "input_size"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, name):
    space = ScarletSpace()
    with pytest.raises(ValueError, match=f"`{name}`") as info:
        count(space, space.largest(), **kwargs)
    assert f"{name}=" in str(info.value)
    assert not isinstance(info.value, ArchError)


# === runners/cost.py and bin/cost.py ===


def _config(variant="s2"):
    return scarlet.get_config(variant)


@pytest.mark.parametrize("name, params, madds", FIGURE_ROWS)
def test_runner_named_archs(name, params, madds):
    summary = cost_runner.run(_config(), arch=name, input_size="224x224")
    assert (summary["params"], summary["macs"]) == EXACT[name]
    assert f"{summary['madds_m']:.3f}" == madds
    assert summary["space"] == "scarlet" and summary["task"] == "cls" and summary["arch"] == name
    assert summary["as_extracted"] is False
    assert isinstance(summary["fold_plan"], list)
    report = cost_runner.format_report(summary)
    assert f"{madds} MAdds (M) (MACs/1e6, mobile papers' convention)" in report
    assert "GFLOPs (MACs/2^30, HRNet/ScaleNAS convention)" in report
    assert "the papers' (identity layers as plain skips)" in report


def test_runner_default_arch_is_largest_and_reports_folds():
    config = _config()
    largest = cost_runner.run(config)
    assert largest["arch"] == "largest"
    assert largest["params"] == count(ScarletSpace(), ScarletSpace().largest()).params
    summary = cost_runner.run(config, arch="scarlet_b", as_extracted=True)
    assert summary["as_extracted"] is True
    assert summary["params"] == EXACT["scarlet_b"][0] + 80 * 80 + 192 * 192
    assert [f["action"] for f in summary["fold_plan"]] == ["kept", "kept"]
    report = cost_runner.format_report(summary)
    assert "as extracted (ELS folds applied, kept ELS convs counted)" in report
    assert "layers [8]: kept as a 1x1 conv 80->80" in report
    folded = cost_runner.format_report(cost_runner.run(config, arch="scarlet_c"))
    assert "layers [3, 4]: 40->40, folded backward into layer 2" in folded


def test_runner_skip_config_has_no_fold_plan():
    summary = cost_runner.run(_config("s2_skip"), arch="scarlet_b", as_extracted=True)
    assert "fold_plan" not in summary
    assert summary["params"] == EXACT["scarlet_b"][0]


def test_runner_arch_from_json(tmp_path):
    config = _config()
    plain = tmp_path / "c.json"
    plain.write_text(json.dumps(list(PRESETS["scarlet_c"])))
    canonical = tmp_path / "c_canonical.json"
    canonical.write_text(ScarletArch(PRESETS["scarlet_c"]).to_json())
    for path in (plain, canonical):
        summary = cost_runner.run(config, arch=str(path))
        assert summary["arch"] == path.name
        assert (summary["params"], summary["macs"]) == EXACT["scarlet_c"]
        assert summary["arch_hash"] == ScarletArch(PRESETS["scarlet_c"]).hash()


def test_runner_errors(tmp_path):
    config = _config()
    with pytest.raises(ValueError, match="`official_mask` does not apply to a scarlet config"):
        cost_runner.run(config, official_mask="seg_w32_S1.json")
    with pytest.raises(ArchError, match="Unknown arch 'hrnet'.*scarlet space"):
        cost_runner.run(config, arch="hrnet")
    with pytest.raises(ArchError, match="K9E3"):
        cost_runner.run(config, arch="all_K9E3")
    bad = tmp_path / "short.json"
    bad.write_text(json.dumps(["K3E3"] * 18))
    with pytest.raises(ArchError, match="19 choices"):
        cost_runner.run(config, arch=str(bad))


def test_runner_as_extracted_is_scarlet_only():
    with pytest.raises(ValueError, match="`as_extracted` does not apply to a scalenas config"):
        cost_runner.run(scalenas_pose.get_config("w32"), as_extracted=True)


def _run_binary(*flags):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "bin/cost.py", "--config=configs/scarlet.py:s2", "--input_size=224x224", *flags],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cost_binary_named_arch():
    out = _run_binary("--arch=scarlet_a")
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["params"] == EXACT["scarlet_a"][0]
    assert f"{summary['madds_m']:.3f}" == "365.307"
    assert "365.307 MAdds (M)" in out.stdout


def test_cost_binary_json_arch_as_extracted(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps(list(PRESETS["scarlet_b"])))
    out = _run_binary(f"--arch={path}", "--as_extracted")
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["arch"] == "b.json" and summary["as_extracted"] is True
    assert summary["params"] == EXACT["scarlet_b"][0] + 80 * 80 + 192 * 192
    assert f"{summary['madds_m']:.3f}" == "329.914"
