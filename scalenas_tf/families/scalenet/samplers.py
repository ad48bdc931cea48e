"""The ScaleNet family's in-graph samplers: hierarchical (HSS), the ablation's uniform, and a fixed arch.

All draw a uniform base path (blocks per stage uniform in min..max, each block's choice uniform over
its stage's choices; unused base slots 0, as `to_vector` writes them) and a strategy, keyed by
(seed, step) with stateless RNG, so every replica draws the same subnet.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from scalenas_tf.families.scalenet.space import NUM_STAGES
from scalenas_tf.families.scalenet.space import ScaleNetSpace
from scalenas_tf.training.sampler import FixedSampler
from scalenas_tf.training.sampler import SingleArchSampler


def _padded(rows):
    width = max(len(r) for r in rows)
    return tf.constant([list(r) + [r[-1]] * (width - len(r)) for r in rows], tf.int32), tf.constant(
        [len(r) for r in rows], tf.int32
    )


def _uniform_index(seed, count):
    """An int in [0, count) from a stateless uniform draw (`count` a scalar or vector tensor)."""
    u = tf.random.stateless_uniform(tf.shape(count), seed)
    return tf.minimum(tf.cast(u * tf.cast(count, tf.float32), tf.int32), count - 1)


class _ScaleNetSampler(SingleArchSampler):
    space_type = ScaleNetSpace

    def __init__(self, space, seed=0):
        super().__init__(space, seed)
        names = space.choice_names
        self._choices, self._num_choices = _padded(
            [[names.index(c) for c in space.stage_choices(i)] for i in range(NUM_STAGES)]
        )
        self._min = tf.constant(space.min_blocks, tf.int32)
        self._max = tf.constant(space.max_blocks, tf.int32)
        self._slot_stage = tf.constant(np.repeat(np.arange(NUM_STAGES), space.max_blocks), tf.int32)
        self._slot_index = tf.constant(np.concatenate([np.arange(n) for n in space.max_blocks]), tf.int32)

    def _base(self, seed):
        """Blocks per stage `(7,)` and one choice id per base slot `(sum(max_blocks),)`."""
        s_count, s_ops = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        counts = self._min + _uniform_index(s_count, self._max - self._min + 1)
        local = _uniform_index(s_ops, tf.gather(self._num_choices, self._slot_stage))
        ids = tf.gather_nd(self._choices, tf.stack([self._slot_stage, local], axis=1))
        used = self._slot_index < tf.gather(counts, self._slot_stage)
        return counts, tf.where(used, ids, 0)

    def _vector(self, seed, strategy):
        counts, ids = self._base(seed)
        return tf.concat([counts, ids, strategy], axis=0)


class HierarchicalSampler(_ScaleNetSampler):
    """HSS: a scaling stage j with probability proportional to `stage_weights` (default: its number
    of width choices, 1:4:5:7 officially), then d, w and px uniform over stage j's lists; base uniform.

    Args:
        stage_weights: one positive number per scaling stage, or None.

    Reference: Xie et al., "ScaleNet", ECCV 2022, supplement §B (luminolx/ScaleNet uniform_searcher.py).
    """

    def __init__(self, space, seed=0, stage_weights=None):
        super().__init__(space, seed)
        m = space.num_scaling_stages
        weights = [len(v) for v in space.width_multipliers] if stage_weights is None else list(stage_weights)
        if len(weights) != m or not all(isinstance(w, (int, float)) and w >= 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(
                f"`stage_weights` needs {m} non-negative numbers (one per scaling stage) with a positive sum. "
                f"Received: stage_weights={stage_weights!r}"
            )
        self.stage_weights = tuple(float(w) for w in weights)
        self._logits = tf.math.log(tf.constant([self.stage_weights], tf.float32))
        tables = []
        for lists, values in (
            (space.depth_multipliers, space.depth_values),
            (space.width_multipliers, space.width_values),
            (space.resolutions, space.resolution_values),
        ):
            tables.append(_padded([[values.index(x) for x in lst] for lst in lists]))
        self._tables = tables

    def _draw(self, seed, step):
        s_stage, s_d, s_w, s_r, s_base = tf.unstack(tf.random.experimental.stateless_split(seed, 5))
        stage = tf.reshape(tf.random.stateless_categorical(self._logits, 1, s_stage, dtype=tf.int32), ())
        strategy = [
            tf.gather(table[stage], _uniform_index(s, counts[stage]))
            for (table, counts), s in zip(self._tables, (s_d, s_w, s_r))
        ]
        return self._vector(s_base, tf.stack(strategy)), {"group": stage, "fusion_prob": tf.constant(-1.0)}


class UniformScalingSampler(_ScaleNetSampler):
    """The ablation's original uniform sampling: d, w and px each uniform over the union of all
    scaling stages' lists, independently (so strategies mix stages); base uniform."""

    def _draw(self, seed, step):
        s_d, s_w, s_r, s_base = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
        space = self.space
        sizes = (len(space.depth_values), len(space.width_values), len(space.resolution_values))
        strategy = tf.stack([_uniform_index(s, tf.constant(n)) for s, n in zip((s_d, s_w, s_r), sizes)])
        return self._vector(s_base, strategy), {"group": tf.constant(-1, tf.int32), "fusion_prob": tf.constant(-1.0)}


class NamedFixedSampler(FixedSampler):
    """Always one arch, given as a name `space.named` accepts (e.g. "scalenet_s0") or an arch dict."""

    def __init__(self, space, seed=0, arch="largest"):
        if isinstance(arch, str):
            chosen = space.named(arch)
        elif isinstance(arch, dict):
            chosen = space.arch_from_dict(arch)
        else:
            raise ValueError(f"`arch` must be a named arch or an arch dict. Received: {type(arch).__name__}")
        super().__init__(space, chosen, seed=seed)
