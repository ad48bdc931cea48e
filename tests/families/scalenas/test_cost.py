"""Tests for scalenas_tf.search.cost.count against shared/reference/figures.md (no TensorFlow here)."""

import pathlib

import numpy as np
import pytest

from scalenas_tf.arch import ArchError
from scalenas_tf.families.scalenas.cost import Cost
from scalenas_tf.families.scalenas.cost import count
from scalenas_tf.families.scalenas.space import ModuleArch
from scalenas_tf.families.scalenas.space import ScaleNASArch
from scalenas_tf.families.scalenas.space import ScaleNASSpace

REPO = pathlib.Path(__file__).resolve().parents[3]
SHARED = REPO / ".." / "shared"
FIGURES = SHARED / "reference" / "figures.md"
MASK_DIR = SHARED / "fixtures" / "scalenas_masks"

SEG_SIZE = (1024, 2048)


def mask_arch(name, space):
    path = MASK_DIR / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"shared fixture {path} is absent (expected the shared folder at <repo>/../shared)")
    return space.load_official_mask(path)


def cross_slots(module):
    b = module.num_branches
    return [(j, s, k) for j in range(b) for s in range(module.depths[j]) for k in range(b) if k != j]


def with_module(arch, m, depths, fusion):
    modules = list(arch.modules)
    modules[m] = ModuleArch(tuple(depths), tuple(tuple(tuple(b) for b in steps) for steps in fusion))
    return ScaleNASArch(tuple(modules))


# === Reference figures (shared/reference/figures.md), to the printed precision ===

# (width, input (h, w), params M, MACs / 2^30, MACs / 1e9): HRNet points, 3 decimals
POSE_ROWS = [
    (32, (256, 192), "28.536", "7.120", "7.645"),
    (32, (384, 288), "28.536", "16.020", "17.201"),
    (48, (256, 192), "63.596", "14.614", "15.692"),
    (48, (384, 288), "63.596", "32.882", "35.307"),
]
SEG_HRNET_ROWS = [
    (48, "65.859", "696.176", "747.513"),
    (32, "29.547", "336.418", "361.226"),
]
# (mask, width, params M, MACs / 2^30): 2 decimals
SEG_MASK_ROWS = [
    ("seg_w32_S1", 32, "25.35", "265.54"),
    ("seg_w32_S2", 32, "28.50", "309.48"),
    ("seg_w48_S3", 48, "58.50", "575.22"),
    ("seg_w48_S4", 48, "67.55", "673.59"),
]
# (named point, params M, MACs / 2^30): W32 pose at 256x192, 2 decimals
SUPERNET_ROWS = [("largest", "46.84", "10.25"), ("smallest", "13.62", "4.02")]
# (width, params M, MACs / 2^30): timm hrnet_w*, 1000 classes, 224x224, 3 decimals
CLS_ROWS = [(18, "21.299", "3.989"), (32, "41.233", "8.308"), (48, "77.470", "16.091")]


def test_hard_coded_rows_match_figures_md():
    """The tables above are copied from figures.md; catch a typo or a changed reference."""
    if not FIGURES.is_file():
        pytest.skip(f"shared reference {FIGURES} is absent (expected the shared folder at <repo>/../shared)")
    text = FIGURES.read_text()
    expected = [f"| {h}x{w} | {p} | {g30} | {g9} |" for _, (h, w), p, g30, g9 in POSE_ROWS]
    expected += [f"| 1024x2048 | {p} | {g30} | {g9} |" for _, p, g30, g9 in SEG_HRNET_ROWS]
    expected += [f"| {n} | W{w} | 1024x2048 | {p} | {g30} |" for n, w, p, g30 in SEG_MASK_ROWS]
    expected += [f"{p}M / {g30}" for _, p, g30 in SUPERNET_ROWS]
    expected += [f"| hrnet_w{w} | {p} | {g30} |" for w, p, g30 in CLS_ROWS]
    for row in expected:
        assert row in text, row


@pytest.mark.parametrize("width, input_size, params, g30, g9", POSE_ROWS)
def test_hrnet_pose_figures(width, input_size, params, g30, g9):
    space = ScaleNASSpace(width=width, multi_scale_output=False)
    cost = count(space, space.hrnet(), task="pose", num_classes=17, input_size=input_size)
    assert f"{cost.params / 1e6:.3f}" == params
    assert f"{cost.macs / 2**30:.3f}" == g30
    assert f"{cost.macs / 1e9:.3f}" == g9
    assert f"{cost.gflops_hrnet:.3f}" == g30
    assert f"{cost.gmacs:.3f}" == g9
    assert cost.input_size == input_size


def test_hrnet_w32_pose_exact_params():
    space = ScaleNASSpace(width=32, multi_scale_output=False)
    cost = count(space, space.hrnet(), task="pose", num_classes=17, input_size=(256, 192))
    assert cost.params == 28536113
    assert cost.live_params == 28536113


@pytest.mark.parametrize("width, params, g30, g9", SEG_HRNET_ROWS)
def test_hrnetv2_seg_figures(width, params, g30, g9):
    space = ScaleNASSpace(width=width)
    cost = count(space, space.hrnet(), task="seg", num_classes=19, input_size=SEG_SIZE)
    assert f"{cost.params / 1e6:.3f}" == params
    assert f"{cost.macs / 2**30:.3f}" == g30
    assert f"{cost.macs / 1e9:.3f}" == g9


@pytest.mark.parametrize("name, width, params, g30", SEG_MASK_ROWS)
def test_scalenet_seg_mask_figures(name, width, params, g30):
    space = ScaleNASSpace(width=width)
    arch = mask_arch(name, space)
    cost = count(space, arch, task="seg", num_classes=19, input_size=SEG_SIZE)
    assert f"{cost.params / 1e6:.2f}" == params
    assert f"{cost.macs / 2**30:.2f}" == g30
    assert cost.live_params == cost.params
    assert cost.live_macs == cost.macs


@pytest.mark.parametrize("name, params, g30", SUPERNET_ROWS)
def test_pose_supernet_extremes(name, params, g30):
    space = ScaleNASSpace(width=32, multi_scale_output=False)
    cost = count(space, space.named(name), task="pose", num_classes=17, input_size=(256, 192))
    assert f"{cost.params / 1e6:.2f}" == params
    assert f"{cost.macs / 2**30:.2f}" == g30


@pytest.mark.parametrize("width, params, g30", CLS_ROWS)
def test_hrnet_classification_figures(width, params, g30):
    space = ScaleNASSpace(width=width)
    cost = count(space, space.hrnet(), task="cls", num_classes=1000, input_size=(224, 224))
    assert f"{cost.params / 1e6:.3f}" == params
    assert f"{cost.macs / 2**30:.3f}" == g30
    assert cost.live_params == cost.params


# === Live (reachable) work ===


def test_pose_hrnet_all_live():
    space = ScaleNASSpace(width=32, multi_scale_output=False)
    cost = count(space, space.hrnet(), task="pose", num_classes=17)
    assert cost.params == cost.live_params
    assert cost.macs == cost.live_macs
    assert cost.keras_count_params > cost.live_params
    assert (cost.keras_count_params - cost.live_params) % 2 == 0  # moving mean + variance per channel


def test_pose_count_of_multi_scale_hrnet_has_dead_fusion_only():
    """HRNet with all four fuse outputs, under a pose head: the fusion into targets 1.. of the last
    module is dead; what stays live is exactly the single-output pose HRNet."""
    multi = ScaleNASSpace(width=32)
    pose = ScaleNASSpace(width=32, multi_scale_output=False)
    full = count(multi, multi.hrnet(), task="pose", num_classes=17)
    reference = count(pose, pose.hrnet(), task="pose", num_classes=17)
    assert full.params > reference.params
    assert full.macs > reference.macs
    assert full.live_params == reference.params == 28536113
    assert full.live_macs == reference.macs
    assert full.keras_count_params == reference.keras_count_params


def test_pose_smallest_has_dead_work():
    space = ScaleNASSpace(width=32, multi_scale_output=False)
    cost = count(space, space.smallest(), task="pose", num_classes=17, input_size=(256, 192))
    assert cost.live_params < cost.params
    assert cost.live_macs < cost.macs

    # With no cross-branch fusion only the branch-0 chain reaches the head; count it by hand.
    def conv(c_in, c_out, k, bn=True, bias=False):
        return k * k * c_in * c_out + (2 * c_out if bn else 0) + (c_out if bias else 0)

    def bottleneck(c_in):
        down = conv(c_in, 256, 1) if c_in != 256 else 0
        return conv(c_in, 64, 1) + conv(64, 64, 3) + conv(64, 256, 1) + down

    stem = conv(3, 64, 3) + conv(64, 64, 3)
    layer1 = bottleneck(64) + 3 * bottleneck(256)
    transition = conv(256, 32, 3)
    blocks = 8 * 2 * 2 * conv(32, 32, 3)  # 8 modules x depth 2 x 2 convs per BasicBlock
    head = conv(32, 17, 1, bn=False, bias=True)
    assert cost.live_params == stem + layer1 + transition + blocks + head


@pytest.mark.parametrize("task, num_classes", [("seg", 19), ("cls", 1000)])
def test_all_branch_heads_have_no_dead_work(task, num_classes):
    space = ScaleNASSpace(width=32)
    rng = np.random.default_rng(11)
    archs = [space.smallest(), space.largest()] + [space.sample(rng, fusion_prob=p) for p in (0.0, 0.2, 0.7)]
    for arch in archs:
        cost = count(space, arch, task=task, num_classes=num_classes, input_size=(128, 128))
        assert cost.params == cost.live_params
        assert cost.macs == cost.live_macs


def test_pose_live_never_exceeds_total():
    space = ScaleNASSpace(width=32, multi_scale_output=False)
    rng = np.random.default_rng(3)
    for _ in range(20):
        cost = count(space, space.sample(rng, fusion_prob=0.3), task="pose", num_classes=17)
        assert 0 < cost.live_params <= cost.params
        assert 0 < cost.live_macs <= cost.macs


# === Properties ===


def _deepen(arch, space, rng):
    """One branch one block deeper, same cross bits; None when every branch is at the largest depth."""
    options = [
        (m, i)
        for m, module in enumerate(arch.modules)
        for i, d in enumerate(module.depths)
        if d < space.depth_choices[-1]
    ]
    if not options:
        return None
    m, i = options[rng.integers(len(options))]
    module = arch.modules[m]
    old = module.depths[i]
    new = space.depth_choices[space.depth_choices.index(old) + 1]
    fusion = [[list(bits) for bits in steps] for steps in module.fusion]
    for s in range(old, new):
        fusion[i][s] = [int(k == i) for k in range(module.num_branches)]  # self only
    depths = list(module.depths)
    depths[i] = new
    return with_module(arch, m, depths, fusion)


def _add_fusion_bit(arch, rng):
    """One more cross bit on; None when all are on."""
    options = [
        (m, j, s, k)
        for m, module in enumerate(arch.modules)
        for j, s, k in cross_slots(module)
        if not module.fusion[j][s][k]
    ]
    if not options:
        return None
    m, j, s, k = options[rng.integers(len(options))]
    module = arch.modules[m]
    fusion = [[list(bits) for bits in steps] for steps in module.fusion]
    fusion[j][s][k] = 1
    return with_module(arch, m, module.depths, fusion)


@pytest.mark.parametrize(
    "multi_scale_output, task, num_classes", [(False, "pose", 17), (True, "seg", 19), (True, "cls", 1000)]
)
def test_monotonic_in_depth_and_fusion(multi_scale_output, task, num_classes):
    space = ScaleNASSpace(width=32, multi_scale_output=multi_scale_output)
    rng = np.random.default_rng(17)
    checked_depth = checked_fusion = 0
    for _ in range(15):
        arch = space.sample(rng, fusion_prob=0.4)
        base = count(space, arch, task, num_classes, (128, 96))
        deeper = _deepen(arch, space, rng)
        if deeper is not None:
            space.validate(deeper)
            cost = count(space, deeper, task, num_classes, (128, 96))
            assert cost.params > base.params
            assert cost.macs > base.macs
            assert cost.live_params >= base.live_params
            checked_depth += 1
        fused = _add_fusion_bit(arch, rng)
        if fused is not None:
            space.validate(fused)
            cost = count(space, fused, task, num_classes, (128, 96))
            assert cost.params > base.params
            assert cost.macs > base.macs
            assert cost.live_params >= base.live_params
            assert cost.live_macs >= base.live_macs
            checked_fusion += 1
    assert checked_depth >= 10 and checked_fusion >= 10


def test_monotonic_chain_smallest_to_largest():
    """Deepening and fusing one step at a time from smallest reaches largest with params never falling."""
    space = ScaleNASSpace(width=32)
    rng = np.random.default_rng(0)
    arch = space.smallest()
    previous = count(space, arch, "seg", 19, (64, 64))
    steps = 0
    while True:
        nxt = _deepen(arch, space, rng)
        if nxt is None:
            nxt = _add_fusion_bit(arch, rng)
        if nxt is None:
            break
        arch = nxt
        cost = count(space, arch, "seg", 19, (64, 64))
        assert cost.params > previous.params
        assert cost.macs > previous.macs
        previous = cost
        steps += 1
    assert arch == space.largest()
    assert steps > 100
    assert previous.params == count(space, space.largest(), "seg", 19, (64, 64)).params


@pytest.mark.parametrize("name", ["hrnet", "largest", "smallest"])
@pytest.mark.parametrize("task, num_classes", [("pose", 17), ("seg", 19), ("cls", 1000)])
def test_macs_scale_with_input_area(name, task, num_classes):
    space = ScaleNASSpace(width=32, multi_scale_output=task != "pose")
    arch = space.named(name)
    small = count(space, arch, task, num_classes, (256, 192))
    large = count(space, arch, task, num_classes, (512, 384))
    assert large.params == small.params
    assert large.live_params == small.live_params
    ratio = large.macs / small.macs
    assert abs(ratio - 4.0) < 0.04, ratio


def test_macs_depend_on_input_size_params_do_not():
    space = ScaleNASSpace(width=32, multi_scale_output=False)
    arch = space.hrnet()
    a = count(space, arch, "pose", 17, (256, 192))
    b = count(space, arch, "pose", 17, (255, 191))  # odd sizes round up (PyTorch padding k//2)
    c = count(space, arch, "pose", 17, [1, 1])
    assert a.params == b.params == c.params
    assert b.macs == a.macs  # ceil(255/4) == 64, ceil(191/4) == 48: every feature map is the same
    assert c.macs < a.macs


def test_num_classes_only_changes_the_head():
    space = ScaleNASSpace(width=32, multi_scale_output=False)
    arch = space.hrnet()
    a = count(space, arch, "pose", 17, (256, 192))
    b = count(space, arch, "pose", 18, (256, 192))
    assert b.params - a.params == 32 + 1  # one more 1x1 output channel with bias
    assert b.macs - a.macs == 64 * 48 * 32


# === Bad inputs ===


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"task": "det"}, "task"),
        ({"task": "Pose"}, "task"),
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": -3}, "num_classes"),
        ({"num_classes": 1.5}, "num_classes"),
        ({"input_size": (0, 192)}, "input_size"),
        ({"input_size": (256, 0)}, "input_size"),
        ({"input_size": (256, 192, 3)}, "input_size"),
        ({"input_size": (256,)}, "input_size"),
        ({"input_size": (256.0, 192)}, "input_size"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, name):
    space = ScaleNASSpace(width=32)
    with pytest.raises(ValueError, match=f"`{name}`") as info:
        count(space, space.hrnet(), **kwargs)
    assert f"{name}=" in str(info.value)
    assert not isinstance(info.value, ArchError)


def test_invalid_arch_raises_arch_error():
    space = ScaleNASSpace(width=32)
    arch = space.hrnet()
    bad = ScaleNASArch(arch.modules[:-1])
    with pytest.raises(ArchError, match="7 modules"):
        count(space, bad)


def test_cls_head_supports_four_branches_only():
    space = ScaleNASSpace(width=8, num_modules=(1, 1, 1, 1), num_branches=(2, 3, 4, 5))
    arch = space.smallest()
    count(space, arch, task="seg", num_classes=2, input_size=(64, 64))  # fine with other heads
    with pytest.raises(ValueError, match="up to 4 branches"):
        count(space, arch, task="cls", num_classes=10, input_size=(64, 64))


# === Cost ===


def test_cost_to_dict():
    space = ScaleNASSpace(width=32, multi_scale_output=False)
    cost = count(space, space.smallest(), task="pose", num_classes=17, input_size=(256, 192))
    assert isinstance(cost, Cost)
    d = cost.to_dict()
    assert {"params", "macs", "gmacs", "gflops_hrnet", "live_params", "live_params_with_bn_stats"} <= set(d)
    assert d["params"] == cost.params
    assert d["macs"] == cost.macs
    assert d["live_params"] == cost.live_params
    assert d["live_params_with_bn_stats"] == cost.keras_count_params
    assert d["gmacs"] == pytest.approx(cost.macs / 1e9, abs=1e-6)
    assert d["gflops_hrnet"] == pytest.approx(cost.macs / 2**30, abs=1e-6)
    assert cost.gmacs == cost.macs / 1e9
    assert cost.gflops_hrnet == cost.macs / 2**30
    assert d["gflops_hrnet"] != pytest.approx(d["gmacs"], rel=0.05)  # the 7.4% the two conventions differ
    assert cost.keras_count_params == cost.live_params + 2 * cost.live_bn_channels


# === Space options that change no count ===


@pytest.mark.parametrize("task, num_classes", [("pose", 17), ("seg", 19), ("cls", 1000)])
def test_fusion_upsampling_and_bn_momentum_change_no_count(task, num_classes):
    """Upsampling holds no weights or MACs and BN momentum no weights: every count is equal."""
    base = ScaleNASSpace(width=32, multi_scale_output=task != "pose")
    other = ScaleNASSpace(width=32, multi_scale_output=task != "pose", fusion_upsampling="bilinear", bn_momentum=0.99)
    archs = [base.hrnet(), base.largest(), base.smallest(), base.sample(np.random.default_rng(3))]
    for arch in archs:
        for size in ((256, 192), (225, 97)):
            assert count(other, arch, task, num_classes, size) == count(base, arch, task, num_classes, size)


def test_configs_fusion_upsampling_and_bn_momentum():
    """Seg uses the authors' BN momentum (0.99) and the ScaleNAS supernet's nearest fusion; bilinear
    (HRNetV2) leaves HRNetV2-W32's published counts unchanged; pose, cls and the benchmarked small
    configs keep nearest and 0.9."""
    from configs import quickstart
    from configs import scalenas_cls
    from configs import scalenas_pose
    from configs import scalenas_seg
    from configs import shapes_seg
    from scalenas_tf.experiment import Experiment

    config = scalenas_seg.get_config("w32")
    seg = Experiment.from_config(config).space
    assert (seg.fusion_upsampling, seg.bn_momentum) == ("nearest", 0.99)
    config.search_space.fusion_upsampling = "bilinear"  # what an HRNetV2 import sets on the command line
    hrnet_v2 = Experiment.from_config(config).space
    for space in (seg, hrnet_v2):
        cost = count(space, space.hrnet(), task="seg", num_classes=19, input_size=SEG_SIZE)
        assert cost.params == 29_546_515
        assert f"{cost.gflops_hrnet:.3f}" == "336.418"
    for config in (
        scalenas_pose.get_config("w32"),
        scalenas_cls.get_config("w18"),
        quickstart.get_config(),
        shapes_seg.get_config(),
    ):
        space = Experiment.from_config(config).space
        assert (space.fusion_upsampling, space.bn_momentum) == ("nearest", 0.9)
