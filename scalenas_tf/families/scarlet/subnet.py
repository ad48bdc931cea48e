"""SCARLET subnet extraction: arch -> a plain Keras model with copied weights and the ELS convs folded.

The fold plan (`space.fold_plan`) decides, per run of identity layers, whether its composed
linear map goes forward into the next 1x1 conv, backward into the previous projection conv + BN, or
stays a 1x1 conv; this module applies it to the weights. Each fold is exact in real arithmetic, so
the extracted model computes what the supernet computes for that path, up to float32 rounding.
"""

from __future__ import annotations

import keras
import numpy as np

from scalenas_tf.families.scarlet.space import BACKWARD
from scalenas_tf.families.scarlet.space import FORWARD
from scalenas_tf.families.scarlet.space import IDENTITY
from scalenas_tf.families.scarlet.space import KEPT
from scalenas_tf.families.scarlet.space import STEM
from scalenas_tf.families.scarlet.space import ScarletArch
from scalenas_tf.families.scarlet.space import fold_plan
from scalenas_tf.families.scarlet.stabilizer import fold_into_projection
from scalenas_tf.layers import common
from scalenas_tf.registry import Extraction


def extract_scarlet_subnet(supernet, arch: ScarletArch, input_size=(224, 224), name=None):
    """Builds the static network of `arch` from standard Keras layers, ELS convs folded where exact.

    Args:
        supernet: a `ScarletSupernet` (weights are copied, never shared).
        arch: a `ScarletArch` of `supernet.space`.
        input_size: `(height, width)` of the static input.
        name: model name; defaults to `"subnet_<arch hash>"`.

    Returns:
        `(model, report)`: the `keras.Model` (normalized images -> logits), and the fold report, a list
        of `Fold.to_dict()` (one per run of identity layers, with its action; `"kept"` entries say
        why that 1x1 conv could not be folded). Empty for `identity_op="skip"`.
    """
    space = supernet.space
    space.validate(arch)
    if len(input_size) != 2 or any(not isinstance(v, (int, np.integer)) or v < 1 for v in input_size):
        raise ValueError(f"`input_size` must be (height, width) positive ints. Received: input_size={input_size}")
    if not supernet.built:
        supernet.build((None, None, None, 3))
    plan = fold_plan(space, arch)
    starts = {f.layers[0]: f for f in plan}
    covered = {i for f in plan for i in f.layers}
    into = {f.target: f for f in plan if f.action in (FORWARD, BACKWARD)}

    images = keras.Input((*input_size, 3), name="images")
    x = common.clone_padded(supernet.stem_conv, images)
    x = common.clone_layer(supernet.stem_bn, x)
    x = keras.layers.ReLU(6.0, name="stem_relu6")(x)
    x = common.clone_layer(supernet.sep_dw, x)
    x = common.clone_layer(supernet.sep_dw_bn, x)
    x = keras.layers.ReLU(6.0, name="sep_relu6")(x)
    stem_fold = into.get(STEM)
    if stem_fold is not None:
        kernel, bn = fold_into_projection(supernet.sep_pw, supernet.sep_pw_bn, _matrix(supernet, stem_fold))
        x = common.clone_layer(supernet.sep_pw_bn, common.clone_layer(supernet.sep_pw, x, [kernel]), bn)
    else:
        x = common.clone_layer(supernet.sep_pw_bn, common.clone_layer(supernet.sep_pw, x))

    pending = None  # a forward fold's matrix, waiting for the next 1x1 conv
    for i, choice in enumerate(arch.choices):
        layer = supernet.choice_layers[i]
        if i in covered:
            fold = starts.get(i)
            if fold is None:
                continue
            if fold.pool:
                x = keras.layers.MaxPooling2D(3, 2, padding="same", name=f"{layer.name}_els_pool")(x)
            if fold.action == FORWARD:
                pending = _matrix(supernet, fold)
            elif fold.action == KEPT:
                w = _matrix(supernet, fold)
                conv = keras.layers.Conv2D(w.shape[1], 1, use_bias=False, name=f"{layer.name}_els_conv")
                x = conv(x)
                conv.set_weights([w[None, None].astype(np.float32)])
            continue
        if choice == IDENTITY:  # a plain skip (identity_op="skip")
            continue
        block = layer.op(choice)
        expand_kernel = None
        if pending is not None:
            expand_kernel = _compose(pending, block.expand_conv)
            pending = None
        backward = into.get(i)
        project = _matrix(supernet, backward) if backward is not None and backward.action == BACKWARD else None
        x = block.extract(x, expand_kernel=expand_kernel, project_fold=project)

    head_kernel = _compose(pending, supernet.head_conv) if pending is not None else None
    x = common.clone_layer(supernet.head_conv, x, None if head_kernel is None else [head_kernel])
    x = common.clone_layer(supernet.head_bn, x)
    x = keras.layers.ReLU(6.0, name="head_relu6")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = common.clone_layer(supernet.classifier, x)
    model = keras.Model(images, outputs, name=name or f"subnet_{arch.hash()}")
    return model, [f.to_dict() for f in plan]


def _matrix(supernet, fold):
    """The composed ELS map of `fold` as an `(in, out)` float64 matrix (`y = x @ M` per pixel)."""
    m = None
    for i in fold.layers:
        w = np.asarray(supernet.choice_layers[i].op(IDENTITY).matrix, np.float64)
        m = w if m is None else m @ w
    return m


def _compose(matrix, conv):
    """The kernel of `conv` applied after the map `matrix`: `(x @ M) @ K = x @ (M K)`."""
    kernel = np.asarray(conv.kernel, np.float64)[0, 0]
    return (matrix @ kernel)[None, None].astype(np.float32)


def extract(supernet, arch: ScarletArch, input_size, name=None) -> Extraction:
    """`extract_scarlet_subnet` as the family's extractor: the report holds the folds (`els_folds`)."""
    model, folds = extract_scarlet_subnet(supernet, arch, input_size, name=name)
    lines = tuple(
        f"ELS layers {list(f['layers'])}: {f['action']}"
        + (f" into {f['target']}" if f["target"] is not None else f" ({f['reason']})")
        for f in folds
    )
    return Extraction(model, {"els_folds": folds}, lines)
