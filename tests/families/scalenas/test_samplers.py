"""In-graph arch samplers: canonical vectors, (seed, step) determinism, grouped and fusion statistics.

Pure sampler tests (no model is built), so they are cheap: each sampler is traced once into a
`tf.function` and called for hundreds of steps.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from scalenas_tf.families.scalenas.samplers import GROUP_FUSION_PROBS
from scalenas_tf.families.scalenas.samplers import LARGEST_FUSION_PROB
from scalenas_tf.families.scalenas.samplers import SMALLEST_FUSION_PROB
from scalenas_tf.families.scalenas.samplers import FusionSampler
from scalenas_tf.families.scalenas.samplers import GroupedSampler
from scalenas_tf.families.scalenas.samplers import UniformSampler
from scalenas_tf.families.scalenas.space import ScaleNASSpace
from scalenas_tf.training.sampler import FixedSampler
from scalenas_tf.training.sampler import SandwichSampler
from scalenas_tf.training.sampler import make_sampler

MULTI = ScaleNASSpace(width=8, num_modules=(1, 2, 1))
POSE = ScaleNASSpace(width=8, num_modules=(1, 1, 2), multi_scale_output=False)
SPACES = {"multi_scale": MULTI, "pose": POSE}

SAMPLERS = {
    "uniform": lambda space, seed=0: UniformSampler(space, seed=seed),
    "fusion": lambda space, seed=0: FusionSampler(space, seed=seed, fusion_prob=0.3),
    "grouped": lambda space, seed=0: GroupedSampler(space, seed=seed),
    "grouped_no_sandwich": lambda space, seed=0: GroupedSampler(space, seed=seed, sandwich=False),
    "sandwich": lambda space, seed=0: SandwichSampler(space, seed=seed, num_random=2),
    "fixed": lambda space, seed=0: FixedSampler(space, space.hrnet(3), seed=seed),
}
RANDOM_SAMPLERS = [name for name in SAMPLERS if name != "fixed"]


# === Helpers ===


def run_steps(sampler, steps):
    """`(vectors (n, num_subnets, size), info)` for `steps`, from one traced `tf.function`."""
    fn = tf.function(sampler)
    vectors, infos = [], []
    for step in steps:
        v, info = fn(tf.constant(step, tf.int64))
        vectors.append(v.numpy())
        infos.append({k: x.numpy() for k, x in info.items()})
    assert fn.experimental_get_tracing_count() == 1
    return np.stack(vectors), {k: np.stack([i[k] for i in infos]) for k in infos[0]}


def cross_bit_stats(space, archs, skip_pose_last_step=True):
    """(bits on, bits counted) over the cross bits at steps `s < depths[j]` of every module.

    In a pose space the last step of the last module is fixed by the single-output rule, not drawn,
    so it is left out.
    """
    on = total = 0
    last = space.num_total_modules - 1
    for arch in archs:
        for m, module in enumerate(arch.modules):
            b = module.num_branches
            for j in range(b):
                for s in range(module.depths[j]):
                    if skip_pose_last_step and not space.multi_scale_output and m == last and s == module.depths[j] - 1:
                        continue
                    for k in range(b):
                        if k != j:
                            on += module.fusion[j][s][k]
                            total += 1
    return on, total


def all_depths(archs):
    return np.array([d for arch in archs for module in arch.modules for d in module.depths])


def tolerance(p, n):
    """Five standard deviations of the mean of `n` independent Bernoulli(p) bits.

    The bits are independent given the depths (one stateless uniform each), so the observed density
    lies within this of p unless the sampler's probability is wrong; the seeds are fixed, so the test
    is deterministic, and the bound keeps it meaningful (a density off by 0.05 fails for n >= 2500).
    """
    return 5.0 * math.sqrt(p * (1.0 - p) / n)


# === Validity and determinism ===


@pytest.mark.parametrize("space_name", sorted(SPACES))
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_vector_is_canonical(name, space_name):
    space = SPACES[space_name]
    sampler = SAMPLERS[name](space)
    vectors, info = run_steps(sampler, range(60))
    assert vectors.shape == (60, sampler.num_subnets, space.vector_size)
    assert vectors.dtype == np.int32
    assert info["group"].shape == (60, sampler.num_subnets)
    for vector in vectors.reshape(-1, space.vector_size):
        space.from_vector(vector)  # validates each
    if not space.multi_scale_output:
        # Single output: at each target's last step of the last module, target 0 reads every
        # branch and the others only themselves. (SandwichSampler's second subnet is
        # `space.smallest()`, which does not follow the rule: see
        # test_pose_smallest_follows_single_output_rule.)
        checked = vectors if name != "sandwich" else np.delete(vectors, 1, axis=1)
        for arch in [space.from_vector(v) for v in checked.reshape(-1, space.vector_size)]:
            last = arch.modules[-1]
            for j, d in enumerate(last.depths):
                expected = [1] * last.num_branches if j == 0 else [int(k == j) for k in range(last.num_branches)]
                assert list(last.fusion[j][d - 1]) == expected
    if name in RANDOM_SAMPLERS:
        assert len({v.tobytes() for v in vectors.reshape(-1, space.vector_size)}) > 20


@pytest.mark.parametrize("name", RANDOM_SAMPLERS)
def test_same_seed_and_step_same_vectors_eager_and_graph(name):
    space = MULTI
    eager = SAMPLERS[name](space, seed=7)
    other = SAMPLERS[name](space, seed=7)
    graph = tf.function(other)
    for step in (0, 1, 5, 12, 1000):
        a, info_a = eager(tf.constant(step, tf.int64))
        b, info_b = graph(tf.constant(step, tf.int64))
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(info_a["group"].numpy(), info_b["group"].numpy())
        np.testing.assert_array_equal(info_a["fusion_prob"].numpy(), info_b["fusion_prob"].numpy())
        # An int32 step (e.g. a step counter of another dtype) gives the same draw.
        c, _ = eager(tf.constant(step, tf.int32))
        np.testing.assert_array_equal(a.numpy(), c.numpy())
    assert graph.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("name", RANDOM_SAMPLERS)
def test_different_seed_or_step_different_vectors(name):
    space = MULTI
    a = SAMPLERS[name](space, seed=0)
    b = SAMPLERS[name](space, seed=1)
    # GroupedSampler's group depends on the step only, so compare at the same group (step and
    # step + num_groups) for the step change, and at the same step for the seed change.
    period = getattr(a, "num_groups", 1)
    for step in (0, 4, 9):  # not 10: GroupedSampler's group 10 is always the largest arch
        same = a(step)[0].numpy()
        assert not np.array_equal(same, b(step)[0].numpy()), f"seed change, step {step}"
        assert not np.array_equal(same, a(step + period)[0].numpy()), f"step change, step {step}"


def test_sample_numpy_matches_call():
    s = GroupedSampler(MULTI, seed=3)
    vectors, info = s.sample_numpy([4, 9])
    assert vectors.shape == (2, 1, MULTI.vector_size)
    np.testing.assert_array_equal(vectors[1], s(9)[0].numpy())
    np.testing.assert_array_equal(info["group"][:, 0], [4, 9])


def test_fixed_sampler_ignores_seed_and_step():
    arch = MULTI.hrnet(3)
    vectors, info = run_steps(FixedSampler(MULTI, arch, seed=5), range(5))
    for v in vectors[:, 0]:
        assert MULTI.from_vector(v) == arch
    np.testing.assert_array_equal(info["group"], -1)


# === GroupedSampler ===


@pytest.mark.parametrize("sandwich, num_groups", [(True, 11), (False, 9)])
def test_grouped_group_cycles_with_step(sandwich, num_groups):
    s = GroupedSampler(MULTI, sandwich=sandwich)
    assert s.num_groups == num_groups
    steps = list(range(0, 3 * num_groups + 4)) + [12345]
    _, info = run_steps(s, steps)
    np.testing.assert_array_equal(info["group"][:, 0], np.array(steps) % num_groups)


@pytest.fixture(scope="module")
def grouped_draws():
    """80 draws of each of the 11 groups (880 steps) from the multi-scale space."""
    s = GroupedSampler(MULTI, seed=11)
    vectors, info = run_steps(s, range(11 * 80))
    archs = [MULTI.from_vector(v) for v in vectors[:, 0]]
    return s, archs, info


def test_grouped_depths_and_fusion_density_per_group(grouped_draws):
    s, archs, info = grouped_draws
    choices = MULTI.depth_choices  # (2, 3, 4, 5)
    groups = info["group"][:, 0]
    expected = []
    for d, pair in enumerate([choices[i : i + 2] for i in range(len(choices) - 1)]):
        for p in GROUP_FUSION_PROBS:
            expected.append((set(pair), p))
    expected += [({choices[0]}, SMALLEST_FUSION_PROB), ({choices[-1]}, LARGEST_FUSION_PROB)]
    assert len(expected) == 11
    for g, (depth_set, p) in enumerate(expected):
        chosen = [a for a, gg in zip(archs, groups) if gg == g]
        assert len(chosen) == 80
        np.testing.assert_allclose(info["fusion_prob"][groups == g], p)
        depths = all_depths(chosen)
        assert set(depths.tolist()) == depth_set, f"group {g}"  # within the pair, and both occur
        on, total = cross_bit_stats(MULTI, chosen)
        density = on / total
        assert total >= 2500, total
        if p == 1.0:
            assert on == total
        else:
            assert abs(density - p) <= tolerance(p, total), f"group {g}: density {density:.4f} vs p={p}"


def test_grouped_largest_group_is_the_largest_arch(grouped_draws):
    _, archs, info = grouped_draws
    largest = [a for a, g in zip(archs, info["group"][:, 0]) if g == 10]
    assert largest and all(a == MULTI.largest() for a in largest)


def test_grouped_largest_group_pose_space():
    s = GroupedSampler(POSE, seed=2)
    vectors, _ = run_steps(s, [10, 21, 32])
    for v in vectors[:, 0]:
        assert POSE.from_vector(v) == POSE.largest()


def test_grouped_smallest_group_depth_and_sparse_fusion(grouped_draws):
    _, archs, info = grouped_draws
    smallest = [a for a, g in zip(archs, info["group"][:, 0]) if g == 9]
    assert set(all_depths(smallest).tolist()) == {MULTI.depth_choices[0]}
    on, total = cross_bit_stats(MULTI, smallest)
    assert abs(on / total - 0.1) <= tolerance(0.1, total)


def test_grouped_with_two_depth_choices():
    space = ScaleNASSpace(width=4, depth_choices=(1, 2), num_modules=(1,), num_branches=(2,))
    s = GroupedSampler(space)
    assert s.num_groups == 5  # one depth group {1, 2} x 3 probabilities + smallest + largest
    vectors, info = run_steps(s, range(5 * 40))
    archs = [space.from_vector(v) for v in vectors[:, 0]]
    groups = info["group"][:, 0]
    assert set(all_depths([a for a, g in zip(archs, groups) if g < 3]).tolist()) == {1, 2}
    assert all(a == space.smallest() or a.modules[0].depths == (1, 1) for a, g in zip(archs, groups) if g == 3)
    assert all(a == space.largest() for a, g in zip(archs, groups) if g == 4)


# === FusionSampler and UniformSampler ===


@pytest.mark.parametrize("p", [0.0, 0.3, 0.7, 1.0])
def test_fusion_sampler_density(p):
    s = FusionSampler(MULTI, seed=4, fusion_prob=p)
    vectors, info = run_steps(s, range(150))
    np.testing.assert_allclose(info["fusion_prob"], p)
    archs = [MULTI.from_vector(v) for v in vectors[:, 0]]
    on, total = cross_bit_stats(MULTI, archs)
    assert total >= 2500
    if p in (0.0, 1.0):
        assert on == (total if p == 1.0 else 0)
    else:
        assert abs(on / total - p) <= tolerance(p, total), on / total
    # Depths stay uniform over every choice.
    depths = all_depths(archs)
    counts = np.array([np.sum(depths == d) for d in MULTI.depth_choices])
    assert counts.min() > 0.8 * len(depths) / len(MULTI.depth_choices)


def test_uniform_sampler_is_fair_coin_with_uniform_depths():
    vectors, _ = run_steps(UniformSampler(MULTI, seed=9), range(150))
    archs = [MULTI.from_vector(v) for v in vectors[:, 0]]
    on, total = cross_bit_stats(MULTI, archs)
    assert abs(on / total - 0.5) <= tolerance(0.5, total)
    depths = all_depths(archs)
    n = len(depths)
    for d in MULTI.depth_choices:
        # Binomial(n, 1/4): five standard deviations.
        assert abs(np.sum(depths == d) - n / 4) <= 5 * math.sqrt(n * 0.25 * 0.75), d


def test_pose_fusion_sampler_density_outside_forced_step():
    s = FusionSampler(POSE, seed=1, fusion_prob=0.2)
    vectors, _ = run_steps(s, range(150))
    archs = [POSE.from_vector(v) for v in vectors[:, 0]]
    on, total = cross_bit_stats(POSE, archs)
    assert abs(on / total - 0.2) <= tolerance(0.2, total)


# === SandwichSampler ===


@pytest.mark.parametrize("space_name", sorted(SPACES))
def test_sandwich_first_two_are_largest_and_smallest(space_name):
    space = SPACES[space_name]
    s = SandwichSampler(space, seed=0, num_random=3)
    assert s.num_subnets == 5
    vectors, info = run_steps(s, range(20))
    largest, smallest = space.to_vector(space.largest()), space.to_vector(space.smallest())
    for step_vectors in vectors:
        np.testing.assert_array_equal(step_vectors[0], largest)
        np.testing.assert_array_equal(step_vectors[1], smallest)
        # The random subnets of a step differ from each other (independent folds of the seed).
        assert len({v.tobytes() for v in step_vectors[2:]}) == 3
    np.testing.assert_array_equal(info["group"][:, :2], [[-3, -2]] * 20)


def test_pose_sandwich_smallest_is_the_published_smallest():
    """For pose the sandwich's smallest end is `space.smallest()`: no fusion at all (the published
    13.62M "smallest"), unlike random draws, which follow the single-output rule."""
    vectors, _ = run_steps(SandwichSampler(POSE, num_random=0), [0])
    np.testing.assert_array_equal(vectors[0, 1], POSE.to_vector(POSE.smallest()))
    last = POSE.from_vector(vectors[0, 1]).modules[-1]
    for j in range(last.num_branches):
        for s in range(POSE.max_steps):
            assert sum(last.fusion[j][s]) - last.fusion[j][s][j] == 0


def test_sandwich_with_grouped_base_and_no_random():
    base = GroupedSampler(MULTI, seed=0)
    s = SandwichSampler(MULTI, num_random=1, base=base)
    _, info = run_steps(s, range(11))
    np.testing.assert_array_equal(info["group"][:, 2], np.arange(11))
    only_ends = SandwichSampler(MULTI, num_random=0)
    vectors, _ = run_steps(only_ends, range(3))
    assert vectors.shape == (3, 2, MULTI.vector_size)


# === Factory and argument checks ===


def test_make_sampler():
    assert type(make_sampler("uniform", MULTI)) is UniformSampler
    assert make_sampler("fusion", MULTI, fusion_prob=0.25).fusion_prob == 0.25
    assert make_sampler("grouped", MULTI, seed=4, sandwich=False).num_groups == 9
    assert make_sampler("sandwich", MULTI, num_random=1).num_subnets == 3
    assert make_sampler("grouped", MULTI, seed=4).seed == 4


def test_make_sampler_bad_name():
    with pytest.raises(ValueError, match="'attentive'") as e:
        make_sampler("attentive", MULTI)
    assert "grouped" in str(e.value)  # lists the choices


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_bad_fusion_prob(p):
    with pytest.raises(ValueError, match="fusion_prob"):
        FusionSampler(MULTI, fusion_prob=p)
    with pytest.raises(ValueError, match="fusion_prob"):
        make_sampler("fusion", MULTI, fusion_prob=p)
    with pytest.raises(ValueError, match="fusion_probs"):
        GroupedSampler(MULTI, fusion_probs=(0.5, p))


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="fusion_probs"):
        GroupedSampler(MULTI, fusion_probs=())
    with pytest.raises(ValueError, match="num_random"):
        SandwichSampler(MULTI, num_random=-1)
    with pytest.raises(TypeError, match="ScaleNASSpace"):
        UniformSampler({"width": 8})
    with pytest.raises(ValueError):
        FixedSampler(MULTI, ScaleNASSpace(width=8).largest())  # an arch of another space
