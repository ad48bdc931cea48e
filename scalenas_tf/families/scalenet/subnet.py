"""Extraction: a ScaleNet arch -> the plain Keras network (`network.py`) holding the supernet's sliced weights."""

from __future__ import annotations

import keras

from scalenas_tf.families.scalenet import network
from scalenas_tf.families.scalenet.space import ScaleNetArch
from scalenas_tf.registry import Extraction


def _sliced_conv(kernel, c_in, c_out):
    return kernel.numpy()[:, :, :c_in, :c_out]


def _block_weights(op, block):
    """`{layer name suffix: weights}` of one block from its supernet op, sliced to the block's widths."""
    c_in, c_out, hid, sq = block.in_channels, block.out_channels, block.hidden, block.squeeze
    weights = {}
    if block.has_expand:
        weights["expand"] = [_sliced_conv(op.expand_kernel, c_in, hid)]
        weights["expand_bn"] = op.expand_bn.sliced_weights(hid)
    weights["dw"] = [op.dw_kernel.numpy()[:, :, :hid, :]]
    weights["dw_bn"] = op.dw_bn.sliced_weights(hid)
    if block.se:
        weights["se_reduce"] = [_sliced_conv(op.se_reduce_kernel, hid, sq), op.se_reduce_bias.numpy()[:sq]]
        weights["se_expand"] = [_sliced_conv(op.se_expand_kernel, sq, hid), op.se_expand_bias.numpy()[:hid]]
    weights["project"] = [_sliced_conv(op.project_kernel, hid, c_out)]
    weights["project_bn"] = op.project_bn.sliced_weights(c_out)
    return weights


def extract(supernet, arch: ScaleNetArch, input_size=None, name=None) -> Extraction:
    """The static network of `arch` with the supernet's weights, computing what the supernet computes.

    Args:
        supernet: a built `ScaleNetSupernet`.
        arch: a `ScaleNetArch` of its space (a trained strategy or any d, w within the supernet's capacity).
        input_size: `(height, width)` the model takes; default the arch's resolution. Another size
            gets a bilinear `Resizing` to the arch's resolution first, as the supernet resizes.
        name: the model's name.

    Raises:
        ArchError: the arch is not in the space. ValueError: its depth or width exceeds the supernet's slots
            or channels.
    """
    space = supernet.space
    if not supernet.built:
        supernet.build()
    net = space.generate(arch)
    px = net.resolution
    size = (px, px) if input_size is None else tuple(int(v) for v in input_size)
    slots = supernet.tables.slots
    for i, depth in enumerate(net.depths):
        if depth > slots[i]:
            raise ValueError(
                f"Arch {space.describe(arch)}: stage {i + 1} has {depth} blocks; the supernet has {slots[i]} slots"
            )
    widest = max(supernet.space.width_values)
    if arch.width > widest:
        raise ValueError(
            f"Arch {space.describe(arch)}: width {arch.width:g} exceeds the supernet's widest {widest:g} "
            "(its weights hold no channels beyond it)"
        )
    model = network.build_network(space, net, supernet.num_classes, input_size=(px, px), name=name or "scalenet_subnet")
    weights = {
        "stem_conv": [_sliced_conv(supernet.stem_conv.kernel, 3, net.stem_channels)],
        "stem_bn": supernet.stem_bn.sliced_weights(net.stem_channels),
        "head_conv": [_sliced_conv(supernet.head_conv.kernel, net.blocks[-1].out_channels, net.head_channels)],
        "head_bn": supernet.head_bn.sliced_weights(net.head_channels),
        "classifier": [w.numpy() for w in supernet.classifier.weights],
    }
    choices = [space.stage_choices(i) for i in range(len(net.depths))]
    for block in net.blocks:
        choice = f"K{block.kernel}E{block.expand}" + ("+SE" if block.se else "")
        op = supernet.ops[block.stage][block.slot][choices[block.stage].index(choice)]
        for suffix, value in _block_weights(op, block).items():
            weights[f"{network.block_name(block)}_{suffix}"] = value
    for layer in model.layers:
        if layer.weights:
            try:
                layer.set_weights(weights.pop(layer.name))
            except ValueError as e:
                raise ValueError(f"Extraction of {space.describe(arch)}: layer {layer.name}: {e}") from None
    if weights:
        raise ValueError(f"Extraction left supernet weights without a layer: {sorted(weights)}")
    if size != (px, px):
        inputs = keras.Input((*size, 3), name="image")
        # training=False: Resizing defaults to training=True, which Keras would hand on to every BN.
        resized = keras.layers.Resizing(px, px, interpolation="bilinear", name="resize")(inputs, training=False)
        model = keras.Model(inputs, model(resized), name=model.name)
    report = {"strategy": {"depth": arch.depth, "width": arch.width, "resolution": px}, "depths": list(net.depths)}
    return Extraction(model, report)
