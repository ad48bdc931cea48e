"""Test helpers for Keras models: non-trivial BN statistics, so that a wrong weight copy cannot hide."""

import keras
import numpy as np


def _batch_norms(model):
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def randomize_batch_norm(model, seed=0, images=None):
    """Random gamma and beta; moving statistics random, or (given `images`) set from one training pass.

    Setting the statistics from the batch (momentum 0 for one largest-arch pass) keeps activations of
    a deep random network O(1), so float32 comparisons at 1e-5 test the copy, not overflow.
    """
    rng = np.random.default_rng(seed)
    norms = _batch_norms(model)
    for layer in norms:
        c = layer.gamma.shape[0]
        layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
        layer.beta.assign(rng.normal(0, 0.1, c).astype("float32"))
        layer.moving_mean.assign(rng.normal(0, 0.1, c).astype("float32"))
        layer.moving_variance.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
    if images is not None:
        momenta = [layer.momentum for layer in norms]
        for layer in norms:
            layer.momentum = 0.0
        model(images, training=True)
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
