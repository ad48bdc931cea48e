"""ScaleNAS subnet extraction: arch -> a plain Keras functional model with the supernet's weights copied."""

import keras

from scalenas_tf.families.scalenas.space import ScaleNASArch
from scalenas_tf.families.scalenas.supernet import ScaleNASSupernet
from scalenas_tf.registry import Extraction


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


def extract(supernet: ScaleNASSupernet, arch: ScaleNASArch, input_size, name=None) -> Extraction:
    """`extract_subnet` as the family's extractor; the report is empty (nothing is folded)."""
    return Extraction(extract_subnet(supernet, arch, input_size, name=name))
