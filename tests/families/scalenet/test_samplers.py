"""ScaleNet samplers: HSS stage odds and per-stage FLOPs, the uniform ablation, determinism, fixed archs."""

import numpy as np
import pytest

from scalenas_tf.families.scalenet import cost
from scalenas_tf.families.scalenet.samplers import HierarchicalSampler
from scalenas_tf.families.scalenet.samplers import NamedFixedSampler
from scalenas_tf.families.scalenet.samplers import UniformScalingSampler
from scalenas_tf.families.scalenet.space import ScaleNetSpace

SPACE = ScaleNetSpace()  # the official space: stage odds 1:4:5:7
STEPS = 1200


@pytest.fixture(scope="module")
def hss_draws():
    vectors, info = HierarchicalSampler(SPACE, seed=5).sample_numpy(range(STEPS))
    archs = [SPACE.from_vector(v[0]) for v in vectors]  # raises if a draw is outside the space
    return archs, info["group"][:, 0]


def test_hss_stage_frequencies_follow_the_width_choice_counts(hss_draws):
    archs, stages = hss_draws
    counts = np.bincount(stages, minlength=4)
    expected = STEPS * np.array([1, 4, 5, 7]) / 17
    # Each count within 4 binomial standard deviations of its expectation.
    sd = np.sqrt(expected * (1 - expected / STEPS))
    assert np.all(np.abs(counts - expected) < 4 * sd), counts
    assert all(SPACE.stage_of(a) == s for a, s in zip(archs, stages))  # d, w, px from the drawn stage


def test_hss_flops_are_single_mode_per_stage_near_the_budget(hss_draws):
    archs, stages = hss_draws
    macs = np.array([cost.count(SPACE, a).macs for a in archs])
    f0 = np.mean(macs[stages == 0])
    medians = []
    for j in range(4):
        stage = macs[stages == j]
        medians.append(np.median(stage))
        # One mode: the histogram's peak bin is interior and most draws lie within 2x of 2^j f0.
        assert np.mean((stage > 2**j * f0 / 2) & (stage < 2**j * f0 * 2)) > 0.85, j
    ratios = np.array(medians[1:]) / np.array(medians[:-1])
    assert np.all((ratios > 1.5) & (ratios < 2.8)), ratios  # each stage about doubles the cost


def test_uniform_ablation_mixes_stages_and_spreads_wider():
    vectors, _ = UniformScalingSampler(SPACE, seed=5).sample_numpy(range(600))
    archs = [SPACE.from_vector(v[0]) for v in vectors]
    mixed = sum(SPACE.stage_of(a) is None for a in archs)
    assert mixed > 300  # d, w and px drawn independently: most strategies belong to no single stage
    depths = {a.depth for a in archs}
    assert depths == set(SPACE.depth_values)
    macs = np.array([cost.count(SPACE, a).macs for a in archs])
    hist, _ = np.histogram(np.log(macs), bins=8)
    assert 0 < np.argmax(hist) < 7  # bell-shaped: the mode is interior


def test_samplers_are_deterministic_in_seed_and_step():
    a, _ = HierarchicalSampler(SPACE, seed=1).sample_numpy([3, 4, 3])
    b, _ = HierarchicalSampler(SPACE, seed=1).sample_numpy([3, 4, 3])
    c, _ = HierarchicalSampler(SPACE, seed=2).sample_numpy([3, 4, 3])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[0], a[2])
    assert not np.array_equal(a, c)


def test_stage_weights_and_fixed_sampler():
    vectors, info = HierarchicalSampler(SPACE, seed=0, stage_weights=(0, 0, 1, 0)).sample_numpy(range(20))
    assert set(info["group"][:, 0]) == {2}
    with pytest.raises(ValueError, match="`stage_weights` needs 4 non-negative numbers"):
        HierarchicalSampler(SPACE, stage_weights=(1, 1))
    fixed, _ = NamedFixedSampler(SPACE, arch="scalenet_s1").sample_numpy([0, 9])
    np.testing.assert_array_equal(fixed[0, 0], SPACE.to_vector(SPACE.named("scalenet_s1")))
    np.testing.assert_array_equal(fixed[0], fixed[1])
    arch = SPACE.named("scalenet_s2").to_dict()
    np.testing.assert_array_equal(
        NamedFixedSampler(SPACE, arch=arch).sample_numpy([0])[0][0, 0], SPACE.to_vector(SPACE.named("scalenet_s2"))
    )
    with pytest.raises(ValueError, match="`arch` must be a named arch or an arch dict"):
        NamedFixedSampler(SPACE, arch=3)
