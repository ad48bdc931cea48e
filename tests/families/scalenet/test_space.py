"""The ScaleNet space: encoding, validation, presets and path generation on hand-computed cases (no TensorFlow)."""

import dataclasses
import json

import numpy as np
import pytest

from scalenas_tf.arch import ArchError
from scalenas_tf.families.scalenet.space import EFFICIENTNET_B0_CHANNELS
from scalenas_tf.families.scalenet.space import PRESETS
from scalenas_tf.families.scalenet.space import SCALENET_S0_BASE
from scalenas_tf.families.scalenet.space import ScaleNetArch
from scalenas_tf.families.scalenet.space import ScaleNetSpace
from scalenas_tf.families.scalenet.space import round_filters
from scalenas_tf.families.scalenet.space import scale

SPACE = ScaleNetSpace()
B0_SPACE = ScaleNetSpace(stage_channels=EFFICIENTNET_B0_CHANNELS, se_squeeze="input")


# === Rounding rules ===


@pytest.mark.parametrize(
    "channels, multiplier, expected",
    [
        (16, 1.04, 17),  # 16.64
        (25, 1.16, 29),  # exactly 29.0: a float product (29.000000000000004) would give 30
        (40, 1.2, 48),  # exactly 48.0
        (320, 1.04, 333),  # 332.8
        (192, 1.534, 295),  # 294.528
        (96, 1.688, 163),  # 162.048
        (32, 1.0, 32),
    ],
)
def test_width_is_ceil_of_the_decimal_product(channels, multiplier, expected):
    assert scale(channels, multiplier) == expected


def test_round_filters_is_efficientnets():
    # Nearest multiple of 8, bumped when below 90% of c * w (EfficientNet's round_filters).
    assert round_filters(32, 1.1) == 32  # 35.2 -> 32 (>= 31.68)
    assert round_filters(16, 1.1) == 16  # 17.6 -> 16
    assert round_filters(24, 1.2) == 32  # 28.8 -> 32
    assert round_filters(1280, 1.1) == 1408
    assert round_filters(112, 1.4) == 160  # 156.8 -> 160
    assert round_filters(20, 1.0) == 24  # 20 -> int(24) // 8 * 8 = 24


def test_scaled_stage_widths_match_the_reference_table():
    # ../shared/reference/scalenet.md §3.2: stem and stages 1..7 under each preset's width.
    table = {
        1.04: (34, 17, 34, 42, 84, 100, 200, 333),
        1.2: (39, 20, 39, 48, 96, 116, 231, 384),
        1.4: (45, 23, 45, 56, 112, 135, 269, 448),
        1.534: (50, 25, 50, 62, 123, 148, 295, 491),
        1.688: (55, 28, 55, 68, 136, 163, 325, 541),
    }
    for w, widths in table.items():
        net = SPACE.generate(ScaleNetArch(SCALENET_S0_BASE, 1.0, w, 224))
        stage_out = [next(b.out_channels for b in net.blocks if b.stage == i) for i in range(7)]
        assert (net.stem_channels, *stage_out) == widths
        assert net.head_channels == 1280  # never width-scaled under ScaleNet's rules


def test_depth_copies_the_last_block_of_each_stage():
    arch = ScaleNetArch(SCALENET_S0_BASE, 1.36, 1.0, 224)
    net = SPACE.generate(arch)
    assert net.depths == (2, 2, 6, 3, 3, 5, 2)  # ceil(n * 1.36) for n = 1, 1, 4, 2, 2, 3, 1
    stage3 = [b for b in net.blocks if b.stage == 2]
    assert [(b.kernel, b.copy) for b in stage3] == [
        (7, False),
        (7, False),
        (5, False),
        (3, False),
        (3, True),
        (3, True),
    ]
    assert [b.stride for b in stage3] == [2, 1, 1, 1, 1, 1]
    assert all(b.in_channels == b.out_channels == 40 for b in stage3[1:])
    # Stage 1 (E1) copies keep expand 1: hidden = input, no expand conv.
    s1 = [b for b in net.blocks if b.stage == 0]
    assert [(b.in_channels, b.hidden, b.has_expand, b.residual) for b in s1] == [
        (32, 32, False, False),
        (16, 16, False, True),
    ]


def test_hidden_rules_differ_as_the_reference_says():
    # w = 1.04: the first stage-2 block (base c_in 16) gets 100 (base_then_scale: ceil(96 * 1.04) = 100)
    # vs 102 (scale_then_expand: ceil(16 * 1.04) * 6 = 17 * 6); a stage-6 copy (c_in 192): 1199 vs 1200.
    arch = ScaleNetArch(SCALENET_S0_BASE, 1.0, 1.04, 224)
    rules = {}
    for rule in ("base_then_scale", "scale_then_expand"):
        net = dataclasses.replace(SPACE, hidden_rule=rule).generate(arch)
        stage2 = next(b for b in net.blocks if b.stage == 1)
        stage6_later = [b for b in net.blocks if b.stage == 5][1]
        rules[rule] = (stage2.hidden, stage6_later.hidden)
    assert rules == {"base_then_scale": (100, 1199), "scale_then_expand": (102, 1200)}


def test_se_squeeze_options():
    arch = ScaleNetArch(SCALENET_S0_BASE, 1.0, 1.04, 224)
    hidden = dataclasses.replace(SPACE, se_squeeze="hidden").generate(arch).blocks[1]
    given = dataclasses.replace(SPACE, se_squeeze="input").generate(arch).blocks[1]
    assert (hidden.in_channels, hidden.hidden, hidden.squeeze) == (17, 100, 25)
    assert (given.in_channels, given.hidden, given.squeeze) == (17, 100, 4)


def test_spatial_rules():
    assert [SPACE.feature_size(s, 2) for s in (224, 19, 177)] == [112, 10, 89]
    floor = dataclasses.replace(SPACE, spatial="floor")
    assert [floor.feature_size(s, 2) for s in (224, 19, 177)] == [112, 9, 88]
    assert floor.feature_size(19, 1) == 19


def test_efficientnet_path_generation_rounds_every_width_to_8():
    space = dataclasses.replace(B0_SPACE, path_generation="efficientnet")
    net = space.generate(space.named("efficientnet_b3"))  # w 1.2, d 1.4, 300 px
    assert net.stem_channels == 40 and net.head_channels == 1536 and net.resolution == 300
    assert all(b.out_channels % 8 == 0 for b in net.blocks)
    assert net.depths == (2, 3, 3, 5, 5, 6, 2)


# === Presets ===


def test_released_presets_have_the_published_depths_and_resolutions():
    expected = {
        "scalenet_s0": ((1, 1, 4, 2, 2, 3, 1), 224),
        "scalenet_s1": ((2, 2, 5, 3, 3, 4, 2), 256),
        "scalenet_s2": ((2, 2, 6, 3, 3, 5, 2), 304),
        "scalenet_s3": ((2, 2, 6, 3, 3, 5, 2), 354),
        "scalenet_s4": ((2, 2, 7, 4, 4, 5, 2), 458),
        "scalenet_s5": ((2, 2, 8, 4, 4, 6, 2), 533),
    }
    for name, (depths, px) in expected.items():
        net = SPACE.generate(SPACE.named(name))
        assert (net.depths, net.resolution) == (depths, px), name
    b0_expected = {
        "efficientnet_s1": (2, 3, 3, 4, 4, 5, 2),
        "efficientnet_s2": (2, 3, 3, 5, 5, 6, 2),
        "efficientnet_s3": (2, 3, 3, 5, 5, 6, 2),
        "efficientnet_s4": (2, 4, 4, 5, 5, 7, 2),
        "efficientnet_s5": (2, 4, 4, 6, 6, 8, 2),
        "efficientnet_b0": (1, 2, 2, 3, 3, 4, 1),
    }
    for name, depths in b0_expected.items():
        assert B0_SPACE.generate(B0_SPACE.named(name)).depths == depths, name


def test_a_preset_is_refused_by_a_space_it_does_not_fit():
    with pytest.raises(
        ArchError, match=r"'efficientnet_b0' is defined on stage channels .*configs/scalenet.py:efficientnet_b0"
    ):
        SPACE.named("efficientnet_b0")
    with pytest.raises(ArchError, match=r"'scalenet_s1' is defined on stage channels .*:official"):
        B0_SPACE.named("scalenet_s1")
    with pytest.raises(ArchError, match="path_generation='efficientnet'"):
        B0_SPACE.named("efficientnet_b2")
    with pytest.raises(ArchError, match=r"Unknown named arch 'nope'. Expected largest, smallest or one of"):
        SPACE.named("nope")
    paper = ScaleNetSpace(choices="paper")
    assert paper.named("scalenet_s2").base == SCALENET_S0_BASE  # E6 + SE is in the paper's space too
    assert len(PRESETS) == 6 + 1 + 5 + 5


def test_stage_of_and_resolution_multipliers():
    assert SPACE.stage_of(SPACE.named("scalenet_s0")) == 0
    assert SPACE.stage_of(SPACE.named("scalenet_s1")) == 1
    assert SPACE.stage_of(SPACE.named("scalenet_s3")) == 3
    assert SPACE.stage_of(SPACE.named("scalenet_s4")) is None  # generalized: not a trained strategy
    assert SPACE.resolution_multiplier(288) == 1.285 and SPACE.resolution_multiplier(448) == 2.0
    assert SPACE.num_scaling_stages == 4


# === Encoding and validation ===


def test_json_round_trip_and_stable_hash():
    arch = SPACE.named("scalenet_s2")
    text = arch.to_json()
    data = json.loads(text)
    assert data["base"][2] == ["K7E6+SE", "K7E6+SE", "K5E6+SE", "K3E6+SE"]
    assert (data["depth"], data["width"], data["resolution"]) == (1.36, 1.2, 304)
    again = ScaleNetArch.from_json(text)
    assert again == arch and again.hash() == arch.hash()
    assert ScaleNetArch.from_dict({"base": data["base"]}) == ScaleNetArch(arch.base, 1.0, 1.0, 224)
    assert arch.hash() != SPACE.named("scalenet_s3").hash()
    assert ScaleNetArch.from_json(json.dumps(data, indent=3)).hash() == arch.hash()  # formatting-independent


@pytest.mark.parametrize(
    "data, message",
    [
        ([["K3E1+SE"]], r"A ScaleNet arch is an object"),
        ({"base": [[]] * 6}, r"'base' must be 7 lists of choice names"),
        ({"base": [["K3E1+SE"], ["K9X6"], [], [], [], [], []]}, r"stage 2 block 1 \(base\[1\]\[0\]\): a block choice"),
        ({"base": [[]] * 7, "depth": "1.2"}, r"'depth' must be a number. Received: depth='1.2'"),
        ({"base": [[]] * 7, "resolution": 224.5}, r"'resolution' is in pixels, an int"),
        ({"base": [[]] * 7, "stage": 1}, r"Unknown key\(s\) in a ScaleNet arch: \['stage'\]"),
        ({"format": "other", "base": []}, r"Unknown arch format"),
    ],
)
def test_malformed_json_is_refused_naming_the_field(data, message):
    with pytest.raises(ArchError, match=message):
        ScaleNetArch.from_dict(data)


def test_validation_names_the_stage_block_and_value():
    base = [list(stage) for stage in SCALENET_S0_BASE]
    base[3][1] = "K5E3+SE"
    with pytest.raises(ArchError, match=r"stage 4 block 2 \(base\[3\]\[1\]\) = 'K5E3\+SE': not a choice"):
        SPACE.validate(ScaleNetArch(tuple(map(tuple, base))))
    base = [list(stage) for stage in SCALENET_S0_BASE]
    base[2] = base[2] + ["K3E6+SE"]
    with pytest.raises(ArchError, match=r"stage 3 \(base\[2\]\) has 5 blocks; this space allows 1..4"):
        SPACE.validate(ScaleNetArch(tuple(map(tuple, base))))
    with pytest.raises(ArchError, match=r"stage 1 block 1 .*'K3E6\+SE': not a choice"):
        SPACE.validate(ScaleNetArch((("K3E6+SE",),) + SCALENET_S0_BASE[1:]))
    with pytest.raises(ArchError, match=r"depth=0.5: a multiplier must be in \[1, 16\]"):
        SPACE.validate(ScaleNetArch(SCALENET_S0_BASE, 0.5))
    with pytest.raises(ArchError, match=r"resolution=4"):
        SPACE.validate(ScaleNetArch(SCALENET_S0_BASE, 1.0, 1.0, 4))
    assert SPACE.is_valid(SPACE.named("scalenet_s5")) and not SPACE.is_valid("arch")


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(choices="nope"), r"`choices` must be one of \['official', 'paper'\]"),
        (dict(choices=("K4E6",)), r"needs an odd kernel"),
        (dict(choices=("X",)), r"`choices`: a block choice"),
        (dict(stage_channels=(16, 32)), r"`stage_channels` needs one entry per stage \(7\)"),
        (dict(stage_strides=(1, 3, 2, 2, 1, 2, 1)), r"`stage_strides` must be 1 or 2"),
        (dict(min_blocks=(1, 5, 1, 1, 1, 1, 1)), r"Stage 2: min_blocks 5 > max_blocks 4"),
        (dict(resolutions=((224,), (224, 240))), r"need one list per scaling stage each"),
        (dict(depth_multipliers=((0.5,), (1.04,), (1.2,), (1.4,))), r"`depth_multipliers` must be >= 1"),
        (dict(resolutions=((224.5,), (224,), (272,), (320,))), r"`resolutions` must be one non-empty list of pixel"),
        (dict(spatial="round"), r"`spatial` must be one of \('ceil', 'floor'\). Received: spatial='round'"),
        (dict(se_squeeze="output"), r"`se_squeeze` must be one of"),
        (dict(f0=-1), r"`f0` must be a positive number"),
    ],
)
def test_bad_space_fields_are_refused_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        ScaleNetSpace(**fields)


def test_custom_choice_lists():
    space = ScaleNetSpace(choices=("K3E3", "K5E6+SE"))
    assert space.stage_choices(1) == ("K3E3", "K5E6+SE")
    assert space.stage_choices(0) == ("K3E1", "K5E1+SE")
    assert len(ScaleNetSpace(choices="paper").stage_choices(3)) == 12
    assert len(ScaleNetSpace(choices="paper").stage_choices(0)) == 6


def test_largest_smallest_and_sampling_stay_in_the_space():
    largest, smallest = SPACE.largest(), SPACE.smallest()
    assert SPACE.generate(largest).depths == (2, 7, 7, 7, 7, 7, 2)  # the super-supernet's slots
    assert largest.resolution == 354 and largest.width == 1.64
    assert SPACE.generate(smallest).depths == (1,) * 7 and smallest.resolution == 224
    rng = np.random.default_rng(0)
    stages = [SPACE.stage_of(SPACE.sample(rng)) for _ in range(200)]
    assert set(stages) == {0, 1, 2, 3}
    for _ in range(50):
        arch = SPACE.sample(rng, stage=2)
        assert SPACE.stage_of(arch) == 2 and SPACE.is_valid(arch)


def test_vector_round_trip():
    rng = np.random.default_rng(2)
    paper = ScaleNetSpace(choices="paper")
    for space in (SPACE, paper):
        assert space.vector_size == 7 + 22 + 3
        for _ in range(30):
            arch = space.sample(rng)
            vector = space.to_vector(arch)
            assert vector.dtype == np.int32 and space.from_vector(vector) == arch
    assert SPACE.choice_names == ("K3E1+SE", "K5E1+SE", "K7E1+SE", "K3E6+SE", "K5E6+SE", "K7E6+SE")
    assert len(SPACE.depth_values) == 1 + 4 + 5 + 7 and SPACE.resolution_values[-1] == 354
    with pytest.raises(ArchError, match=r"depth=1.653 is not in the space's scaling-stage lists"):
        SPACE.to_vector(SPACE.named("scalenet_s4"))
    vector = SPACE.to_vector(SPACE.named("scalenet_s1"))
    bad = vector.copy()
    bad[2] = 5
    with pytest.raises(ArchError, match=r"entry 2 \(blocks of stage 3\) = 5; this space allows 1..4"):
        SPACE.from_vector(bad)
    bad = vector.copy()
    bad[-1] = 99
    with pytest.raises(ArchError, match=r"the resolution index must be in \[0, 9\). Received: 99"):
        SPACE.from_vector(bad)
    bad = vector.copy()
    bad[7] = 4  # stage 1's slot given a stage-2..7 choice (K5E6+SE)
    with pytest.raises(ArchError, match=r"stage 1 block 1 .*'K5E6\+SE': not a choice"):
        SPACE.from_vector(bad)
    with pytest.raises(ArchError, match="must have 32 entries"):
        SPACE.from_vector(vector[:-1])
