"""SCARLET extraction: the static Keras subnet computes what the supernet computes, ELS convs folded.

Every comparison is eager float32: `supernet(x, arch=arch, training=False)` against `model(x)` on
random images, max abs diff <= 1e-5 (outputs are O(1)). Before comparing, every BN layer gets random
gamma, beta, moving mean and moving variance, and every ELS kernel is perturbed away from its
initializer, so that a fold that drops a BN term or composes maps in the wrong order cannot hide.

Spaces (small widths, so the 19-layer supernets build in seconds):
- `SMALL`: the 19-layer skeleton (the presets' stride and width pattern) at widths 8..64, 32x32 input;
  S2 with ELS, S1 with ELS, and S2 with plain skips (the ablation).
- `TINY`: four layers under the default identity rule, whose first layer keeps width and stride
  (identity there folds backward into the stem's separable conv) and whose last keeps them too
  (identity there folds forward into the head).
- `EVERYWHERE`: seven layers with `identity_everywhere=True`: strided identities (max pooling
  first) and a width-changing identity, folded or kept.

For each case: parity, the report equals `fold_plan`, only standard Keras layers, no ELS conv left
unless the plan keeps it, and `scarlet_cost.count(..., as_extracted=True)` equals `count_params()`.
"""

import fnmatch

import keras
import numpy as np
import pytest
import tensorflow as tf

from scalenas_tf.arch import ArchError
from scalenas_tf.families.scarlet import cost as scarlet_cost
from scalenas_tf.families.scarlet.choice_layer import ChoiceLayer
from scalenas_tf.families.scarlet.mobile_block import MobileBlock
from scalenas_tf.families.scarlet.space import IDENTITY
from scalenas_tf.families.scarlet.space import ScarletArch
from scalenas_tf.families.scarlet.space import ScarletSpace
from scalenas_tf.families.scarlet.space import fold_plan
from scalenas_tf.families.scarlet.stabilizer import Stabilizer
from scalenas_tf.families.scarlet.subnet import extract_scarlet_subnet
from scalenas_tf.families.scarlet.supernet import ScarletSupernet
from tests.helpers import assert_group_call_is_the_chosen_ops_call
from tests.helpers import randomize_batch_norm

NUM_CLASSES = 10
ATOL = 1e-5

CHANNELS = (8, 8, 16, 16, 16, 16, 24, 24, 24, 24, 32, 32, 32, 32, 48, 48, 48, 48, 64)
SMALL = dict(channels=CHANNELS, stem_channels=8, first_channels=8, head_channels=128)
SMALL_SIZE = (32, 32)

# l0 8->8 s1 (residual), l1 8->8 s1 (residual), l2 8->16 s2, l3 16->16 s1 (residual).
TINY = dict(
    variant="s1",
    channels=(8, 8, 16, 16),
    strides=(1, 1, 2, 1),
    stem_channels=8,
    first_channels=8,
    head_channels=24,
)
TINY_SIZE = (16, 16)

# l0 8->8 s1 (res), l1 8->16 s2, l2 16->16 s1 (res), l3 16->16 s1 (res), l4 16->24 s2,
# l5 24->32 s1 (width change, no residual), l6 32->32 s1 (res). Odd, non-square input: the max
# poolings and strided convs see odd sizes (15x13 after the stem).
EVERYWHERE = dict(
    variant="s1",
    channels=(8, 16, 16, 16, 24, 32, 32),
    strides=(1, 2, 1, 1, 2, 1, 1),
    stem_channels=8,
    first_channels=8,
    head_channels=24,
    identity_everywhere=True,
)
EVERYWHERE_SIZE = (30, 26)

PARITY = {}  # case -> max abs diff, printed by test_print_parity_figures (pytest -s)


# === Helpers ===

_NETS = {}


def supernet(**fields):
    """A built ScarletSupernet over `ScarletSpace(**fields)` with randomized BN and ELS weights (cached)."""
    key = tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in fields.items()))
    if key not in _NETS:
        keras.utils.set_random_seed(0)
        net = ScarletSupernet(ScarletSpace(**fields), num_classes=NUM_CLASSES)
        net.build((None, None, None, 3))
        randomize_batch_norm(net, seed=1)
        rng = np.random.default_rng(2)
        for layer in net._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, Stabilizer):
                kernel = layer.conv.kernel
                kernel.assign(kernel.numpy() + rng.normal(0, 0.2, kernel.shape).astype("float32"))
        _NETS[key] = net
    return _NETS[key]


def images(size, seed=0):
    return np.random.default_rng(seed).normal(size=(2, *size, 3)).astype("float32")


def els_conv_names(model):
    return [layer.name for layer in model.layers if fnmatch.fnmatch(layer.name, "*_els*conv*")]


def check_extraction(net, arch, size, case):
    """Extracts `arch` and checks parity, report, layer classes, ELS convs and the as-extracted count.

    Returns `(model, report)`.
    """
    space = net.space
    model, report = extract_scarlet_subnet(net, arch, input_size=size)
    x = images(size, seed=len(PARITY))
    want = net(x, arch=arch, training=False).numpy()
    got = model(x).numpy()
    assert got.shape == want.shape == (2, NUM_CLASSES)
    assert np.abs(want).max() > 0.05, "outputs too small for the comparison to mean anything"
    diff = float(np.abs(got - want).max())
    PARITY[case] = diff
    assert diff <= ATOL, f"{case}: max abs diff {diff:.3g}"

    assert report == [fold.to_dict() for fold in fold_plan(space, arch)]
    for layer in model.layers:
        module = type(layer).__module__
        assert module.startswith("keras.") and "scalenas" not in module, f"{layer.name}: {type(layer)}"

    kept = [fold for fold in report if fold["action"] == "kept"]
    assert sorted(els_conv_names(model)) == sorted(f"l{fold['layers'][0]:02d}_els_conv" for fold in kept)
    for fold in kept:
        assert fold["reason"], fold
        conv = model.get_layer(f"l{fold['layers'][0]:02d}_els_conv")
        assert type(conv) is keras.layers.Conv2D
        assert conv.kernel.shape == (1, 1, fold["in_channels"], fold["out_channels"])

    counted = scarlet_cost.count(space, arch, NUM_CLASSES, size, as_extracted=True)
    assert counted.params_with_bn_statistics == model.count_params()
    return model, report


def summary(report):
    return [(tuple(f["layers"]), f["pool"], f["action"], f["target"]) for f in report]


def identity_heavy(space, rng, p_identity=0.5):
    """A random arch with identity at each allowed layer w.p. `p_identity`, else a random block."""
    blocks = [b.name for b in space.block_choices]
    return ScarletArch(
        tuple(
            IDENTITY if space.identity_allowed(i) and rng.random() < p_identity else blocks[rng.integers(len(blocks))]
            for i in range(space.num_layers)
        )
    )


# === The 19-layer skeleton ===


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_paths_s2(seed):
    net = supernet(**SMALL)
    rng = np.random.default_rng(seed)
    check_extraction(net, net.space.sample(rng), SMALL_SIZE, f"s2 random seed {seed}")
    check_extraction(net, identity_heavy(net.space, rng), SMALL_SIZE, f"s2 identity-heavy seed {seed}")


@pytest.mark.parametrize("seed", [0, 1])
def test_random_paths_s1(seed):
    net = supernet(variant="s1", **SMALL)
    rng = np.random.default_rng(100 + seed)
    check_extraction(net, net.space.sample(rng), SMALL_SIZE, f"s1 random seed {seed}")
    check_extraction(net, identity_heavy(net.space, rng), SMALL_SIZE, f"s1 identity-heavy seed {seed}")


def test_scarlet_a_has_no_folds():
    net = supernet(**SMALL)
    model, report = check_extraction(net, net.space.named("scarlet_a"), SMALL_SIZE, "scarlet_a")
    assert report == []


def test_scarlet_b_keeps_els_between_residual_blocks():
    """Identities at layers 8 and 16 sit between two residual blocks: neither direction is exact."""
    net = supernet(**SMALL)
    model, report = check_extraction(net, net.space.named("scarlet_b"), SMALL_SIZE, "scarlet_b (kept)")
    assert summary(report) == [((8,), False, "kept", None), ((16,), False, "kept", None)]
    for fold, layer in zip(report, (8, 16)):
        assert (
            fold["reason"] == f"forward: layer {layer + 1} adds a residual; backward: layer {layer - 1} adds a residual"
        )
        conv = model.get_layer(f"l{layer:02d}_els_conv")
        assert isinstance(conv, keras.layers.Conv2D)
        # The kept conv is the ELS conv itself (one layer, nothing composed).
        np.testing.assert_array_equal(conv.kernel.numpy(), net.choice_layers[layer].op(IDENTITY).conv.kernel.numpy())


def test_scarlet_c_folds_backward():
    """C: identities (3, 4) composed and folded into block 2's projection; 15 into block 14's."""
    net = supernet(**SMALL)
    _, report = check_extraction(net, net.space.named("scarlet_c"), SMALL_SIZE, "scarlet_c (backward, chain)")
    assert summary(report) == [((3, 4), False, "backward", 2), ((15,), False, "backward", 14)]


def test_largest():
    net = supernet(**SMALL)
    _, report = check_extraction(net, net.space.largest(), SMALL_SIZE, "largest")
    assert report == []


def test_smallest_folds_identity_chains_forward():
    """Identity wherever allowed: runs of 1 and 3 composed and folded into the next block's expand conv."""
    net = supernet(**SMALL)
    _, report = check_extraction(net, net.space.smallest(), SMALL_SIZE, "smallest (forward, chains)")
    assert summary(report) == [
        ((1,), False, "forward", 2),
        ((3, 4, 5), False, "forward", 6),
        ((7, 8, 9), False, "forward", 10),
        ((11, 12, 13), False, "forward", 14),
        ((15, 16, 17), False, "forward", 18),
    ]


def test_mixed_identities_fold_every_way():
    """Single identities in several places: forward, backward (block 2 gets both), and kept."""
    net = supernet(**SMALL)
    choices = ["K5E3+SE"] * net.space.num_layers
    for i in (1, 3, 9, 12, 15):
        choices[i] = IDENTITY
    _, report = check_extraction(net, ScarletArch(tuple(choices)), SMALL_SIZE, "mixed identities (all actions)")
    assert summary(report) == [
        ((1,), False, "forward", 2),  # block 2 (strided) reads it through its expand conv
        ((3,), False, "backward", 2),  # ... and writes it through its projection
        ((9,), False, "forward", 10),
        ((12,), False, "kept", None),  # between residual blocks 11 and 13
        ((15,), False, "backward", 14),
    ]


# === Plain skip (the ablation) ===


@pytest.mark.parametrize("name", ["scarlet_a", "scarlet_b", "scarlet_c", "smallest", "random"])
def test_plain_skip_parity_and_papers_count(name):
    net = supernet(identity_op="skip", **SMALL)
    space = net.space
    arch = space.sample(np.random.default_rng(5)) if name == "random" else space.named(name)
    model, report = check_extraction(net, arch, SMALL_SIZE, f"skip {name}")
    assert report == []
    assert not any("_els" in layer.name for layer in model.layers)
    papers = scarlet_cost.count(space, arch, NUM_CLASSES, SMALL_SIZE)
    extracted = scarlet_cost.count(space, arch, NUM_CLASSES, SMALL_SIZE, as_extracted=True)
    assert (extracted.params, extracted.macs, extracted.bn_channels) == (papers.params, papers.macs, papers.bn_channels)
    assert papers.params_with_bn_statistics == model.count_params()


def test_as_extracted_count_adds_exactly_the_kept_convs():
    """ELS, default rule: the extracted count is the papers' count plus C_in x C_out per kept conv."""
    space = ScarletSpace(**SMALL)
    rng = np.random.default_rng(9)
    archs = [space.named(n) for n in ("scarlet_a", "scarlet_b", "scarlet_c", "largest", "smallest")]
    archs += [identity_heavy(space, rng) for _ in range(20)]
    for arch in archs:
        papers = scarlet_cost.count(space, arch, NUM_CLASSES, SMALL_SIZE)
        extracted = scarlet_cost.count(space, arch, NUM_CLASSES, SMALL_SIZE, as_extracted=True)
        kept = [f for f in fold_plan(space, arch) if f.action == "kept"]
        assert extracted.params - papers.params == sum(f.in_channels * f.out_channels for f in kept)
        assert extracted.bn_channels == papers.bn_channels


# === Default identity rule, tiny space: the stem and the head ===

TINY_CASES = {
    # identity at layer 0 before a residual block: backward into the separable conv's pointwise conv + BN
    "backward into stem": (("id", "K3E3", "K5E6", "K7E3"), [((0,), False, "backward", "stem")]),
    # identity in the last layer: forward into the head's 1x1 conv
    "forward into head": (("K3E3", "K5E3", "K3E6", "id"), [((3,), False, "forward", "head")]),
    # both at once
    "stem and head": (
        ("id", "K7E6", "K5E6", "id"),
        [((0,), False, "backward", "stem"), ((3,), False, "forward", "head")],
    ),
    # two identities composed, forward into the strided block
    "chain forward into block": (("id", "id", "K3E3", "K5E6"), [((0, 1), False, "forward", 2)]),
    # identity before the strided (non-residual) block: forward into its expand conv
    "forward into block": (("K5E3", "id", "K7E3", "K3E3"), [((1,), False, "forward", 2)]),
}


@pytest.mark.parametrize("case", sorted(TINY_CASES))
def test_tiny_space_folds(case):
    net = supernet(**TINY)
    choices, expected = TINY_CASES[case]
    model, report = check_extraction(net, ScarletArch(choices), TINY_SIZE, f"tiny: {case}")
    assert summary(report) == expected
    assert els_conv_names(model) == []


def test_backward_into_stem_rewrites_the_pointwise_conv_and_bn():
    """The stem fold replaces sep_pw/sep_pw_bn weights: BN becomes gamma 1, mean 0, var 1 - eps."""
    net = supernet(**TINY)
    model, _ = extract_scarlet_subnet(net, ScarletArch(TINY_CASES["backward into stem"][0]), TINY_SIZE)
    bn = model.get_layer("sep_pw_bn")
    np.testing.assert_array_equal(bn.gamma.numpy(), np.ones(8, "float32"))
    np.testing.assert_array_equal(bn.moving_mean.numpy(), np.zeros(8, "float32"))
    np.testing.assert_allclose(bn.moving_variance.numpy(), 1.0 - bn.epsilon)
    assert not np.allclose(model.get_layer("sep_pw").kernel.numpy(), net.sep_pw.kernel.numpy())


# === identity_everywhere: strided and width-changing identities ===

EVERYWHERE_CASES = {
    # strided identity before a residual block: max pooling forbids backward, residual forbids forward
    "strided kept; strided forward": (
        ("K3E3", "id", "K5E3", "K3E3", "id", "K3E6", "K7E3"),
        [((1,), True, "kept", None), ((4,), True, "forward", 5)],
    ),
    # width change 24 -> 32 composed with a same-width identity, into the head
    "width change forward into head": (
        ("K3E3", "K3E3", "K3E3", "K3E3", "K3E6", "id", "id"),
        [((5, 6), False, "forward", "head")],
    ),
    # width change before a residual block: backward into the strided block's projection
    "width change backward": (
        ("K3E3", "K5E6", "K3E3", "K3E3", "K3E6", "id", "K5E3"),
        [((5,), False, "backward", 4)],
    ),
    # strided and width-changing identities composed before a residual block: kept, pooling first
    "strided + width change kept": (
        ("K3E3", "K5E3", "K3E3", "K3E3", "id", "id", "K5E3"),
        [((4, 5), True, "kept", None)],
    ),
    # block 4 receives a forward fold (expand conv) and a backward fold (projection)
    "forward and backward into one block": (
        ("K3E3", "K7E6", "K3E3", "id", "K3E6", "id", "K3E3"),
        [((3,), False, "forward", 4), ((5,), False, "backward", 4)],
    ),
    # the next layer is a strided identity, the previous a residual block: kept; then pooling forward
    "kept before a strided identity": (
        ("K3E3", "K3E3", "K5E3", "id", "id", "K3E3", "K3E3"),
        [((3,), False, "kept", None), ((4,), True, "forward", 5)],
    ),
    # identity at 0 before a strided identity: backward into the stem; the pooled run is kept
    "backward into stem; strided kept": (
        ("id", "id", "K3E3", "K3E3", "K3E3", "K3E3", "K3E3"),
        [((0,), False, "backward", "stem"), ((1,), True, "kept", None)],
    ),
    # identity everywhere: stem backward, a pooled chain kept, a pooled width-changing chain into the head
    "all identity": (
        ("id",) * 7,
        [((0,), False, "backward", "stem"), ((1, 2, 3), True, "kept", None), ((4, 5, 6), True, "forward", "head")],
    ),
}


@pytest.mark.parametrize("case", sorted(EVERYWHERE_CASES))
def test_identity_everywhere_folds(case):
    net = supernet(**EVERYWHERE)
    choices, expected = EVERYWHERE_CASES[case]
    model, report = check_extraction(net, ScarletArch(choices), EVERYWHERE_SIZE, f"everywhere: {case}")
    assert summary(report) == expected
    pools = sorted(layer.name for layer in model.layers if layer.name.endswith("_els_pool"))
    assert pools == sorted(f"l{f['layers'][0]:02d}_els_pool" for f in report if f["pool"])
    for layer in pools:
        assert type(model.get_layer(layer)) is keras.layers.MaxPooling2D


def test_kept_reasons():
    space = ScarletSpace(**EVERYWHERE)
    reasons = {
        case: [f.reason for f in fold_plan(space, ScarletArch(choices)) if f.action == "kept"]
        for case, (choices, _) in EVERYWHERE_CASES.items()
    }
    assert reasons["strided kept; strided forward"] == [
        "forward: layer 2 adds a residual; backward: a max pooling precedes the map"
    ]
    assert reasons["kept before a strided identity"] == [
        "forward: layer 4 is a strided identity (max pooling first); backward: layer 2 adds a residual"
    ]
    assert reasons["all identity"] == [
        "forward: layer 4 is a strided identity (max pooling first); backward: a max pooling precedes the map"
    ]


def test_random_identity_everywhere_paths():
    net = supernet(**EVERYWHERE)
    rng = np.random.default_rng(3)
    for k in range(4):
        check_extraction(net, identity_heavy(net.space, rng), EVERYWHERE_SIZE, f"everywhere random {k}")


def test_one_traced_supernet_matches_each_extracted_model():
    """The compiled supernet (one trace for every arch) agrees with the static models; 1e-4 because
    grappler fuses and reorders float sums in the graph."""
    net = supernet(**EVERYWHERE)
    forward = tf.function(lambda x, vector: net(x, arch=vector, training=False))
    x = tf.constant(images(EVERYWHERE_SIZE, seed=42))
    for choices, _ in EVERYWHERE_CASES.values():
        arch = ScarletArch(choices)
        model, _ = extract_scarlet_subnet(net, arch, EVERYWHERE_SIZE)
        want = forward(x, tf.constant(net.space.to_vector(arch))).numpy()
        np.testing.assert_allclose(model(x).numpy(), want, atol=1e-4, rtol=0)
    assert forward.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("strides", [1, 2])
def test_a_layers_kernel_choices_run_as_one_computation_with_the_chosen_blocks_arithmetic(strides):
    """A group call (one computation on the chosen block's gathered weights, the depthwise conv switched by
    kernel size) equals calling the chosen block alone bit for bit: output, every gradient, and the BN
    statistics (the chosen block's moved, the others' untouched)."""
    x = tf.constant(images((9, 9), seed=5)[..., :1].repeat(8, axis=-1) * np.arange(1, 9, dtype="float32"))

    def blocks():
        return [MobileBlock(8, 8, k, 3, True, strides, name=f"b{k}") for k in (3, 5, 7)]

    assert_group_call_is_the_chosen_ops_call(blocks, x)


def test_a_layers_choices_are_grouped_by_expand_ratio_and_se():
    space = ScarletSpace()
    layer = ChoiceLayer(16, 16, 1, space.choice_names, range(len(space.choice_names)), name="layer")
    names = [[layer.choices[c] for c in members] for members in layer.groups]
    assert len(layer.choices) == 13 and len(names) == 5
    assert sorted(len(n) for n in names) == [1, 3, 3, 3, 3]
    for members in names:
        assert len({n.replace("K3", "K").replace("K5", "K").replace("K7", "K") for n in members}) == 1, members


def test_extraction_copies_weights_instead_of_sharing():
    net = supernet(**TINY)
    arch = ScarletArch(TINY_CASES["stem and head"][0])
    model, _ = extract_scarlet_subnet(net, arch, TINY_SIZE)
    x = images(TINY_SIZE, seed=7)
    before = model(x).numpy()
    kernel = net.choice_layers[1].op("K7E6").expand_conv.kernel
    kernel.assign(kernel + 1.0)
    try:
        np.testing.assert_array_equal(model(x).numpy(), before)
    finally:
        kernel.assign(kernel - 1.0)


# === Validation ===


def test_validate_names_the_layer():
    space = ScarletSpace()
    choices = list(space.named("scarlet_a").choices)

    def arch_with(layer, name):
        c = list(choices)
        c[layer] = name
        return ScarletArch(tuple(c))

    with pytest.raises(ArchError, match=r"choices\[2\]='id'.*layer 2: 32->40, stride 2"):
        space.validate(arch_with(2, IDENTITY))
    with pytest.raises(ArchError, match=r"choices\[10\]='id'.*layer 10: 80->96, stride 1.*identity_everywhere"):
        space.validate(arch_with(10, IDENTITY))
    with pytest.raises(ArchError, match=r"choices\[5\]='K9E3': not a choice of this s2 space"):
        space.validate(arch_with(5, "K9E3"))
    s1 = ScarletSpace(variant="s1")
    se = list(s1.named("all_K3E3").choices)
    se[7] = "K3E3+SE"
    with pytest.raises(ArchError, match=r"choices\[7\]='K3E3\+SE': not a choice of this s1 space"):
        s1.validate(ScarletArch(tuple(se)))
    with pytest.raises(ArchError, match=r"choices\[4\]='conv3x3'.*K<kernel>E<expand>"):
        space.validate(arch_with(4, "conv3x3"))
    with pytest.raises(ArchError, match="19 choices"):
        space.validate(ScarletArch(tuple(choices[:-1])))
    # identity_everywhere accepts the strided and width-changing identities
    ScarletSpace(identity_everywhere=True).validate(arch_with(2, IDENTITY))


def test_extract_and_call_reject_an_arch_outside_the_space():
    net = supernet(**TINY)
    bad = ScarletArch(("K3E3", "K3E3", "id", "K3E3"))  # identity at the stride-2 layer
    with pytest.raises(ArchError, match=r"choices\[2\]='id'.*stride 2"):
        extract_scarlet_subnet(net, bad, TINY_SIZE)
    with pytest.raises(ArchError, match=r"choices\[2\]='id'"):
        net(images(TINY_SIZE), arch=bad, training=False)
    with pytest.raises(ArchError, match=r"choices\[1\]='K3E3\+SE'"):
        extract_scarlet_subnet(net, ScarletArch(("K3E3", "K3E3+SE", "K3E3", "K3E3")), TINY_SIZE)
    with pytest.raises(ValueError, match="input_size"):
        extract_scarlet_subnet(net, ScarletArch(("K3E3",) * 4), (16,))


def test_print_parity_figures():
    """Runs last in this file: prints every case's max abs diff (see them with `pytest -s`)."""
    if not PARITY:  # run on its own (e.g. with -k): measure one case so the bound is still checked
        test_scarlet_c_folds_backward()
    width = max(len(k) for k in PARITY)
    for case, diff in PARITY.items():
        print(f"{case:<{width}}  {diff:.3g}")
    assert max(PARITY.values()) <= ATOL
