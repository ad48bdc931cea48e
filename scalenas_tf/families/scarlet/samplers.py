"""The SCARLET family's single-path samplers: SPOS and FairNAS strict fairness (in graph)."""

from __future__ import annotations

import tensorflow as tf

from scalenas_tf.families.scarlet.space import ScarletSpace
from scalenas_tf.training.sampler import ArchSampler
from scalenas_tf.training.sampler import SingleArchSampler


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
            s_fill, s_order = tf.unstack(
                tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(seed, i), 2)
            )
            ids = tf.constant(ids, tf.int32)
            n = int(ids.shape[0])
            if n < m:
                extra = tf.gather(ids, tf.argsort(tf.random.stateless_uniform((n,), s_fill))[: m - n])
                ids = tf.concat([ids, extra], axis=0)
            columns.append(tf.gather(ids, tf.argsort(tf.random.stateless_uniform((m,), s_order))))
        vectors = tf.stack(columns, axis=1)
        return vectors, {"group": tf.range(m, dtype=tf.int32), "fusion_prob": -tf.ones((m,))}
