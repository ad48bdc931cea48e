"""Leaf-layer factories shared by the supernet layers, and the cloning used by extraction.

Leaf layers are standard Keras layers with globally unique names; an extracted subnet holds clones
of them (same name, same config, copied weights), so it loads and serves without scalenas_tf.
"""

import json
import weakref

import keras
import numpy as np
import tensorflow as tf

# PyTorch BatchNorm2d defaults (momentum 0.1 on the new value, eps 1e-5), as in the HRNet code.
# Keras's momentum weighs the old moving statistics: PyTorch's momentum m is Keras's 1 - m.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def conv2d(filters, kernel_size, strides=1, use_bias=False, name=None):
    """A Conv2D with PyTorch's `padding=k // 2`: "same" at stride 1; stride 2 pads explicitly.

    Stride-2 convs are "valid" after a symmetric 1-pixel zero pad (see `call_padded`): Keras "same"
    pads only bottom/right for even inputs, which would not match the reference networks.
    """
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same" if strides == 1 else "valid",
        use_bias=use_bias,
        kernel_initializer="he_normal",
        name=name,
    )


@keras.saving.register_keras_serializable(package="scalenas")
class SupernetBatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization whose training pass is one fused op; inference is Keras's own.

    Keras's training pass builds ~40 graph ops per layer (~95 with its gradient); a supernet holds
    hundreds of BN layers inside `tf.cond` branches, so those ops dominated the trace and graph
    optimization time of the train step. `FusedBatchNorm` (`V3` for float16/bfloat16) is one op (one for
    its gradient) and keeps the moving variance unbiased, as PyTorch's BatchNorm does. Inference goes through
    `keras.layers.BatchNormalization.call`, so an extracted subnet (which holds the standard layer,
    `static_class`) computes exactly what the supernet does.
    """

    static_class = keras.layers.BatchNormalization

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.axis not in (-1, len(inputs.shape) - 1):
            return super().call(inputs, training=training, mask=mask)
        x = inputs if inputs.dtype in (tf.float16, tf.bfloat16, tf.float32) else tf.cast(inputs, tf.float32)
        # float32 runs `FusedBatchNorm`, the same kernels and bits as `V3` (its gradient too), whose batch
        # statistics TF's gradient tape lets go without gradients: for a `V3` op it makes a zeros constant for
        # each of four outputs, unused (3,104 of the full ScaleNAS space's 48k top-level train ops).
        fused = tf.raw_ops.FusedBatchNorm if x.dtype == tf.float32 else tf.raw_ops.FusedBatchNormV3
        y, mean, variance = fused(
            x=x,
            scale=tf.cast(self.gamma, tf.float32),
            offset=tf.cast(self.beta, tf.float32),
            mean=tf.cast(self.moving_mean, tf.float32),
            variance=tf.cast(self.moving_variance, tf.float32),
            epsilon=self.epsilon,
            exponential_avg_factor=1.0 - self.momentum,
            data_format="NHWC",
            is_training=True,
        )[:3]
        self.moving_mean.assign(tf.cast(mean, self.moving_mean.dtype))
        self.moving_variance.assign(tf.cast(variance, self.moving_variance.dtype))
        return tf.cast(y, self.compute_dtype)


def static_value(value):
    """`value` as a numpy array when it is known while tracing (a Python or numpy value, an eager tensor, a
    constant), else None. Layers branch in Python on a known arch (no `tf.cond`: a fixed arch, e.g. the in-place
    teacher's largest, traces as a plain graph) and with `tf.cond` on an arch only known when the step runs."""
    if isinstance(value, (bool, int, np.integer, np.bool_, np.ndarray, list, tuple)):
        return np.asarray(value)
    if tf.is_tensor(value):
        return tf.get_static_value(value)
    return None


def dims(x, axes):
    """`x`'s sizes along `axes`: static ints where known, else scalar tensors (a `tf.shape` op only then)."""
    static = x.shape
    dynamic = tf.shape(x) if any(static[a] is None for a in axes) else None
    return tuple(static[a] if static[a] is not None else dynamic[a] for a in axes)


def gate(on, run, skip):
    """`run()` if `on` else `skip()`: in Python when `on` is known while tracing (`static_value`), else `tf.cond`."""
    known = static_value(on)
    if known is not None:
        return run() if bool(known) else skip()
    return tf.cond(on, run, skip)


# Per outermost traced graph: the functions `gate_layers` traced for it, by key.
_SHARED_GATES = weakref.WeakKeyDictionary()


def gate_layers(on, layers, run, skip, tensors, key=()):
    """`run(layers, *tensors)` if `on` else `skip(*tensors)`: `gate`, traced once for all layers of one config.

    `gate`'s cond traces its branches, and its gradient builds their gradient graphs, once per gated layer: most
    of a supernet's trace. Here the layers' computation sits in a nested `tf.function` that takes their variables
    as arguments, traced (with its gradient) once per outermost traced function for all `layers` of the same
    classes and configs (names aside), the same `key` and the same input signature (Python values in `tensors`
    are part of it): holding the cond when `on` is only known when the step runs, just `run` when it is known
    true while tracing (a fixed arch, e.g. the in-place teacher's largest). The computation reads the variables
    and writes what the layers write (BN's moving statistics), as `gate`'s would; TF inlines the calls before it
    optimizes the graph. `run` and `skip` must compute the same thing for every `layers` of one `key` (the first
    to come traces it): what else differs goes into `key` or `tensors`. Eager execution, a distribution
    strategy, unbuilt layers or an unhashable `key` take `gate`'s path; a known false `on` is `skip(*tensors)`.

    Args:
        on: scalar bool tensor (or a Python/numpy bool).
        layers: a built `keras.layers.Layer` or a sequence of them (empty: no weights).
        run: `run(layers, *tensors)`, the layers' computation.
        skip: `skip(*tensors)`, what comes out when they do not run (same structure, dtypes and shapes).
        tensors: tuple of the inputs of `run` and `skip` (tensors, nested structures, Python values).
        key: hashable; what else `run` and `skip` depend on (e.g. `training`).
    """
    layers = tuple(layers) if isinstance(layers, (list, tuple)) else (layers,)
    known = static_value(on)
    if known is not None and not bool(known):
        return skip(*tensors)
    graph = tf.compat.v1.get_default_graph()
    shareable = graph.building_function and all(layer.built for layer in layers) and not tf.distribute.has_strategy()
    if shareable:  # (a mirrored variable is no function argument)
        configs = [{k: v for k, v in layer.get_config().items() if k != "name"} for layer in layers]
        full_key = (
            known is None,
            tuple(type(layer) for layer in layers),
            json.dumps(configs, sort_keys=True, default=str),
            key,
        )
        try:
            hash(full_key)
        except TypeError:
            shareable = False
    if not shareable:
        return gate(on, lambda: run(layers, *tensors), lambda: skip(*tensors))
    outer = graph  # the outermost function graph (above it: the graph eager code traces from, shared by all)
    while getattr(outer, "outer_graph", None) is not None and outer.outer_graph.building_function:
        outer = outer.outer_graph
    functions = _SHARED_GATES.setdefault(outer, {})
    if full_key not in functions:
        functions[full_key] = _shared_gate(layers, run, skip if known is None else None)
    # The `tf.Variable`s themselves go in (handles alone would take no gradient: the tape sees a variable only
    # when it is read or passed in).
    variables = [_tf_variable(v) for v in _variables_of(layers)]
    on = tf.convert_to_tensor(on if known is None else True, tf.bool)
    return functions[full_key](on, tuple(tensors), variables)


def _variables_of(layers):
    """The layers' Keras variables, in the one order both sides of a shared gate use: trainable, then not."""
    return [v for layer in layers for v in layer.trainable_variables + layer.non_trainable_variables]


def _tf_variable(variable):
    """The `tf.Variable` of a Keras variable (its `.handle` reads a cast value inside an autocast scope)."""
    return getattr(variable, "_value", variable)


def _shared_gate(proto, run, skip):
    """A `tf.function` of `gate_layers`'s computation: `run` on `proto`, its Keras variables standing for the
    `tf.Variable`s given (read, and written where the call writes them), in a cond with `skip` unless `skip` is
    None (then `on` is ignored: known true)."""

    def gated(on, tensors, tf_variables):
        variables = _variables_of(proto)

        def ran():
            values = [tf.raw_ops.ReadVariableOp(resource=t.handle, dtype=t.dtype) for t in tf_variables]
            with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
                given = [scope.get_current_value(v) for v in variables]
                outputs = run(proto, *tensors)
            for target, variable, old in zip(tf_variables, variables, given):
                new = scope.get_current_value(variable)
                if new is not old:  # written by the call
                    tf.raw_ops.AssignVariableOp(resource=target.handle, value=tf.cast(new, target.dtype))
            return outputs

        return ran() if skip is None else tf.cond(on, ran, lambda: skip(*tensors))

    return tf.function(gated, autograph=False)


def chosen(variables, index):
    """`variables[index]` as a tensor (`index` a scalar int tensor): the variable itself when there is one,
    else a gather from the stack of their values. The gradient reaches only the chosen one (zeros elsewhere)."""
    if len(variables) == 1:
        return variables[0]
    return tf.gather(tf.stack([tf.convert_to_tensor(v) for v in variables]), index)


def group_indices(count, same):
    """Indices `0..count-1` grouped in order: `i` joins the first group whose first index `f` has `same(f, i)`."""
    groups = []
    for i in range(count):
        for members in groups:
            if same(members[0], i):
                members.append(i)
                break
        else:
            groups.append([i])
    return tuple(tuple(members) for members in groups)


def call_chosen(layers, index, *args, **kwargs):
    """`layers[index](*args, **kwargs)` for built layers of one config, as one computation: the first layer's
    `call` run statelessly on the chosen layer's weights (gathered). The chosen layer's non-trainable state (BN
    moving statistics) moves as its own call would move it; every other layer's is written back its own value.
    Choice ops that differ only in kernel size run this way for all but the depthwise conv, so a slot's
    gradient holds one op's graph instead of one per choice.
    """
    if len(layers) == 1:
        return layers[0](*args, **kwargs)
    trainable = [chosen(vs, index) for vs in zip(*(layer.trainable_variables for layer in layers))]
    non_trainable = [chosen(vs, index) for vs in zip(*(layer.non_trainable_variables for layer in layers))]
    outputs, updated = layers[0].stateless_call(trainable, non_trainable, *args, **kwargs)
    for k, (new, old) in enumerate(zip(updated, non_trainable)):
        if new is not old:  # written by the call
            for j, layer in enumerate(layers):
                variable = layer.non_trainable_variables[k]
                variable.assign(tf.where(tf.equal(index, j), new, variable))
    return outputs


def batch_norm(name=None, bn_momentum=BN_MOMENTUM):
    """A `SupernetBatchNorm` with PyTorch's epsilon; `bn_momentum` in Keras's convention (PyTorch's 0.1 is 0.9)."""
    is_number = isinstance(bn_momentum, (int, float, np.integer, np.floating)) and not isinstance(bn_momentum, bool)
    if not is_number or not 0.0 <= bn_momentum < 1.0:
        raise ValueError(
            "`bn_momentum` must be a number in [0, 1) (Keras convention: the weight of the old moving "
            f"statistics, PyTorch's 1 - momentum). Received: bn_momentum={bn_momentum!r}"
        )
    return SupernetBatchNorm(momentum=float(bn_momentum), epsilon=BN_EPSILON, name=name)


def depthwise(kernel_size, strides, name):
    """A DepthwiseConv2D with PyTorch's symmetric `k // 2` pad ("same" at stride 1, explicit at 2)."""
    return keras.layers.DepthwiseConv2D(
        kernel_size,
        strides=strides,
        padding="same" if strides == 1 else "valid",
        use_bias=False,
        depthwise_initializer="he_normal",
        name=name,
    )


def pad_for(conv):
    """The explicit symmetric pad a strided conv of `conv2d`/`depthwise` needs (0 at stride 1)."""
    return conv.kernel_size[0] // 2 if conv.strides[0] != 1 else 0


def call_padded(conv, x):
    """Calls a conv of `conv2d`/`depthwise` in the supernet, padding symmetrically first at stride 2."""
    pad = pad_for(conv)
    if pad:
        x = keras.ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    return conv(x)


def clone_layer(layer, x, weights=None):
    """Applies a fresh standard-Keras copy of `layer` (same name and config) to the KerasTensor `x`.

    The copy holds `weights` (default: `layer`'s own). Input channels follow `x`, so a folded kernel
    may change them; a Conv2D's output channels follow the kernel given (a backward ELS fold that
    changes the width).
    """
    config = layer.get_config()
    if weights is not None and "filters" in config:
        config["filters"] = int(np.shape(weights[0])[-1])
    clone = getattr(layer, "static_class", layer.__class__).from_config(config)
    y = clone(x)
    clone.set_weights(layer.get_weights() if weights is None else weights)
    return y


def clone_padded(conv, x, kernel=None):
    """`clone_layer` for a conv of `conv2d`/`depthwise`: an explicit ZeroPadding2D first at stride 2;
    `kernel` replaces its kernel."""
    pad = pad_for(conv)
    if pad:
        x = keras.layers.ZeroPadding2D(pad, name=f"{conv.name}_pad")(x)
    return clone_layer(conv, x, None if kernel is None else [kernel])


def channels_shape(channels):
    return (None, None, None, channels)
