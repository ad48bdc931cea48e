"""Arch samplers that run inside the compiled train step, keyed by (seed, step).

A sampler maps the training step (a scalar int tensor, e.g. `optimizer.iterations`) to a batch of
arch vectors `(num_subnets, space.vector_size)` (the layout of `ScaleNASSpace.to_vector`) and a dict
of what it drew (`group`, `fusion_prob`). Stateless RNG makes it deterministic and identical on
every replica of a `tf.distribute` strategy, with no Python-side state to checkpoint.

Every vector is canonical: self bits 1 below each branch's depth, no bits at or beyond it, and the
single-output rule of pose spaces applied to every random draw, so `space.from_vector` accepts it.
`SandwichSampler`'s ends are `space.largest()` and `space.smallest()` as defined there (for pose,
the smallest has no fusion at all, as published).
"""

from __future__ import annotations

import abc
from typing import Sequence

import numpy as np
import tensorflow as tf

from scalenas_tf.scarlet_space import ScarletSpace
from scalenas_tf.search_space import ScaleNASSpace

# ScaleNAS grouped sampling: depth groups of consecutive depth choices x fusion percentages, then
# the sandwich rule's smallest and largest as two more groups (the authors' release cycles 11).
GROUP_FUSION_PROBS = (0.2, 0.5, 0.8)
SMALLEST_FUSION_PROB = 0.1
LARGEST_FUSION_PROB = 1.0


class ArchSampler(abc.ABC):
    """Base class: `sampler(step)` -> `(vectors, info)`.

    Subclasses implement `_sample(seed, step)` -> `(vectors (num_subnets, vector_size), info)`;
    `SingleArchSampler` subclasses draw one subnet per step with `_draw(seed, step)`.

    Args:
        space: the space its vectors encode (`space_type`, or any space when that is None).
        seed: int. The same seed and step give the same archs.
    """

    num_subnets = 1
    space_type = ScaleNASSpace  # the space a sampler draws from; None: any (uses only space.to_vector)

    def __init__(self, space, seed: int = 0):
        if self.space_type is not None and not isinstance(space, self.space_type):
            raise TypeError(
                f"{type(self).__name__} samples a {self.space_type.__name__}. Received: {type(space).__name__}"
            )
        self.space = space
        self.seed = int(seed)
        self._layout = [b for _, _, b in space.module_layout()] if isinstance(space, ScaleNASSpace) else []

    def __call__(self, step):
        step = tf.cast(step, tf.int64)
        seed = tf.stack([tf.constant(self.seed, tf.int64), step])
        return self._sample(seed, step)

    @abc.abstractmethod
    def _sample(self, seed, step):
        """The step's arch vectors `(num_subnets, vector_size)` and info tensors `(num_subnets,)`."""

    def sample_numpy(self, steps: Sequence[int]):
        """Eager helper: the vectors `(len(steps), num_subnets, vector_size)` and info for `steps`."""
        vectors, infos = [], []
        for step in steps:
            v, info = self(tf.constant(step, tf.int64))
            vectors.append(v.numpy())
            infos.append({k: x.numpy() for k, x in info.items()})
        return np.stack(vectors), {k: np.stack([i[k] for i in infos]) for k in infos[0]} if infos else {}

    # === In-graph construction of canonical vectors ===

    def _random_arch(self, seed, depth_options, num_options, fusion_prob):
        """One arch: each depth uniform over `depth_options[:num_options]`, each cross bit on w.p. p."""
        parts = []
        last = len(self._layout) - 1
        for m, b in enumerate(self._layout):
            s_depth, s_bits = tf.unstack(tf.random.experimental.stateless_split(
                tf.random.experimental.stateless_fold_in(seed, m), 2))
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


class SingleArchSampler(ArchSampler):
    """A sampler of one subnet per step: subclasses implement `_draw(seed, step)`."""

    def _sample(self, seed, step):
        vector, info = self._draw(seed, step)
        return vector[None], {k: tf.reshape(v, (1,)) for k, v in info.items()}

    @abc.abstractmethod
    def _draw(self, seed, step):
        """One arch vector `(vector_size,)` and its info dict of scalar tensors."""


class UniformSampler(SingleArchSampler):
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


class GroupedSampler(SingleArchSampler):
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


class SandwichSampler(ArchSampler):
    """The sandwich rule: the largest, the smallest and `num_random` subnets from `base` every step.

    The trainer sums their losses (and so their gradients) into one update.

    Args:
        space, seed: as `ArchSampler`.
        num_random: int >= 0.
        base: the sampler of the random subnets (default `UniformSampler(space, seed)`).
    """

    space_type = None

    def __init__(self, space, seed=0, num_random=2, base=None):
        super().__init__(space, seed)
        if int(num_random) < 0:
            raise ValueError(f"`num_random` must be >= 0. Received: num_random={num_random}")
        self.num_random = int(num_random)
        if base is not None and not isinstance(base, SingleArchSampler):
            raise TypeError(f"`base` must draw one subnet per step (a SingleArchSampler). Received: {type(base).__name__}")
        if base is None:
            base = SinglePathSampler(space, seed) if isinstance(space, ScarletSpace) else UniformSampler(space, seed)
        self.base = base
        self.num_subnets = 2 + self.num_random
        self._ends = tf.constant(np.stack([space.to_vector(space.largest()), space.to_vector(space.smallest())]))

    def _sample(self, seed, step):
        vectors, groups, probs = [self._ends], [tf.constant([-3, -2], tf.int32)], [tf.constant([1.0, 0.0])]
        for i in range(self.num_random):
            v, info = self.base._draw(tf.random.experimental.stateless_fold_in(seed, i + 1), step)
            vectors.append(v[None])
            groups.append(tf.reshape(info["group"], (1,)))
            probs.append(tf.reshape(info["fusion_prob"], (1,)))
        return tf.concat(vectors, 0), {"group": tf.concat(groups, 0), "fusion_prob": tf.concat(probs, 0)}


class FixedSampler(SingleArchSampler):
    """Always the same arch (e.g. to train a single subnet, or the teacher's full configuration)."""

    space_type = None

    def __init__(self, space, arch, seed=0):
        super().__init__(space, seed)
        self._vector = tf.constant(space.to_vector(arch))

    def _draw(self, seed, step):
        return self._vector, {"group": tf.constant(-1, tf.int32), "fusion_prob": tf.constant(-1.0)}


class FeedSampler(SingleArchSampler):
    """The arch held in a variable: `set(arch)` switches the subnet without a retrace.

    For benchmarks and for driving the compiled step with archs chosen outside it.
    """

    space_type = None

    def __init__(self, space, arch=None, seed=0):
        super().__init__(space, seed)
        self.vector = tf.Variable(space.to_vector(arch or space.largest()), trainable=False, dtype=tf.int32)

    def set(self, arch):
        vector = np.asarray(arch, np.int32) if isinstance(arch, (list, tuple, np.ndarray)) else self.space.to_vector(arch)
        self.space.from_vector(vector)  # validates
        self.vector.assign(vector)

    def _draw(self, seed, step):
        return tf.identity(self.vector), {"group": tf.constant(-1, tf.int32), "fusion_prob": tf.constant(-1.0)}


# === Single-path samplers of the SCARLET space ===


class _PathSampler(ArchSampler):
    """Base of the SCARLET samplers: the per-layer tables of allowed choice ids."""

    space_type = ScarletSpace

    def __init__(self, space, seed=0):
        super().__init__(space, seed)
        names = space.choice_names
        self.layer_ids = [[names.index(c) for c in space.layer_choices(i)] for i in range(space.num_layers)]
        width = max(len(ids) for ids in self.layer_ids)
        self._table = tf.constant([ids + [ids[-1]] * (width - len(ids)) for ids in self.layer_ids], tf.int32)
        self._counts = tf.constant([len(ids) for ids in self.layer_ids], tf.int32)


class SinglePathSampler(_PathSampler, SingleArchSampler):
    """SPOS: every layer's choice uniform over the choices it offers (Guo et al., ECCV 2020)."""

    def _draw(self, seed, step):
        u = tf.random.stateless_uniform((self.space.num_layers,), seed)
        index = tf.minimum(tf.cast(u * tf.cast(self._counts, tf.float32), tf.int32), self._counts - 1)
        vector = tf.gather(self._table, index, batch_dims=1)
        return vector, {"group": tf.constant(-1, tf.int32), "fusion_prob": tf.constant(-1.0)}


class StrictFairSampler(_PathSampler):
    """FairNAS strict fairness: each step, m single paths that together run every choice of every
    layer exactly once (m = the most choices any layer offers); the trainer sums their gradients
    into one update.

    Each layer's choices are shuffled independently (a stateless permutation per layer and step) and
    path p takes the p-th. A layer that offers fewer than m choices (no identity where the stride or
    width changes) fills its remaining slots with distinct choices drawn at random, so there every
    choice runs once or twice per step.

    Reference:
        Chu et al., "FairNAS: Rethinking Evaluation Fairness of Weight Sharing Neural Architecture
        Search", ICCV 2021.
    """

    def __init__(self, space, seed=0):
        super().__init__(space, seed)
        self.num_subnets = max(len(ids) for ids in self.layer_ids)

    def _sample(self, seed, step):
        m = self.num_subnets
        columns = []
        for i, ids in enumerate(self.layer_ids):
            s_fill, s_order = tf.unstack(tf.random.experimental.stateless_split(
                tf.random.experimental.stateless_fold_in(seed, i), 2))
            ids = tf.constant(ids, tf.int32)
            n = int(ids.shape[0])
            if n < m:
                extra = tf.gather(ids, tf.argsort(tf.random.stateless_uniform((n,), s_fill))[: m - n])
                ids = tf.concat([ids, extra], axis=0)
            columns.append(tf.gather(ids, tf.argsort(tf.random.stateless_uniform((m,), s_order))))
        vectors = tf.stack(columns, axis=1)
        return vectors, {"group": tf.range(m, dtype=tf.int32), "fusion_prob": -tf.ones((m,))}


SAMPLERS = {
    "uniform": UniformSampler,
    "fusion": FusionSampler,
    "grouped": GroupedSampler,
    "sandwich": SandwichSampler,
    "spos": SinglePathSampler,
    "strict_fair": StrictFairSampler,
}


def make_sampler(name: str, space, seed: int = 0, **kwargs) -> ArchSampler:
    """A sampler by name; kwargs go to its constructor. ScaleNAS spaces: `"uniform"`, `"fusion"`,
    `"grouped"`, `"sandwich"`; SCARLET spaces: `"spos"`, `"strict_fair"`, `"sandwich"`."""
    if name not in SAMPLERS:
        raise ValueError(f"Unknown sampler {name!r}. Expected one of {sorted(SAMPLERS)}")
    return SAMPLERS[name](space, seed=seed, **kwargs)
