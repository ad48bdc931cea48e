"""Quantization-aware training (QAT) of an extracted subnet and its full-integer TFLite file (the `[qat]` extra).

Why a twin: tensorflow-model-optimization (tfmot), the library that inserts the fake-quantization ops of
QAT, only wraps tf_keras (Keras 2) functional models, and the library builds Keras 3 models.
`tf_keras_twin` therefore rebuilds an extracted static subnet (a Keras 3 functional model made of
standard layers) as a tf_keras functional model: the same layer graph, each layer re-created from its
config by class name, the weights copied. Nested functional models (ScaleNet's extraction at another
resolution puts `Resizing` in front of the network) are inlined, since tfmot rejects nested models.

`quantize_aware_tflite` quantizes the twin with tfmot, fine-tunes it for a few steps, and converts it to
a full-integer TFLite file with the serving contract of `serving.py` (`serving_default`, input `images`
in [0, 1], the task's output names). The input normalization is a `Rescaling` layer inside the
quantized model, so the [0, 1] images get their own int8 range (scale 1/255, zero point -128). The
post-processing (softmax; bilinear resize + argmax for `segmentation`) is traced after the quantized
model, outside tfmot, and needs nothing special: the converter quantizes it from the representative
data (int8 SOFTMAX with its fixed output range, int8 RESIZE_BILINEAR, ARG_MAX on int8 giving int32),
so the file has int8 kernels throughout and float only at a float input/output.

Importing this module is free: tfmot and tf_keras are imported inside the functions. Side effect:
importing tfmot sets `TF_USE_LEGACY_KERAS=1` for the whole process, and a `tf.keras` first touched after
that is Keras 2 (tf_keras). `_import_tfmot` contains it: it resolves `tf.keras` before the import
(Keras 3 unless the user chose otherwise; tfmot then picks tf_keras itself) and restores the variable
after, so the process is left as it was. Code that imports tfmot directly still gets the side effect.
The library itself always uses `import keras` (Keras 3). `tf_keras_twin` imports only tf_keras, which
sets nothing.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import itertools
import os
import time

import keras
import numpy as np
import tensorflow as tf

from scalenas_tf.data import pipeline
from scalenas_tf.export import serving
from scalenas_tf.training import losses

# Keras 3 layer classes with a tf_keras class of the same name and the same computation (each checked
# by tests/export/test_qat.py).
SUPPORTED_LAYERS = frozenset(
    "Activation Add AveragePooling2D BatchNormalization Concatenate Conv2D Dense DepthwiseConv2D Dropout Flatten "
    "GlobalAveragePooling2D MaxPooling2D Multiply ReLU Reshape Resizing Softmax UpSampling2D ZeroPadding2D".split()
)
# Activations whose tf_keras function is missing or differs from Keras 3's (tf_keras's hard_sigmoid is
# 0.2 x + 0.5; Keras 3's is relu6(x + 3) / 6): the twin uses its own, registered as "scalenas>NAME".
_OWN_ACTIVATIONS = ("hard_sigmoid", "hard_silu", "hard_swish")
# Config values equal to the Keras 3 default although they are spelled differently.
_SAME_AS_DEFAULT = {"data_format": ("channels_last",)}
# Layers tfmot has no quantize config for but that only move or combine values elementwise: their
# output gets an int8 range (moving-average fake quantization) and nothing else.
_OUTPUT_ONLY = frozenset({"Activation", "Multiply", "Resizing", "Rescaling", "Softmax"})
_INSTALL_HINT = 'pip install -e ".[qat]"'
# Fine-tuning batches that calibrate when no `representative` is given.
_CALIBRATION_BATCHES = 4


def unavailable_reason() -> str | None:
    """None when the `[qat]` extra (tensorflow-model-optimization, tf_keras) is importable, else why not.

    Looks the packages up without importing them (importing tfmot sets TF_USE_LEGACY_KERAS=1).
    """
    missing = [name for name in ("tensorflow_model_optimization", "tf_keras") if importlib.util.find_spec(name) is None]
    if missing:
        return f"QAT needs the [qat] extra ({', '.join(missing)} not installed): {_INSTALL_HINT}"
    return None


def _require() -> None:
    reason = unavailable_reason()
    if reason:
        raise ImportError(reason)


def _import_tfmot():
    """`tensorflow_model_optimization`, imported without leaving TF_USE_LEGACY_KERAS=1 behind."""
    previous = os.environ.get("TF_USE_LEGACY_KERAS")
    tf.keras.__name__  # noqa: B018  (resolves the lazy `tf.keras` before tfmot sets the variable)
    import tensorflow_model_optimization as tfmot

    if previous is None:
        os.environ.pop("TF_USE_LEGACY_KERAS", None)
    else:
        os.environ["TF_USE_LEGACY_KERAS"] = previous
    return tfmot


# === The tf_keras twin ===


def tf_keras_twin(static: keras.Model):
    """The tf_keras (Keras 2) functional model computing what the Keras 3 functional `static` computes.

    Args:
        static: keras.Model. A Keras 3 functional model of standard layers (`SUPPORTED_LAYERS`), e.g.
            `family.extract(supernet, arch, input_size).model`. Nested functional models are inlined.

    Returns:
        A built `tf_keras.Model` with the same inputs, layer names, graph and weights, in float32.

    Raises:
        ImportError: tf_keras is not installed.
        ValueError: `static` is not functional, or a layer has no tf_keras counterpart here (the message
            names the layer and its class), or a config value tf_keras cannot express.
    """
    if importlib.util.find_spec("tf_keras") is None:
        raise ImportError(f"tf_keras_twin needs tf_keras: {_INSTALL_HINT}")
    import tf_keras

    return _build_twin(static, tf_keras, normalize=False)


def _build_twin(static, tf_keras, normalize: bool):
    if not isinstance(static, keras.Model) or not hasattr(static, "_nodes_by_depth"):
        raise ValueError(
            f"tf_keras_twin needs a Keras 3 functional model. Received: {type(static).__name__} {static!r:.80}"
        )
    inputs = [_twin_input(x, tf_keras, "images" if normalize else None) for x in static.inputs]
    features = list(inputs)
    if normalize:
        if len(inputs) != 1:
            raise ValueError(f"The serving contract has one image input. Received: {len(inputs)} inputs")
        std = np.asarray(pipeline.STD, np.float32)
        mean = np.asarray(pipeline.MEAN, np.float32)
        rescale = tf_keras.layers.Rescaling(
            scale=(1.0 / std).tolist(), offset=(-mean / std).tolist(), name="normalize", dtype="float32"
        )
        features = [rescale(inputs[0])]
    outputs = _run_graph(static, features, tf_keras, names=set())
    return tf_keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs, name=static.name)


def _twin_input(x, tf_keras, name=None):
    shape = tuple(x.shape)
    layer_name = name or x._keras_history.operation.name
    return tf_keras.Input(shape=shape[1:], batch_size=shape[0], dtype="float32", name=layer_name)


def _run_graph(model, inputs, tf_keras, names):
    """Calls a twin layer for every node of `model`, deepest first (as Keras's own graph runner does).

    Returns the twin tensors of `model.outputs`, in its output structure.
    """
    values = {id(x): y for x, y in zip(model.inputs, inputs)}

    def lookup(x):
        return values[id(x)] if isinstance(x, keras.KerasTensor) else x

    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input:
                continue
            op = node.operation
            args, kwargs = node.arguments.convert(lookup)
            kwargs = _call_kwargs(op, kwargs)
            if isinstance(op, keras.Model):
                outputs = _run_graph(op, keras.tree.flatten((args, kwargs)), tf_keras, names)
            else:
                twin = _twin_layer(op, tf_keras, names)
                outputs = twin(*args, **kwargs)
                _copy_weights(op, twin)
            for x, y in zip(node.outputs, keras.tree.flatten(outputs)):
                values[id(x)] = y
    return keras.tree.map_structure(lambda x: values[id(x)], model._outputs_struct)


def _call_kwargs(op, kwargs):
    # `training` is the twin caller's to choose; Keras 3 records `mask=None` for masking-aware layers.
    kwargs = {k: v for k, v in kwargs.items() if k != "training" and v is not None}
    unknown = sorted(kwargs) if not isinstance(op, keras.Model) else []
    if unknown:
        raise ValueError(
            f"Layer {op.name!r} ({type(op).__name__}) is called with arguments {unknown} the twin cannot pass"
        )
    return kwargs


def _twin_layer(layer, tf_keras, names):
    cls_name = type(layer).__name__
    if cls_name not in SUPPORTED_LAYERS:
        raise ValueError(
            f"Layer {layer.name!r} of class {cls_name} has no tf_keras twin. "
            f"Supported classes: {sorted(SUPPORTED_LAYERS)}"
        )
    target = getattr(tf_keras.layers, cls_name)
    accepted = set()
    for klass in target.__mro__:
        if "__init__" in vars(klass):
            accepted.update(inspect.signature(klass.__init__).parameters)
    defaults = inspect.signature(type(layer).__init__).parameters
    config = {}
    for key, value in layer.get_config().items():
        if key == "dtype":
            config[key] = "float32"  # QAT and int8 conversion start from float32 weights.
        elif key.endswith("_initializer"):
            continue  # The weights are copied; Keras 3 serializes initializers in its own format.
        elif key == "activation":
            config[key] = _activation(value, layer, tf_keras)
        elif key in accepted and not isinstance(value, dict):
            config[key] = value
        elif not _is_default(key, value, defaults):
            raise ValueError(
                f"Layer {layer.name!r} ({cls_name}): tf_keras cannot express {key}={value!r} "
                "(only the Keras 3 default can be dropped)"
            )
    if config.get("name") in names:
        config["name"] = f"{config['name']}_{len(names)}"
    names.add(config.get("name"))
    return target(**config)


def _is_default(key, value, defaults) -> bool:
    if value is None or value in _SAME_AS_DEFAULT.get(key, ()):
        return True
    param = defaults.get(key)
    if param is None or param.default is inspect.Parameter.empty:
        return False
    default = param.default
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return list(value) == list(default)
    return value == default


def _activation(value, layer, tf_keras):
    if not isinstance(value, str):
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}): only activations named by a string have a "
            f"twin. Received: activation={value!r:.80}"
        )
    if value in _OWN_ACTIVATIONS:
        return _own_activations(tf_keras)[value]
    try:
        return tf_keras.activations.get(value)
    except ValueError:
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}): tf_keras has no activation {value!r}"
        ) from None


@functools.cache
def _own_activations(tf_keras):
    register = tf_keras.saving.register_keras_serializable(package="scalenas")

    @register
    def hard_sigmoid(x):
        return tf.nn.relu6(x + 3.0) / 6.0

    @register
    def hard_silu(x):
        return x * tf.nn.relu6(x + 3.0) / 6.0

    return {"hard_sigmoid": hard_sigmoid, "hard_silu": hard_silu, "hard_swish": hard_silu}


def _copy_weights(layer, twin) -> None:
    weights = layer.get_weights()
    expected = [tuple(w.shape) for w in twin.weights]
    if [w.shape for w in weights] != expected:
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}): weight shapes {[w.shape for w in weights]} "
            f"do not match the tf_keras layer's {expected}"
        )
    if weights:
        twin.set_weights(weights)


# === Quantization-aware training ===


@functools.cache
def _output_quantize_config_class():
    import tf_keras

    tfmot = _import_tfmot()

    @tf_keras.saving.register_keras_serializable(package="scalenas")
    class OutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        """Fake-quantizes a layer's output only (moving-average range, asymmetric 8 bits)."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return [
                tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
                    num_bits=8, per_axis=False, symmetric=False, narrow_range=False
                )
            ]

        def get_config(self):
            return {}

    return OutputQuantizeConfig


def _quantize(twin):
    """tfmot's QAT model of `twin`: its registry's configs where it has one, an output-only config for
    the elementwise layers it lacks (`_OUTPUT_ONLY`) and BN layers no Conv/Dense owns, other layers
    left in float.

    Returns (qat_model, unquantized layer names).
    """
    import tf_keras

    qk = _import_tfmot().quantization.keras
    registry = qk.default_8bit.Default8BitQuantizeScheme().get_quantize_registry()
    config_class = _output_quantize_config_class()
    unquantized = []

    def annotate(layer):
        if isinstance(layer, tf_keras.layers.InputLayer):
            return layer
        if _after_own_layer(layer, tf_keras) or _registry_supports(registry, layer):
            return qk.quantize_annotate_layer(layer)
        if type(layer).__name__ in _OUTPUT_ONLY or isinstance(layer, tf_keras.layers.BatchNormalization):
            return qk.quantize_annotate_layer(layer, quantize_config=config_class())
        unquantized.append(layer.name)
        return layer

    scope = {"OutputQuantizeConfig": config_class, **_own_activations(tf_keras)}
    with qk.quantize_scope(scope):
        annotated = tf_keras.models.clone_model(twin, clone_function=annotate)
        annotated.set_weights(twin.get_weights())
        qat = qk.quantize_apply(annotated)
    return qat, unquantized


def _after_own_layer(layer, tf_keras) -> bool:
    """A BN layer that tfmot's Conv/Dense + BN transforms take over: its input comes from a Conv2D,
    DepthwiseConv2D or Dense layer that feeds nothing else. (tfmot's registry has no config for BN
    alone, so other BN layers get an output-only range.)"""
    if not isinstance(layer, tf_keras.layers.BatchNormalization) or len(layer._inbound_nodes) != 1:
        return False
    parents = tf.nest.flatten(layer._inbound_nodes[0].inbound_layers)
    owners = (tf_keras.layers.Conv2D, tf_keras.layers.DepthwiseConv2D, tf_keras.layers.Dense)
    return len(parents) == 1 and isinstance(parents[0], owners) and len(parents[0]._outbound_nodes) == 1


def _calibrate_ranges(qat, twin, images) -> int:
    """Sets the weight ranges of `qat` from its weights and its activation ranges to the float twin's
    output ranges on `images` (a list of batches).

    tfmot starts every range at [-6, 6]; activation ranges then move with decay 0.999, so a fine-tune
    of a few hundred steps would otherwise convert with ranges close to [-6, 6]. Returns the number of
    activation ranges set.
    """
    import tf_keras

    _set_weight_ranges(qat, images[0])
    names = {layer.name for layer in twin.layers}
    pairs = []  # (min variable, max variable, twin tensor)
    for layer in qat.layers:
        if type(layer).__name__ == "QuantizeLayer":
            tensor, prefixes = twin.inputs[0], (layer.name,)
        elif hasattr(layer, "layer") and layer.layer.name in names:
            tensor, prefixes = twin.get_layer(layer.layer.name).output, ("output", "post_activation")
        else:
            continue
        variables = {v.name.rsplit("/", 1)[-1].split(":")[0]: v for v in layer.weights}
        for prefix in prefixes:
            if f"{prefix}_min" in variables and f"{prefix}_max" in variables:
                pairs.append((variables[f"{prefix}_min"], variables[f"{prefix}_max"], tensor))
    if not pairs:
        return 0
    probe = tf_keras.Model(twin.inputs, [tensor for _, _, tensor in pairs])
    low = high = None
    for batch in images:
        outputs = probe(tf.convert_to_tensor(batch, tf.float32), training=False)
        mins = np.array([float(tf.reduce_min(x)) for x in outputs])
        maxs = np.array([float(tf.reduce_max(x)) for x in outputs])
        low = mins if low is None else np.minimum(low, mins)
        high = maxs if high is None else np.maximum(high, maxs)
    for (min_var, max_var, _), lo, hi in zip(pairs, low, high):
        # The range must hold 0 (asymmetric int8 represents it exactly) and not be empty.
        min_var.assign(min(float(lo), 0.0))
        max_var.assign(max(float(hi), 0.0, min(float(lo), 0.0) + 1e-3))
    return len(pairs)


def _set_weight_ranges(qat, images) -> None:
    """One training-mode call with the BN layers frozen: tfmot's weight quantizers take their ranges
    from the weights only in training mode (they start at [-6, 6] too), and frozen tf_keras BN layers
    use their moving statistics and leave them alone."""
    import tf_keras

    norms = [getattr(layer, "layer", layer) for layer in qat.layers]
    norms = [layer for layer in norms if isinstance(layer, tf_keras.layers.BatchNormalization) and layer.trainable]
    for layer in norms:
        layer.trainable = False
    try:
        qat(tf.convert_to_tensor(images, tf.float32), training=True)
    finally:
        for layer in norms:
            layer.trainable = True


def _registry_supports(registry, layer) -> bool:
    if not registry.supports(layer):
        return False
    try:  # An Activation whose function tfmot does not know fails only here.
        registry.get_quantize_config(layer).get_output_quantizers(layer)
    except ValueError:
        return False
    return True


def _batches(train_batches, steps):
    """`steps` batches of `train_batches`, starting it again when it runs out if it can be (a list, a
    tf.data.Dataset); a one-shot iterator that runs out is an error."""
    given = 0
    while given < steps:
        iterator = iter(train_batches)
        before = given
        for batch in iterator:
            yield batch
            given += 1
            if given == steps:
                return
        if given == before or iterator is train_batches:
            raise ValueError(f"`train_batches` ran out after {given} of steps={steps} batches")


def _fine_tune(qat, task, batches, learning_rate, log, steps):
    import tf_keras

    loss_fn = losses.task_loss(task, label_smoothing=0.0) if task == "cls" else losses.task_loss(task)
    optimizer = tf_keras.optimizers.Adam(learning_rate=learning_rate)

    @tf.function(reduce_retracing=True)
    def train_step(images, targets):
        with tf.GradientTape() as tape:
            loss = loss_fn(targets, qat(images, training=True))
        grads = tape.gradient(loss, qat.trainable_variables)
        optimizer.apply_gradients(zip(grads, qat.trainable_variables))
        return loss

    history = []
    for step, (images, targets) in enumerate(batches):
        targets = tf.nest.map_structure(tf.convert_to_tensor, targets)
        loss = float(train_step(tf.convert_to_tensor(images, tf.float32), targets))
        if not np.isfinite(loss):
            raise FloatingPointError(f"QAT loss is {loss} at step {step}")
        history.append(loss)
        if log and (step == 0 or (step + 1) % 50 == 0 or step + 1 == steps):
            log(f"qat step {step + 1}/{steps}: loss {loss:.4f}")
    return history


def _convert(qat, task, input_size, representative, int8_io):
    @tf.function(input_signature=[serving.input_spec(input_size)])
    def serving_default(images):
        return serving.post_process(task, qat(images, training=False), images)

    # The converter saves the function as a SavedModel internally. Handing it the variables alone, not
    # the tf_keras model, keeps that save from tracing every layer's call again (a minute or more).
    holder = tf.Module()
    holder.weights = list(qat.weights)
    function = serving_default.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], holder)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

    def dataset():
        for images in representative:
            yield {serving.INPUT_NAME: np.asarray(images, np.float32)}

    converter.representative_dataset = dataset
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def quantize_aware_tflite(
    static: keras.Model,
    task: str,
    input_size,
    train_batches,
    steps: int,
    learning_rate: float = 1e-4,
    representative=None,
    int8_io: bool = False,
    log=print,
) -> tuple[bytes, dict]:
    """Quantization-aware fine-tuning of an extracted subnet, converted to a full-integer TFLite file.

    The model is `tf_keras_twin(static)` behind an input `Rescaling` (the serving normalization),
    quantized with tfmot's default 8-bit scheme; layers tfmot has no config for are given an
    output-only int8 range when elementwise, else left in float (listed in the report). Its ranges
    are calibrated on `representative`, it is trained with Adam on the task loss (`training.losses`,
    no label smoothing; BN in training mode, as tfmot trains), then converted with `Optimize.DEFAULT`
    and int8 builtin ops only. The post-processing (softmax; bilinear resize + argmax) is traced
    after the quantized model, and the converter quantizes it from the calibration.

    Args:
        static: keras.Model. The extracted static subnet (`family.extract(...).model`); not modified.
        task: `"seg"`, `"cls"` or `"pose"`; sets the loss and the output names (`serving.OUTPUT_NAMES`).
        input_size: `(height, width)` of the exported input.
        train_batches: iterable of `(images, targets)`: images float32 `(b, h, w, 3)` in [0, 1], targets
            as the task loss takes them (seg int labels `(b, h, w)`, 255 ignored; cls int labels `(b,)`;
            pose a dict with `heatmaps` and `target_weight`). Restarted when it runs out, if it can be.
        steps: int >= 0. Training steps.
        learning_rate: float. Adam's learning rate.
        representative: optional iterable of float32 image batches in [0, 1]. They set the initial
            weight and activation ranges before fine-tuning (tfmot starts them all at [-6, 6]) and
            calibrate the converter for the ops outside the fake-quantized model (the post-processing).
            Default: the first (up to 4) training batches.
        int8_io: bool. int8 input, and the float outputs as int8 (scales and zero points in the report);
            the int32 `segmentation` output stays int32. Default: float32 input and outputs.
        log: callable taking a string, or None.

    Returns:
        `(tflite_bytes, report)`; the report has `steps`, `loss_start` (the first step's loss, before
        any update), `loss_final`, `quantized_layers` (count of tfmot-wrapped layers),
        `calibrated_ranges` (activation ranges set from `representative`), `unquantized_layers` (names),
        `io_quantization` (`{name: (scale, zero_point)}` of the int8 inputs and outputs; empty without
        `int8_io`) and `seconds`.

    Raises:
        ImportError: the `[qat]` extra is not installed.
        ValueError: a bad `task` or `steps`, a layer without a twin, or `train_batches` ran out.
        FloatingPointError: a non-finite loss.
    """
    _require()
    if task not in serving.OUTPUT_NAMES:
        raise ValueError(f"`task` must be one of {sorted(serving.OUTPUT_NAMES)}. Received: task={task!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"`steps` must be an int >= 0. Received: steps={steps!r}")
    expected = (int(input_size[0]), int(input_size[1]))
    if len(static.inputs) != 1 or tuple(static.inputs[0].shape[1:3]) not in (expected, (None, None)):
        shapes = [tuple(x.shape) for x in static.inputs]
        raise ValueError(f"`static` must take one (batch, {expected[0]}, {expected[1]}, 3) input. Received: {shapes}")
    start = time.perf_counter()
    _import_tfmot()
    import tf_keras

    twin = _build_twin(static, tf_keras, normalize=True)
    qat, unquantized = _quantize(twin)
    wrapped = sum(type(layer).__name__ == "QuantizeWrapperV2" for layer in qat.layers)
    stream = _batches(train_batches, steps)
    head = list(itertools.islice(stream, min(_CALIBRATION_BATCHES, steps)))
    if representative is None:
        # The first fine-tuning batches calibrate. (TF 2.21's converter also insists on a representative
        # dataset for int8-only ops, even for a QAT model whose fake-quant ops hold every range.)
        representative = [images for images, _ in head or _batches(train_batches, 1)]
    representative = [np.asarray(images, np.float32) for images in representative]
    if not representative:
        raise ValueError("`representative` is empty: the ranges need at least one batch of images")
    ranges = _calibrate_ranges(qat, twin, representative)
    if log:
        log(f"qat: {wrapped} layers quantized, {ranges} ranges calibrated, {len(unquantized)} left in float")
    history = _fine_tune(qat, task, itertools.chain(head, stream), learning_rate, log, steps)
    data = _convert(qat, task, input_size, representative, int8_io)
    report = {
        "steps": len(history),
        "loss_start": history[0] if history else None,
        "loss_final": history[-1] if history else None,
        "quantized_layers": wrapped,
        "calibrated_ranges": ranges,
        "unquantized_layers": unquantized,
        "io_quantization": _io_quantization(data) if int8_io else {},
        "seconds": time.perf_counter() - start,
    }
    return data, report


def _io_quantization(data: bytes) -> dict[str, tuple[float, int]]:
    """`(scale, zero_point)` of each int8 input and output of the file's `serving_default`."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=data).get_signature_runner("serving_default")
    details = {**runner.get_input_details(), **runner.get_output_details()}
    return {
        name: (float(d["quantization"][0]), int(d["quantization"][1]))
        for name, d in details.items()
        if d["dtype"] == np.int8
    }
