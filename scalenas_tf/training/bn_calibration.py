"""BatchNorm recalibration: the statistics one arch sees, recomputed from N batches.

The supernet's BN statistics are shared by every subnet and right for none of them; OFA,
AttentiveNAS and ScaleNAS all reset and recompute them for the arch being evaluated or exported.
Here the statistics of every BN layer the arch runs become the cumulative average of N batch
statistics (PyTorch's `momentum=None`: equal weight per batch, unbiased variance); BN layers the
arch does not run keep theirs bit-exactly. One traced function serves every arch.
"""

from __future__ import annotations

import contextlib
import weakref

import keras
import tensorflow as tf


class BatchNormCalibrator:
    """Recalibrates the BN statistics of one arch at a time, in place, on any `Supernet`.

    Args:
        supernet: a built `Supernet` (any family).

    Example:
    >>> calibrator = BatchNormCalibrator(supernet)
    >>> calibrator(space.smallest(), train_dataset, num_batches=20)
    >>> static = extract_subnet(supernet, space.smallest(), input_size)  # carries the new statistics
    """

    def __init__(self, supernet):
        self.supernet = supernet
        self.norms = _batch_norms(supernet)
        self._sums = [
            (
                tf.Variable(tf.zeros_like(n.moving_mean), trainable=False),
                tf.Variable(tf.zeros_like(n.moving_variance), trainable=False),
            )
            for n in self.norms
        ]
        self._fn = None

    def __call__(self, arch, dataset, num_batches):
        """Recomputes the statistics `arch` uses from the first `num_batches` batches of `dataset`.

        Args:
            arch: `None` (largest), an arch of the space or an int arch vector.
            dataset: iterable of image batches or of `(images, targets)` tuples (e.g. `tf.data`).
            num_batches: int >= 1.

        Returns:
            The number of batches used.
        """
        if int(num_batches) < 1:
            raise ValueError(f"`num_batches` must be >= 1. Received: num_batches={num_batches}")
        vector = self.supernet.arch_tensor(arch)
        fn = self._traced()
        for s in (s for pair in self._sums for s in pair):
            s.assign(tf.zeros_like(s))
        used = 0
        for batch in dataset:
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            fn(tf.cast(images, tf.float32), vector)
            used += 1
            if used == int(num_batches):
                break
        if used == 0:
            raise ValueError("BN recalibration got no batches: `dataset` is empty")
        skipped = self._norms_not_run(vector)
        # Elastic width: channels the arch does not read keep their statistics bit-exactly.
        masks = {id(v): m for v, m in self.supernet.channel_masks(vector)}
        for norm, (mean_sum, var_sum) in zip(self.norms, self._sums):
            if id(norm) not in skipped:
                for stat, total in ((norm.moving_mean, mean_sum), (norm.moving_variance, var_sum)):
                    value = total / used
                    if id(stat) in masks:
                        value = tf.where(masks[id(stat)], value, stat)
                    stat.assign(value)
        return used

    def _norms_not_run(self, vector):
        skipped = set()
        for layer, on in self.supernet.gated_layers(vector):
            if not bool(on.numpy()):
                skipped.update(id(n) for n in _batch_norms(layer))
        return skipped

    def _traced(self):
        """The accumulation step, traced once (fixed signature) with every BN's momentum at 0."""
        if self._fn is None:
            self._fn = tf.function(
                self._accumulate,
                autograph=False,  # as the evaluator's functions (evaluation/evaluator.py)
                input_signature=[
                    tf.TensorSpec((None, None, None, 3), tf.float32),
                    tf.TensorSpec((self.supernet.space.vector_size,), tf.int32),
                ],
            )
            with _momentum(self.norms, 0.0):
                self._fn.get_concrete_function()
        return self._fn

    def _accumulate(self, images, vector):
        # Momentum 0: each BN the arch runs stores exactly this batch's statistics.
        self.supernet(images, arch=vector, training=True)
        for norm, (mean_sum, var_sum) in zip(self.norms, self._sums):
            mean_sum.assign_add(tf.cast(norm.moving_mean, mean_sum.dtype))
            var_sum.assign_add(tf.cast(norm.moving_variance, var_sum.dtype))


_CALIBRATORS = weakref.WeakKeyDictionary()


def recalibrate(supernet, arch, dataset, num_batches=50):
    """Recalibrates `arch`'s BN statistics on `supernet` (one cached `BatchNormCalibrator` per supernet)."""
    if supernet not in _CALIBRATORS:
        _CALIBRATORS[supernet] = BatchNormCalibrator(supernet)
    return _CALIBRATORS[supernet](arch, dataset, num_batches)


def _batch_norms(layer):
    layers = layer._flatten_layers(include_self=True, recursive=True)
    return [norm for norm in layers if isinstance(norm, keras.layers.BatchNormalization)]


@contextlib.contextmanager
def _momentum(norms, value):
    saved = [n.momentum for n in norms]
    for n in norms:
        n.momentum = value
    try:
        yield
    finally:
        for n, m in zip(norms, saved):
            n.momentum = m
