"""Subnet extraction for any family: arch -> a plain Keras model with the supernet's weights copied."""

from __future__ import annotations

import keras

from scalenas_tf import registry
from scalenas_tf.registry import Extraction


def extract(supernet, arch, input_size, name=None) -> Extraction:
    """The static subnet of `arch` and the family's extraction report (see `registry.Extraction`).

    Args:
        supernet: a supernet of a registered family (built or not; weights are copied, never shared).
        arch: an arch of `supernet.space`.
        input_size: `(height, width)` of the static input.
        name: model name; defaults to `"subnet_<arch hash>"`.

    Raises:
        ArchError: `arch` is outside the supernet's space.
        ValueError: a bad `input_size`.
    """
    return registry.family_of(supernet.space).extract(supernet, arch, tuple(input_size), name)


def extract_subnet(supernet, arch, input_size=(256, 192), name=None) -> keras.Model:
    """`extract(...).model`: the static network of `arch` from standard Keras layers.

    The result holds only standard Keras layers (no scalenas_tf class), so it saves, loads and
    serves without this library.
    """
    return extract(supernet, arch, input_size, name).model


def load_subnet_weights(supernet, static: keras.Model) -> int:
    """Copies the weights of an extracted model (e.g. a trained teacher) back into `supernet`.

    Extraction keeps every leaf layer's name, so layers are matched by name; a layer of `static`
    that the supernet lacks, or of another shape, is an error. Returns the number of layers copied.
    """
    if not supernet.built:
        supernet.build((None, None, None, 3))
    leaves = {leaf.name: leaf for leaf in supernet._flatten_layers(include_self=False, recursive=True) if leaf.weights}
    copied = 0
    for layer in static.layers:
        if not layer.weights:
            continue
        target = leaves.get(layer.name)
        if target is None:
            raise ValueError(f"Layer {layer.name!r} of {static.name!r} has no counterpart in the supernet")
        shapes = [tuple(w.shape) for w in target.weights], [tuple(w.shape) for w in layer.weights]
        if shapes[0] != shapes[1]:
            raise ValueError(f"Layer {layer.name!r}: supernet weights {shapes[0]} != static weights {shapes[1]}")
        target.set_weights(layer.get_weights())
        copied += 1
    return copied
