"""Subnet extraction: arch -> a plain Keras functional model with the supernet's weights copied."""

import keras

from scalenas_tf.models.supernet import ScaleNASSupernet
from scalenas_tf.search_space import ScaleNASArch


def extract_subnet(supernet: ScaleNASSupernet, arch: ScaleNASArch, input_size=(256, 192), name=None) -> keras.Model:
    """Builds the static network of `arch` from standard Keras layers, with copied weights.

    The result holds only Conv2D, BatchNormalization, Dense and weightless standard layers (no
    scalenas_tf class), so it saves, loads and serves without this library. Work whose result never
    reaches the head (pose: branches of the last module that do not feed branch 0) is left out;
    `search.cost.count(...).live_params` is its parameter count.

    Args:
        supernet: a built or unbuilt `ScaleNASSupernet` (weights are copied, never shared).
        arch: a `ScaleNASArch` of `supernet.space`.
        input_size: `(height, width)` of the static input.
        name: model name; defaults to `"subnet_<arch hash>"`.

    Returns:
        A `keras.Model` mapping `(batch, height, width, 3)` images to the head's output.

    Raises:
        ArchError: if `arch` is outside the supernet's space.
        ValueError: for a bad `input_size`.
    """
    from scalenas_tf.models.scarlet_supernet import ScarletSupernet

    if isinstance(supernet, ScarletSupernet):  # ELS folds applied; see extract_scarlet_subnet for the report
        from scalenas_tf.models.scarlet_subnet import extract_scarlet_subnet

        return extract_scarlet_subnet(supernet, arch, input_size, name=name)[0]
    space = supernet.space
    space.validate(arch)
    if len(input_size) != 2 or any(not isinstance(v, int) or v < 1 for v in input_size):
        raise ValueError(f"`input_size` must be (height, width) positive ints. Received: input_size={input_size}")
    if not supernet.built:
        supernet.build((None, None, None, 3))
    images = keras.Input((*input_size, 3), name="images")
    xs = [supernet.stem.extract(images)]
    t = 0
    for (_, module, _), hr_module, module_arch in zip(space.module_layout(), supernet.hr_modules, arch.modules):
        if module == 0:
            xs = supernet.transitions[t].extract(xs)
            t += 1
        xs = hr_module.extract(xs, module_arch)
    outputs = supernet.head.extract(xs)
    return keras.Model(images, outputs, name=name or f"subnet_{arch.hash()}")


def load_subnet_weights(supernet: ScaleNASSupernet, static: keras.Model) -> int:
    """Copies the weights of an extracted model (e.g. a trained teacher) back into `supernet`.

    Extraction keeps every leaf layer's name, so layers are matched by name; a layer of `static`
    that the supernet lacks, or of another shape, is an error. Returns the number of layers copied.
    """
    if not supernet.built:
        supernet.build((None, None, None, 3))
    leaves = {l.name: l for l in supernet._flatten_layers(include_self=False, recursive=True) if l.weights}
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
