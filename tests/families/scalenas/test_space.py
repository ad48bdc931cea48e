"""Tests for scalenas_tf.families.scalenas.space (pure Python: no TensorFlow is imported here)."""

import copy
import dataclasses
import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from scalenas_tf.arch import ArchError
from scalenas_tf.families.scalenas.space import ARCH_FORMAT
from scalenas_tf.families.scalenas.space import ModuleArch
from scalenas_tf.families.scalenas.space import ScaleNASArch
from scalenas_tf.families.scalenas.space import ScaleNASSpace

REPO = pathlib.Path(__file__).resolve().parents[3]
SHARED = REPO / ".." / "shared"
MASK_DIR = SHARED / "fixtures" / "scalenas_masks"
MASK_NAMES = ("seg_w32_S1", "seg_w32_S2", "seg_w48_S3", "seg_w48_S4")

# `ScaleNASSpace(width=32).hrnet().hash()`, computed once: a change means the canonical form (and so
# every stored arch hash) changed.
GOLDEN_HRNET_HASH = "e1bc3b64fd8257e9"
GOLDEN_POSE_HRNET_HASH = "afba314c03f26dbb"  # same, with multi_scale_output=False


# === Helpers ===


def mask_path(name):
    path = MASK_DIR / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"shared fixture {path} is absent (expected the shared folder at <repo>/../shared)")
    return path


def load_raw_mask(name):
    with open(mask_path(name)) as f:
        return json.load(f)


def space_for_mask(name):
    return ScaleNASSpace(width=int(name[len("seg_w") : len("seg_w") + 2]))


def fusion_lists(module):
    return [[list(bits) for bits in steps] for steps in module.fusion]


def replace_module(arch, m, depths=None, fusion=None):
    """`arch` with module `m` given new depths and/or fusion (nested lists or tuples)."""
    old = arch.modules[m]
    depths = old.depths if depths is None else tuple(depths)
    fusion = old.fusion if fusion is None else tuple(tuple(tuple(b) for b in steps) for steps in fusion)
    modules = list(arch.modules)
    modules[m] = ModuleArch(depths, fusion)
    return ScaleNASArch(tuple(modules))


def set_bits(arch, m, j, s, bits):
    fusion = fusion_lists(arch.modules[m])
    fusion[j][s] = list(bits)
    return replace_module(arch, m, fusion=fusion)


def cross_slots(module):
    """All `(j, s, k)` with k != j and s < depths[j]: the cross bits the canonical form may set."""
    b = module.num_branches
    return [(j, s, k) for j in range(b) for s in range(module.depths[j]) for k in range(b) if k != j]


# === Construction ===


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"width": 0}, "width"),
        ({"width": -32}, "width"),
        ({"width": True}, "width"),
        ({"stem_channels": 0}, "stem_channels"),
        ({"layer1_blocks": 0}, "layer1_blocks"),
        ({"depth_choices": (3, 2, 4)}, "depth_choices"),
        ({"depth_choices": (2, 2, 3)}, "depth_choices"),
        ({"depth_choices": ()}, "depth_choices"),
        ({"depth_choices": (0, 2)}, "depth_choices"),
        ({"num_branches": (2, 3, 5)}, "num_branches"),
        ({"num_branches": (1, 2, 3)}, "num_branches"),
        ({"num_modules": (1, 4)}, "num_modules"),
        ({"num_modules": (1, 0, 3)}, "num_modules"),
    ],
)
def test_space_constructor_errors_name_argument(kwargs, name):
    with pytest.raises(ValueError, match=re.escape(f"`{name}`")) as info:
        ScaleNASSpace(**kwargs)
    assert f"Received: {name}=" in str(info.value)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"fusion_upsampling": "bicubic"}, "fusion_upsampling"),
        ({"fusion_upsampling": "Bilinear"}, "fusion_upsampling"),
        ({"fusion_upsampling": None}, "fusion_upsampling"),
        ({"fusion_upsampling": ["bilinear"]}, "fusion_upsampling"),
        ({"bn_momentum": 1.0}, "bn_momentum"),
        ({"bn_momentum": 1.5}, "bn_momentum"),
        ({"bn_momentum": -0.01}, "bn_momentum"),
        ({"bn_momentum": float("nan")}, "bn_momentum"),
        ({"bn_momentum": "0.99"}, "bn_momentum"),
        ({"bn_momentum": True}, "bn_momentum"),
        ({"bn_momentum": None}, "bn_momentum"),
    ],
)
def test_fusion_upsampling_and_bn_momentum_are_validated(kwargs, name):
    with pytest.raises(ValueError, match=re.escape(f"`{name}`")) as info:
        ScaleNASSpace(**kwargs)
    assert f"Received: {name}=" in str(info.value)


def test_fusion_upsampling_and_bn_momentum_defaults_and_round_trip():
    """Defaults are today's behaviour; the fields survive `dataclasses.asdict` through JSON (how the
    supernet's config stores its space); a stored space from before the fields loads as the defaults."""
    default = ScaleNASSpace(width=8)
    assert (default.fusion_upsampling, default.bn_momentum) == ("nearest", 0.9)
    space = ScaleNASSpace(width=8, fusion_upsampling="bilinear", bn_momentum=0.99)
    stored = json.loads(json.dumps(dataclasses.asdict(space)))
    assert stored["fusion_upsampling"] == "bilinear" and stored["bn_momentum"] == 0.99
    assert ScaleNASSpace(**stored) == space
    old = {k: v for k, v in dataclasses.asdict(default).items() if k not in ("fusion_upsampling", "bn_momentum")}
    assert ScaleNASSpace(**old) == default
    assert isinstance(ScaleNASSpace(bn_momentum=np.float32(0.5)).bn_momentum, float)
    assert ScaleNASSpace(bn_momentum=0).bn_momentum == 0.0
    # The options belong to the network, not to the arch encoding: arch hashes do not change.
    assert space.hrnet().hash() == ScaleNASSpace(width=8).hrnet().hash()
    assert ScaleNASSpace(width=32, fusion_upsampling="bilinear").hrnet().hash() == GOLDEN_HRNET_HASH


def test_config_fields_reach_the_space_and_bad_values_name_the_field():
    from scalenas_tf import registry
    from scalenas_tf.experiment import ConfigError
    from scalenas_tf.experiment import Experiment

    family = registry.get("scalenas")
    assert {"fusion_upsampling", "bn_momentum"} <= set(family.space_fields())
    space = family.build_space({"width": 8, "fusion_upsampling": "bilinear", "bn_momentum": 0.99})
    assert (space.fusion_upsampling, space.bn_momentum) == ("bilinear", 0.99)
    config = {
        "search_space": {"width": 8, "fusion_upsampling": "bilinear"},
        "model": {"task": "seg", "num_classes": 5, "input_size": (64, 64)},
    }
    assert Experiment.from_config(config).space.fusion_upsampling == "bilinear"
    config["search_space"]["fusion_upsampling"] = "linear"
    with pytest.raises(ConfigError, match=r"config.search_space.*`fusion_upsampling`.*'linear'"):
        Experiment.from_config(config)
    config["search_space"].update(fusion_upsampling="nearest", bn_momentum=1.0)
    with pytest.raises(ConfigError, match=r"config.search_space.*`bn_momentum`.*Received: bn_momentum=1.0"):
        Experiment.from_config(config)


def test_space_layout_and_channels():
    space = ScaleNASSpace(width=48)
    assert space.branch_channels() == (48, 96, 192, 384)
    assert space.num_total_modules == 8
    assert space.max_steps == 5
    assert [b for _, _, b in space.module_layout()] == [2, 3, 3, 3, 3, 4, 4, 4]
    assert space.module_layout()[5] == (4, 0, 4)
    assert space.module_label(3) == "module 3 (stage 3, module 2)"


# === Named points ===


@pytest.mark.parametrize("multi_scale_output", [True, False])
@pytest.mark.parametrize("name", ["largest", "smallest", "hrnet"])
def test_named_points_validate(name, multi_scale_output):
    space = ScaleNASSpace(width=32, multi_scale_output=multi_scale_output)
    arch = space.named(name)
    space.validate(arch)
    assert space.is_valid(arch)
    assert arch == getattr(space, name)()
    expected_depth = {"largest": 5, "smallest": 2, "hrnet": 4}[name]
    assert all(m.depths == (expected_depth,) * m.num_branches for m in arch.modules)


def test_named_unknown_raises():
    with pytest.raises(ArchError, match="'tiny'"):
        ScaleNASSpace().named("tiny")
    with pytest.raises(ArchError, match="6"):
        ScaleNASSpace().hrnet(depth=6)


def test_hrnet_multi_scale_output():
    space = ScaleNASSpace(width=32)
    arch = space.hrnet()
    for module in arch.modules:
        b = module.num_branches
        assert module.depths == (4,) * b
        for j in range(b):
            assert module.fusion[j][3] == (1,) * b  # HRNet's fuse layer at the module end
            for s in range(3):
                assert module.fusion[j][s] == tuple(int(k == j) for k in range(b))  # self only
            assert module.fusion[j][4] == (0,) * b  # beyond depth
        assert {(j, s) for j, s, _ in module.edges()} == {(j, 3) for j in range(b)}
        assert len(module.edges()) == b * (b - 1)


def test_hrnet_single_scale_output_last_module():
    space = ScaleNASSpace(width=32, multi_scale_output=False)
    arch = space.hrnet()
    multi = ScaleNASSpace(width=32).hrnet()
    assert arch.modules[:-1] == multi.modules[:-1]
    last = arch.modules[-1]
    b = last.num_branches
    assert last.fusion[0][3] == (1,) * b
    for j in range(1, b):
        assert last.fusion[j][last.depths[j] - 1] == tuple(int(k == j) for k in range(b))
    assert last.edges() == [(0, 3, k) for k in range(1, b)]


def test_largest_and_smallest_bits():
    space = ScaleNASSpace(width=32)
    for module in space.largest().modules:
        assert sorted(module.edges()) == sorted(cross_slots(module))
    for module in space.smallest().modules:
        assert module.edges() == []

    pose = ScaleNASSpace(width=32, multi_scale_output=False).largest()
    last = pose.modules[-1]
    # every cross slot is on except the last step of targets 1.. (self only there)
    expected = [(j, s, k) for j, s, k in cross_slots(last) if j == 0 or s < last.depths[j] - 1]
    assert sorted(last.edges()) == sorted(expected)
    assert pose.modules[:-1] == space.largest().modules[:-1]


# === JSON, hashing ===


@pytest.mark.parametrize("multi_scale_output", [True, False])
def test_json_round_trip(multi_scale_output):
    space = ScaleNASSpace(width=32, multi_scale_output=multi_scale_output)
    archs = [space.hrnet(), space.largest(), space.smallest()]
    archs += [space.sample(np.random.default_rng(seed)) for seed in range(5)]
    for arch in archs:
        for indent in (None, 2):
            text = arch.to_json(indent=indent)
            back = ScaleNASArch.from_json(text)
            assert back == arch
            assert back.hash() == arch.hash()
            assert hash(back) == hash(arch)
            space.validate(back)
        assert json.loads(arch.to_json())["format"] == ARCH_FORMAT
        assert ScaleNASArch.from_dict(arch.to_dict()) == arch


def test_load_arch_reads_to_json_output(tmp_path):
    space = ScaleNASSpace()
    arch = space.sample(np.random.default_rng(7))
    path = tmp_path / "arch.json"
    path.write_text(arch.to_json(indent=2))
    assert space.load_arch(path) == arch
    bad = set_bits(arch, 0, 0, 0, [0, 1])  # self bit off within depth: invalid for the space
    path.write_text(bad.to_json())
    with pytest.raises(ArchError):
        space.load_arch(path)


def test_hash_stable_and_sensitive():
    space = ScaleNASSpace(width=32)
    a, b = space.hrnet(), space.hrnet()
    assert a is not b
    assert a.hash() == b.hash()
    assert re.fullmatch(r"[0-9a-f]{16}", a.hash())
    # one cross bit flipped
    flipped = set_bits(a, 2, 1, 0, [1, 1, 0])
    space.validate(flipped)
    assert flipped != a
    assert flipped.hash() != a.hash()
    # one depth changed (with its step's self bit, to stay canonical)
    fusion = fusion_lists(a.modules[0])
    fusion[1][4] = [0, 1]
    deeper = replace_module(a, 0, depths=(4, 5), fusion=fusion)
    space.validate(deeper)
    assert deeper.hash() != a.hash()
    # independent of the space's width (the arch does not hold it)
    assert ScaleNASSpace(width=48).hrnet().hash() == a.hash()


def test_golden_hash():
    assert ScaleNASSpace(width=32).hrnet().hash() == GOLDEN_HRNET_HASH
    assert ScaleNASSpace(width=32, multi_scale_output=False).hrnet().hash() == GOLDEN_POSE_HRNET_HASH


def test_hash_same_in_fresh_process():
    code = (
        "from scalenas_tf.families.scalenas.space import ScaleNASSpace; print(ScaleNASSpace(width=32).hrnet().hash())"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == GOLDEN_HRNET_HASH


def test_module_does_not_import_tensorflow():
    code = (
        "import sys, scalenas_tf.families.scalenas.space, scalenas_tf.search.cost; "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]


# === Validation ===


def test_validate_depth_outside_choices():
    space = ScaleNASSpace()
    arch = replace_module(space.hrnet(), 3, depths=(4, 4, 6))
    with pytest.raises(ArchError, match=r"module 3 \(stage 3, module 2\), branch 2: depth 6") as info:
        space.validate(arch)
    msg = str(info.value)
    assert "module" in msg and "branch" in msg and "6" in msg
    assert not space.is_valid(arch)
    arch = replace_module(space.hrnet(), 0, depths=(1, 4))
    with pytest.raises(ArchError, match=r"module 0 .*branch 0: depth 1"):
        space.validate(arch)


def test_validate_wrong_number_of_modules():
    space = ScaleNASSpace()
    arch = ScaleNASArch(space.hrnet().modules[:7])
    with pytest.raises(ArchError, match=r"7 modules; this space has 8"):
        space.validate(arch)
    arch = ScaleNASArch(space.hrnet().modules + space.hrnet().modules[-1:])
    with pytest.raises(ArchError, match=r"9 modules"):
        space.validate(arch)


def test_validate_wrong_number_of_branches():
    space = ScaleNASSpace()
    hr = space.hrnet()
    # module 0 given a 3-branch module
    arch = replace_module(hr, 0, depths=hr.modules[1].depths, fusion=hr.modules[1].fusion)
    with pytest.raises(ArchError, match=r"module 0 .*expected 2 branch depths.*\[4, 4, 4\]"):
        space.validate(arch)
    # right depths, fusion with one target too few
    arch = replace_module(hr, 5, fusion=hr.modules[5].fusion[:3])
    with pytest.raises(ArchError, match=r"module 5 .*one entry per target branch \(4\).*3 entries"):
        space.validate(arch)
    # a step with too few source bits
    arch = set_bits(hr, 6, 2, 1, [0, 0, 1])
    with pytest.raises(ArchError, match=r"module 6 .*target branch 2, step 1: expected 4 bits"):
        space.validate(arch)
    # too few steps
    fusion = fusion_lists(hr.modules[1])
    fusion[2] = fusion[2][:4]
    with pytest.raises(ArchError, match=r"module 1 .*target branch 2: fusion needs 5 steps.*4 steps"):
        space.validate(replace_module(hr, 1, fusion=fusion))


def test_validate_bits_not_binary():
    space = ScaleNASSpace()
    arch = set_bits(space.hrnet(), 2, 1, 0, [2, 1, 0])
    with pytest.raises(ArchError, match=r"module 2 .*target branch 1, step 0: bits must be 0 or 1.*\[2, 1, 0\]"):
        space.validate(arch)
    arch = set_bits(space.hrnet(), 2, 1, 0, [-1, 1, 0])
    with pytest.raises(ArchError, match="bits must be 0 or 1"):
        space.validate(arch)


def test_validate_cross_bits_beyond_depth():
    space = ScaleNASSpace()
    arch = set_bits(space.smallest(), 0, 0, 3, [0, 1])  # depth 2, step 3
    with pytest.raises(ArchError, match=r"module 0 .*target branch 0, step 3: .*beyond the branch's depth 2"):
        space.validate(arch)
    # a self bit beyond depth is not allowed either (canonical form)
    arch = set_bits(space.hrnet(), 4, 1, 4, [0, 1, 0])
    with pytest.raises(ArchError, match=r"module 4 .*target branch 1, step 4"):
        space.validate(arch)


def test_validate_self_bit_zero_within_depth():
    space = ScaleNASSpace()
    arch = set_bits(space.hrnet(), 0, 1, 0, [0, 0])
    with pytest.raises(ArchError, match=r"module 0 .*target branch 1, step 0: the self bit must be 1"):
        space.validate(arch)
    arch = set_bits(space.hrnet(), 7, 3, 3, [1, 1, 1, 0])  # HRNet's fuse step with the self bit off
    with pytest.raises(ArchError, match=r"module 7 .*target branch 3, step 3: the self bit"):
        space.validate(arch)


def test_validate_rejects_non_arch():
    with pytest.raises(ArchError, match="ScaleNASArch.*dict"):
        ScaleNASSpace().validate({"modules": []})


# === from_dict / from_json errors ===


@pytest.mark.parametrize("data", [[1, 2], "modules", None, 3, {"format": ARCH_FORMAT}])
def test_from_dict_not_an_object(data):
    with pytest.raises(ArchError, match="'modules' list"):
        ScaleNASArch.from_dict(data)


def test_from_dict_malformed_fields():
    good = ScaleNASSpace().hrnet().to_dict()

    bad = copy.deepcopy(good)
    bad["format"] = "scalenas_tf.arch/v0"
    with pytest.raises(ArchError, match=r"Unknown arch format.*scalenas_tf.arch/v0"):
        ScaleNASArch.from_dict(bad)

    bad = copy.deepcopy(good)
    bad["modules"] = {"0": good["modules"][0]}
    with pytest.raises(ArchError, match="'modules' must be a list"):
        ScaleNASArch.from_dict(bad)

    for depths in ([4, "4"], [4, 4.0], [4, True], "44", 4):
        bad = copy.deepcopy(good)
        bad["modules"][2]["depths"] = depths
        with pytest.raises(ArchError, match=r"modules\[2\]\.depths must be a list of ints"):
            ScaleNASArch.from_dict(bad)

    bad = copy.deepcopy(good)
    bad["modules"][1]["fusion"][0][2] = [1, 0.5, 0]
    with pytest.raises(ArchError, match=r"modules\[1\]\.fusion\[0\]\[2\]"):
        ScaleNASArch.from_dict(bad)

    bad = copy.deepcopy(good)
    bad["modules"][1]["fusion"] = 1
    with pytest.raises(ArchError, match=r"modules\[1\]\.fusion must be a list"):
        ScaleNASArch.from_dict(bad)

    bad = copy.deepcopy(good)
    del bad["modules"][4]["fusion"]
    with pytest.raises(ArchError, match=r"modules\[4\] must be an object with 'depths' and 'fusion'"):
        ScaleNASArch.from_dict(bad)

    # the format key is optional
    no_format = copy.deepcopy(good)
    del no_format["format"]
    assert ScaleNASArch.from_dict(no_format) == ScaleNASSpace().hrnet()


@pytest.mark.parametrize("text", ["{not json", "", '{"modules": [', "[1, 2"])
def test_from_json_invalid(text):
    with pytest.raises(ArchError, match="not valid JSON"):
        ScaleNASArch.from_json(text)


def test_from_json_valid_json_wrong_shape():
    with pytest.raises(ArchError, match="'modules'"):
        ScaleNASArch.from_json("[1, 2, 3]")


# === Official masks ===


@pytest.mark.parametrize("name", MASK_NAMES)
def test_official_mask_imports(name):
    space = space_for_mask(name)
    arch = space.load_official_mask(mask_path(name))
    space.validate(arch)
    assert arch == space.from_official_mask(load_raw_mask(name))
    assert len(arch.modules) == 8


@pytest.mark.parametrize("name", MASK_NAMES)
def test_official_mask_import_is_lossless(name):
    space = space_for_mask(name)
    raw = load_raw_mask(name)
    arch = space.from_official_mask(raw)
    assert len(raw) == len(arch.modules)
    for entry, module in zip(raw, arch.modules):
        assert list(module.depths) == entry["d"]
        b = len(entry["d"])
        for j in range(b):
            for s in range(max(entry["d"])):
                for k in range(b):
                    if k != j:
                        assert module.fusion[j][s][k] == entry["f"][j][s][k], (j, s, k)
            for s in range(max(entry["d"]), space.max_steps):
                assert module.fusion[j][s] == (0,) * b


@pytest.mark.parametrize("name", MASK_NAMES)
def test_official_mask_round_trip(name):
    space = space_for_mask(name)
    arch = space.from_official_mask(load_raw_mask(name))
    mask = space.to_official_mask(arch)
    json.dumps(mask)  # plain builtins
    assert space.from_official_mask(mask) == arch
    assert space.from_official_mask(json.loads(json.dumps(mask))) == arch


@pytest.mark.parametrize("multi_scale_output", [True, False])
def test_official_mask_round_trip_of_space_points(multi_scale_output):
    space = ScaleNASSpace(multi_scale_output=multi_scale_output)
    archs = [space.hrnet(), space.largest(), space.smallest()]
    archs += [space.sample(np.random.default_rng(seed)) for seed in range(20)]
    for arch in archs:
        mask = space.to_official_mask(arch)
        assert [e["d"] for e in mask] == [list(m.depths) for m in arch.modules]
        assert space.from_official_mask(mask) == arch


def test_official_mask_self_bits_canonicalized():
    space = ScaleNASSpace()
    mask = space.to_official_mask(space.hrnet())
    mask[0]["f"][1][0] = [0, 0]  # self bit off within depth: meaningless, imported as 1
    assert space.from_official_mask(mask) == space.hrnet()


def test_official_mask_errors():
    space = ScaleNASSpace()
    good = space.to_official_mask(space.hrnet())

    with pytest.raises(ArchError, match="7 modules; this space has 8"):
        space.from_official_mask(good[:7])

    bad = copy.deepcopy(good)
    bad[3]["d"] = [4, 6, 4]
    with pytest.raises(ArchError, match=r"module 3 .*branch 1: depth 6"):
        space.from_official_mask(bad)

    bad = copy.deepcopy(good)
    bad[0]["f"][0][4] = [0, 1]  # step 4 is padding (max depth 4)
    with pytest.raises(ArchError, match=r"module 0 .*target branch 0, step 4: padding must be 0"):
        space.from_official_mask(bad)

    bad = copy.deepcopy(good)
    bad[5]["d"] = [4, 4, 4]
    with pytest.raises(ArchError, match=r"module 5 .*expected 4 branch depths"):
        space.from_official_mask(bad)

    with pytest.raises(ArchError, match="must be a list of modules"):
        space.from_official_mask({"d": [4, 4]})

    bad = copy.deepcopy(good)
    bad[2] = {"d": [4, 4, 4]}
    with pytest.raises(ArchError, match=r"module 2 .*'d' and 'f'"):
        space.from_official_mask(bad)


def test_official_mask_with_padding_error_from_file(tmp_path):
    raw = load_raw_mask("seg_w32_S1")
    raw[0]["f"][0][4] = [1, 0]  # module 0 has max depth 4: step 4 is padding
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ArchError, match="padding must be 0"):
        ScaleNASSpace().load_official_mask(path)
    path.write_text("[{")
    with pytest.raises(ArchError, match="not valid JSON"):
        ScaleNASSpace().load_official_mask(path)


def test_official_npy_needs_allow_pickle(tmp_path):
    raw = load_raw_mask("seg_w32_S2")
    path = tmp_path / "mask.npy"
    np.save(path, np.array(raw, dtype=object), allow_pickle=True)
    space = ScaleNASSpace(width=32)
    with pytest.raises(ArchError, match="allow_pickle"):
        space.load_official_mask(path)
    with pytest.raises(ArchError, match="allow_pickle"):
        space.load_official_mask(str(path))
    arch = space.load_official_mask(path, allow_pickle=True)
    assert arch == space.from_official_mask(raw)


def test_official_npy_with_numpy_arrays_inside(tmp_path):
    raw = load_raw_mask("seg_w48_S4")
    # the authors' files hold numpy arrays; steps are ragged (padding [0, 0]) so keep lists per target
    as_arrays = [{"d": np.array(e["d"]), "f": [[np.array(b) for b in t] for t in e["f"]]} for e in raw]
    path = tmp_path / "mask.npy"
    np.save(path, np.array(as_arrays, dtype=object), allow_pickle=True)
    space = ScaleNASSpace(width=48)
    assert space.load_official_mask(path, allow_pickle=True) == space.from_official_mask(raw)


# === Vectors ===


@pytest.mark.parametrize("multi_scale_output", [True, False])
def test_vector_round_trip(multi_scale_output):
    space = ScaleNASSpace(multi_scale_output=multi_scale_output)
    assert space.vector_size == 22 + 4 * 48 + 3 * 84
    archs = [space.hrnet(), space.largest(), space.smallest()]
    archs += [space.sample(np.random.default_rng(seed)) for seed in range(10)]
    for arch in archs:
        vector = space.to_vector(arch)
        assert vector.dtype == np.int32
        assert vector.shape == (space.vector_size,)
        assert space.from_vector(vector) == arch
        assert space.from_vector(vector.tolist()) == arch
    assert list(space.to_vector(space.hrnet())[:2]) == [4, 4]


def test_vector_size_follows_space():
    space = ScaleNASSpace(depth_choices=(1, 2), num_modules=(1, 1, 1))
    assert space.vector_size == (2 + 2 * 2 * 2) + (3 + 3 * 2 * 3) + (4 + 4 * 2 * 4)
    arch = space.largest()
    assert space.from_vector(space.to_vector(arch)) == arch


def test_from_vector_errors():
    space = ScaleNASSpace()
    vector = space.to_vector(space.hrnet())
    with pytest.raises(ArchError, match=f"{space.vector_size} entries.*{space.vector_size - 1}"):
        space.from_vector(vector[:-1])
    with pytest.raises(ArchError, match=f"{space.vector_size + 1}"):
        space.from_vector(np.concatenate([vector, [0]]))
    bad = vector.copy()
    bad[0] = 7
    with pytest.raises(ArchError, match="depth 7"):
        space.from_vector(bad)


# === Sampling ===


@pytest.mark.parametrize("multi_scale_output", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2, 12345])
def test_samples_are_valid(seed, multi_scale_output):
    space = ScaleNASSpace(multi_scale_output=multi_scale_output)
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng, fusion_prob=p) for p in (0.0, 0.3, 0.5, 1.0) for _ in range(50)]
    for arch in archs:
        space.validate(arch)
    assert len({a.hash() for a in archs}) > 150  # nearly all distinct
    depths = {d for a in archs for m in a.modules for d in m.depths}
    assert depths == set(space.depth_choices)


def test_sample_deterministic_for_seed():
    space = ScaleNASSpace()
    a = [space.sample(np.random.default_rng(42)) for _ in range(2)]
    assert a[0] == a[1]
    rng1, rng2 = np.random.default_rng(3), np.random.default_rng(3)
    assert [space.sample(rng1, 0.3) for _ in range(10)] == [space.sample(rng2, 0.3) for _ in range(10)]
    assert space.sample(np.random.default_rng(42)) != space.sample(np.random.default_rng(43))


def test_sample_fusion_prob_zero():
    for seed in range(20):
        arch = ScaleNASSpace().sample(np.random.default_rng(seed), fusion_prob=0.0)
        assert all(m.edges() == [] for m in arch.modules)
        pose = ScaleNASSpace(multi_scale_output=False).sample(np.random.default_rng(seed), fusion_prob=0.0)
        assert all(m.edges() == [] for m in pose.modules[:-1])
        last = pose.modules[-1]
        assert last.edges() == [(0, last.depths[0] - 1, k) for k in range(1, 4)]


def test_sample_fusion_prob_one():
    for seed in range(20):
        arch = ScaleNASSpace().sample(np.random.default_rng(seed), fusion_prob=1.0)
        for module in arch.modules:
            assert sorted(module.edges()) == sorted(cross_slots(module))
        pose = ScaleNASSpace(multi_scale_output=False).sample(np.random.default_rng(seed), fusion_prob=1.0)
        for module in pose.modules[:-1]:
            assert sorted(module.edges()) == sorted(cross_slots(module))
        last = pose.modules[-1]
        expected = [(j, s, k) for j, s, k in cross_slots(last) if j == 0 or s < last.depths[j] - 1]
        assert sorted(last.edges()) == sorted(expected)


def test_sample_fusion_density():
    space = ScaleNASSpace()
    rng = np.random.default_rng(2024)
    on = total = 0
    for _ in range(400):
        arch = space.sample(rng, fusion_prob=0.3)
        for module in arch.modules:
            total += len(cross_slots(module))
            on += len(module.edges())
    assert total > 50_000
    assert abs(on / total - 0.3) < 0.03


def test_sample_depth_choices_subset():
    space = ScaleNASSpace()
    rng = np.random.default_rng(5)
    seen = set()
    for _ in range(100):
        arch = space.sample(rng, depth_choices=(2, 4))
        space.validate(arch)
        seen |= {d for m in arch.modules for d in m.depths}
    assert seen == {2, 4}
    arch = space.sample(rng, depth_choices=[5])
    assert all(m.depths == (5,) * m.num_branches for m in arch.modules)


@pytest.mark.parametrize("fusion_prob", [-0.1, 1.5, float("nan")])
def test_sample_bad_fusion_prob(fusion_prob):
    with pytest.raises(ValueError, match="fusion_prob"):
        ScaleNASSpace().sample(np.random.default_rng(0), fusion_prob=fusion_prob)


@pytest.mark.parametrize("depth_choices", [(6,), (1, 2), (2.5,), ()])
def test_sample_bad_depth_choices(depth_choices):
    with pytest.raises(ValueError, match="depth_choices"):
        ScaleNASSpace().sample(np.random.default_rng(0), depth_choices=depth_choices)


# === Flatten ===


def test_flatten_keys():
    space = ScaleNASSpace()
    arch = space.hrnet()
    flat = space.flatten(arch)
    assert flat["stage3/module1/branch2/depth"] == 4
    assert flat["stage2/module0/branch0/depth"] == 4
    assert flat["stage4/module2/branch3/depth"] == 4
    assert flat["stage4/module2/fuse0_s3_from3"] == 1
    assert flat["stage4/module2/fuse0_s2_from3"] == 0
    assert "stage4/module2/fuse0_s4_from3" not in flat  # beyond depth
    assert "stage4/module2/fuse0_s3_from0" not in flat  # self bits are not logged
    pattern = re.compile(r"stage[234]/module\d/(branch\d/depth|fuse\d_s\d_from\d)")
    assert all(pattern.fullmatch(key) for key in flat)
    depth_keys = [k for k in flat if k.endswith("/depth")]
    assert len(depth_keys) == 2 + 4 * 3 + 3 * 4
    fuse_keys = [k for k in flat if "/fuse" in k]
    assert len(fuse_keys) == sum(len(cross_slots(m)) for m in arch.modules)
    assert sum(flat[k] for k in fuse_keys) == sum(len(m.edges()) for m in arch.modules)
    assert all(isinstance(v, int) for v in flat.values())


def test_flatten_sampled_matches_arch():
    space = ScaleNASSpace()
    arch = space.sample(np.random.default_rng(9), fusion_prob=0.5)
    flat = space.flatten(arch)
    for (stage, module_index, _), module in zip(space.module_layout(), arch.modules):
        prefix = f"stage{stage}/module{module_index}"
        for i, d in enumerate(module.depths):
            assert flat[f"{prefix}/branch{i}/depth"] == d
        for j, s, k in cross_slots(module):
            assert flat[f"{prefix}/fuse{j}_s{s}_from{k}"] == module.fusion[j][s][k]
