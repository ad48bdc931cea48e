"""Arch samplers that run inside the compiled train step, keyed by (seed, step): the base classes
and the samplers every family offers (sandwich, fixed, fed).

A sampler maps the training step (a scalar int tensor, e.g. `optimizer.iterations`) to a batch of
arch vectors `(num_subnets, space.vector_size)` (the layout of the space's `to_vector`) and a dict
of what it drew (`group`, `fusion_prob`). Stateless RNG makes it deterministic and identical on
every replica of a `tf.distribute` strategy, with no Python-side state to checkpoint. Each family
adds its own samplers (`families/<name>/samplers.py`) and registers them by name; `make_sampler`
looks a name up in the space's family.
"""

from __future__ import annotations

import abc
from typing import Sequence

import numpy as np
import tensorflow as tf


class ArchSampler(abc.ABC):
    """Base class: `sampler(step)` -> `(vectors, info)`.

    Subclasses implement `_sample(seed, step)` -> `(vectors (num_subnets, vector_size), info)`;
    `SingleArchSampler` subclasses draw one subnet per step with `_draw(seed, step)`.

    Args:
        space: the space its vectors encode (`space_type`, or any space when that is None).
        seed: int. The same seed and step give the same archs.
    """

    num_subnets = 1
    space_type = None  # the space class a sampler draws from; None: any (uses only space.to_vector)

    def __init__(self, space, seed: int = 0):
        if self.space_type is not None and not isinstance(space, self.space_type):
            raise TypeError(
                f"{type(self).__name__} samples a {self.space_type.__name__}. Received: {type(space).__name__}"
            )
        self.space = space
        self.seed = int(seed)

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


class SingleArchSampler(ArchSampler):
    """A sampler of one subnet per step: subclasses implement `_draw(seed, step)`."""

    def _sample(self, seed, step):
        vector, info = self._draw(seed, step)
        return vector[None], {k: tf.reshape(v, (1,)) for k, v in info.items()}

    @abc.abstractmethod
    def _draw(self, seed, step):
        """One arch vector `(vector_size,)` and its info dict of scalar tensors."""


class SandwichSampler(ArchSampler):
    """The sandwich rule: the largest, the smallest and `num_random` subnets from `base` every step.

    The trainer sums their losses (and so their gradients) into one update.

    Args:
        space, seed: as `ArchSampler`.
        num_random: int >= 0.
        base: the sampler of the random subnets (default: the family's `default_sampler`).
    """

    def __init__(self, space, seed=0, num_random=2, base=None):
        super().__init__(space, seed)
        if int(num_random) < 0:
            raise ValueError(f"`num_random` must be >= 0. Received: num_random={num_random}")
        self.num_random = int(num_random)
        if base is not None and not isinstance(base, SingleArchSampler):
            raise TypeError(
                f"`base` must draw one subnet per step (a SingleArchSampler). Received: {type(base).__name__}"
            )
        if base is None:
            from scalenas_tf import registry

            base = registry.family_of(space).make_sampler(registry.family_of(space).default_sampler, space, seed)
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

    def __init__(self, space, arch, seed=0):
        super().__init__(space, seed)
        self._vector = tf.constant(space.to_vector(arch))

    def _draw(self, seed, step):
        return self._vector, {"group": tf.constant(-1, tf.int32), "fusion_prob": tf.constant(-1.0)}


class FeedSampler(SingleArchSampler):
    """The arch held in a variable: `set(arch)` switches the subnet without a retrace.

    For benchmarks and for driving the compiled step with archs chosen outside it.
    """

    def __init__(self, space, arch=None, seed=0):
        super().__init__(space, seed)
        self.vector = tf.Variable(space.to_vector(arch or space.largest()), trainable=False, dtype=tf.int32)

    def set(self, arch):
        vector = (
            np.asarray(arch, np.int32) if isinstance(arch, (list, tuple, np.ndarray)) else self.space.to_vector(arch)
        )
        self.space.from_vector(vector)  # validates
        self.vector.assign(vector)

    def _draw(self, seed, step):
        return tf.identity(self.vector), {"group": tf.constant(-1, tf.int32), "fusion_prob": tf.constant(-1.0)}


# Samplers every family offers, by config name; families add their own (`Family.samplers`).
GENERIC_SAMPLERS = {"sandwich": SandwichSampler}


def make_sampler(name: str, space, seed: int = 0, **kwargs) -> ArchSampler:
    """A sampler by name for `space`; kwargs go to its constructor.

    The names are the space family's samplers (`registry.family_of(space).samplers`), `"sandwich"`
    and `"largest"` (a `FixedSampler` on `space.largest()`).

    Raises:
        ValueError: an unknown name (the message lists the names this space's family offers), or
            kwargs that do not fit the sampler.
    """
    from scalenas_tf import registry

    family = registry.family_of(space)
    if name == "largest":
        return FixedSampler(space, space.largest(), seed=seed)
    return family.make_sampler(name, space, seed, **kwargs)
