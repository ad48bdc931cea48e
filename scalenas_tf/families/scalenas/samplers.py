"""The ScaleNAS family's samplers: uniform, fusion-percentage and grouped sampling (in graph).

Every vector is canonical: self bits 1 below each branch's depth, no bits at or beyond it, and the
single-output rule of pose spaces applied to every random draw, so `space.from_vector` accepts it.
`SandwichSampler`'s ends (training/sampler.py) are `space.largest()` and `space.smallest()` as
defined there (for pose, the smallest has no fusion at all, as published).
"""

from __future__ import annotations

import tensorflow as tf

from scalenas_tf.families.scalenas.space import ScaleNASSpace
from scalenas_tf.training.sampler import SingleArchSampler

# ScaleNAS grouped sampling: depth groups of consecutive depth choices x fusion percentages, then
# the sandwich rule's smallest and largest as two more groups (the authors' release cycles 11).
GROUP_FUSION_PROBS = (0.2, 0.5, 0.8)
SMALLEST_FUSION_PROB = 0.1
LARGEST_FUSION_PROB = 1.0


class _ScaleNASSampler(SingleArchSampler):
    """Base of the ScaleNAS samplers: draws canonical arch vectors in graph."""

    space_type = ScaleNASSpace

    def __init__(self, space, seed=0):
        super().__init__(space, seed)
        self._layout = [b for _, _, b in space.module_layout()]

    def _random_arch(self, seed, depth_options, num_options, fusion_prob):
        """One arch: each depth uniform over `depth_options[:num_options]`, each cross bit on w.p. p."""
        parts = []
        last = len(self._layout) - 1
        for m, b in enumerate(self._layout):
            s_depth, s_bits = tf.unstack(
                tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(seed, m), 2)
            )
            u = tf.random.stateless_uniform((b,), s_depth)
            index = tf.minimum(tf.cast(u * tf.cast(num_options, tf.float32), tf.int32), num_options - 1)
            depths = tf.gather(depth_options, index)
            cross = tf.random.stateless_uniform((b, self.space.max_steps, b), s_bits) < fusion_prob
            single_output = m == last and not self.space.multi_scale_output
            parts.append(self._module_vector(depths, cross, b, single_output))
        return tf.concat(parts, axis=0)

    def _module_vector(self, depths, cross, b, single_output):
        steps = self.space.max_steps
        step = tf.range(steps)[None, :, None]
        active = step < depths[:, None, None]
        is_self = tf.eye(b, dtype=tf.bool)[:, None, :]
        bits = tf.logical_and(tf.logical_or(is_self, cross), active)
        if single_output:
            # HRNet's single output: target 0 reads every branch at its last step, others only themselves.
            last = tf.equal(step, depths[:, None, None] - 1)
            target0 = tf.equal(tf.range(b), 0)[:, None, None]
            bits = tf.where(last, tf.logical_or(target0, is_self), bits)
        return tf.concat([depths, tf.reshape(tf.cast(bits, tf.int32), (-1,))], axis=0)


class UniformSampler(_ScaleNASSampler):
    """Uniform over the space: every depth uniform over `depth_choices`, every cross bit a fair coin."""

    fusion_prob = 0.5

    def _draw(self, seed, step):
        choices = tf.constant(self.space.depth_choices, tf.int32)
        vector = self._random_arch(seed, choices, len(self.space.depth_choices), self.fusion_prob)
        return vector, {"group": tf.constant(-1, tf.int32), "fusion_prob": tf.constant(self.fusion_prob)}


class FusionSampler(UniformSampler):
    """Fusion-percentage sampling: depths uniform, each cross edge on with probability `fusion_prob`.

    Args:
        space, seed: as `ArchSampler`.
        fusion_prob: float in [0, 1].
    """

    def __init__(self, space, seed=0, fusion_prob=0.5):
        super().__init__(space, seed)
        if not 0.0 <= float(fusion_prob) <= 1.0:
            raise ValueError(f"`fusion_prob` must be in [0, 1]. Received: fusion_prob={fusion_prob}")
        self.fusion_prob = float(fusion_prob)


class GroupedSampler(_ScaleNASSampler):
    """ScaleNAS grouped sampling: the group cycles with the step (`step mod num_groups`).

    Groups `g = d * len(fusion_probs) + f` pair depth group d (two consecutive depth choices, e.g.
    {2,3}, {3,4}, {4,5}) with fusion probability `fusion_probs[f]` (0.2, 0.5, 0.8): 9 groups. With
    `sandwich=True` two more follow: the smallest depth with p = 0.1 and the largest depth with
    p = 1.0 (11 groups, the released code's `step mod 11`).

    Args:
        space, seed: as `ArchSampler`.
        fusion_probs: sequence of floats in [0, 1].
        sandwich: bool. Adds the smallest and largest groups.
    """

    def __init__(self, space, seed=0, fusion_probs=GROUP_FUSION_PROBS, sandwich=True):
        super().__init__(space, seed)
        probs = tuple(float(p) for p in fusion_probs)
        if not probs or not all(0.0 <= p <= 1.0 for p in probs):
            raise ValueError(f"`fusion_probs` must be non-empty probabilities. Received: fusion_probs={fusion_probs}")
        choices = space.depth_choices
        groups = [(d, p) for d in space.depth_groups() for p in probs]
        if sandwich:
            groups += [((choices[0],), SMALLEST_FUSION_PROB), ((choices[-1],), LARGEST_FUSION_PROB)]
        self.groups = tuple(groups)
        self.sandwich = sandwich

    @property
    def num_groups(self):
        return len(self.groups)

    def _draw(self, seed, step):
        group = tf.cast(step % self.num_groups, tf.int32)
        table = tf.constant([list(d) + [d[-1]] * (2 - len(d)) for d, _ in self.groups], tf.int32)
        sizes = tf.constant([len(d) for d, _ in self.groups], tf.int32)
        probs = tf.constant([p for _, p in self.groups], tf.float32)
        p = probs[group]
        vector = self._random_arch(seed, table[group], sizes[group], p)
        return vector, {"group": group, "fusion_prob": p}
