"""Every serializable layer and every family's supernet survives config, Keras-object and file round trips.

A harness in the spirit of keras-hub's `run_layer_test` / `run_model_saving_test`:

- Layers: every `keras.layers.Layer` subclass defined under `scalenas_tf.families`, `scalenas_tf.layers`
  and `scalenas_tf.models` is found by walking the packages, and must have an entry in `LAYER_CASES`
  (constructor kwargs and standalone call inputs), be a family's supernet, or be listed in `ABSTRACT`;
  a new layer without one fails `test_every_layer_class_has_a_case` with the entry to add. For each
  case: registered as `scalenas>Name`; `get_config` JSON-serializable and a fixed point of
  `from_config` (also after a JSON round trip, as a `.keras` file stores it); `serialize_keras_object`
  / `deserialize_keras_object` round trip; and the clone, given the original's weights, computes the
  same outputs eagerly and in a `tf.function` (BN statistics randomized first, and the clone's own
  initial weights must give different outputs, so the comparison cannot pass vacuously).
- Supernets: for every registered family (`registry.names()`) and task, over a small space in
  `FAMILY_SPACES`: config round trip, `model.save(.keras)` + `keras.saving.load_model` (same class,
  config, variables and outputs for a random arch vector and for `arch=None`), and
  `save_weights` / `load_weights` into a fresh supernet.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import pkgutil
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from scalenas_tf import registry
from scalenas_tf.models.supernet import Supernet
from tests.helpers import randomize_batch_norm

PACKAGES = ("scalenas_tf.families", "scalenas_tf.layers", "scalenas_tf.models")
PACKAGE_PREFIX = "scalenas"  # the `package=` of register_keras_serializable
ATOL = 1e-6

# Classes that are never instantiated themselves (covered through their subclasses).
ABSTRACT = {"Supernet": "base of the family supernets; covered by the family tests below"}


def _normal(rng, *shape):
    return rng.normal(size=shape).astype("float32")


@dataclasses.dataclass
class Case:
    """One layer configuration: `kwargs` for the constructor, `inputs(rng) -> (args, call_kwargs)`."""

    kwargs: dict[str, Any]
    inputs: Callable[[np.random.Generator], tuple[tuple, dict]]


# depths (2, 1); bits [target][step][source]: target 0 reads branch 1 at step 0 only, target 1 reads
# branch 0 at step 0 (its only step). Every gated block and edge kind appears, on and off.
_HR_ARCH = np.array([2, 1, 1, 1, 1, 0, 1, 1, 0, 0], np.int32)

LAYER_CASES: dict[str, list[Case]] = {
    "SupernetBatchNorm": [
        Case(dict(momentum=0.9, epsilon=1e-5, name="sbn"), lambda r: ((_normal(r, 2, 4, 4, 6),), {})),
    ],
    "BasicBlock": [Case(dict(filters=4, name="bb"), lambda r: ((_normal(r, 2, 8, 8, 4),), {}))],
    "Bottleneck": [
        Case(dict(in_channels=8, planes=4, name="bneck_proj"), lambda r: ((_normal(r, 2, 6, 6, 8),), {})),
        Case(dict(in_channels=16, planes=4, name="bneck_id"), lambda r: ((_normal(r, 2, 6, 6, 16),), {})),
    ],
    "FusionEdge": [
        Case(
            dict(source=1, target=0, source_channels=8, target_channels=4, name="fe_up"),
            lambda r: ((_normal(r, 2, 4, 4, 8),), dict(target_hw=(7, 7))),
        ),  # odd target: the crop
        Case(
            dict(source=0, target=2, source_channels=4, target_channels=16, name="fe_down"),
            lambda r: ((_normal(r, 2, 8, 8, 4),), dict(target_hw=(2, 2))),
        ),
    ],
    "HRModule": [
        Case(
            dict(branch_channels=(4, 8), depth_choices=(1, 2), name="hrm"),
            lambda r: (([_normal(r, 2, 8, 8, 4), _normal(r, 2, 4, 4, 8)], _HR_ARCH), {}),
        ),
    ],
    "Stem": [Case(dict(channels=8, num_blocks=1, name="stem"), lambda r: ((_normal(r, 2, 16, 16, 3),), {}))],
    "Transition": [
        Case(dict(in_channels=(32,), out_channels=(4, 8), name="trans"), lambda r: (([_normal(r, 2, 8, 8, 32)],), {})),
        Case(
            dict(in_channels=(4, 8), out_channels=(4, 8, 16, 32), name="trans_wide"),
            lambda r: (([_normal(r, 2, 8, 8, 4), _normal(r, 2, 4, 4, 8)],), {}),
        ),
    ],
    "PoseHead": [
        Case(
            dict(branch_channels=(4, 8), num_classes=3, name="pose_head"),
            lambda r: (([_normal(r, 2, 8, 8, 4), _normal(r, 2, 4, 4, 8)],), {}),
        ),
    ],
    "SegmentationHead": [
        Case(
            dict(branch_channels=(4, 8), num_classes=3, name="seg_head"),
            lambda r: (([_normal(r, 2, 8, 8, 4), _normal(r, 2, 4, 4, 8)],), {}),
        ),
    ],
    "ClassificationHead": [
        Case(
            dict(branch_channels=(4, 8), num_classes=3, name="cls_head"),
            lambda r: (([_normal(r, 2, 8, 8, 4), _normal(r, 2, 4, 4, 8)],), {}),
        ),
    ],
    "MobileBlock": [
        Case(
            dict(in_channels=8, filters=8, kernel_size=3, expand_ratio=3, use_se=True, strides=1, name="mb_se"),
            lambda r: ((_normal(r, 2, 8, 8, 8),), {}),
        ),
        Case(
            dict(in_channels=8, filters=16, kernel_size=5, expand_ratio=6, strides=2, activation="relu6", name="mb_s2"),
            lambda r: ((_normal(r, 2, 9, 9, 8),), {}),
        ),
    ],
    "Stabilizer": [
        Case(dict(in_channels=8, filters=8, name="els"), lambda r: ((_normal(r, 2, 8, 8, 8),), {})),
        Case(dict(in_channels=8, filters=16, strides=2, name="els_s2"), lambda r: ((_normal(r, 2, 9, 9, 8),), {})),
    ],
    "ChoiceLayer": [
        Case(
            dict(
                in_channels=8,
                filters=8,
                strides=1,
                choices=("K3E3", "K5E6+SE", "id"),
                choice_ids=(0, 9, 12),
                name="choice_block",
            ),
            lambda r: ((_normal(r, 2, 8, 8, 8), np.int32(9)), {}),
        ),
        Case(
            dict(in_channels=8, filters=8, strides=1, choices=("K3E3", "id"), choice_ids=(0, 6), name="choice_els"),
            lambda r: ((_normal(r, 2, 8, 8, 8), np.int32(6)), {}),
        ),
        Case(
            dict(
                in_channels=8,
                filters=8,
                strides=1,
                choices=("K3E3", "id"),
                choice_ids=(0, 6),
                identity_op="skip",
                name="choice_skip",
            ),
            lambda r: ((_normal(r, 2, 8, 8, 8), np.int32(0)), {}),
        ),
    ],
    "ElasticBatchNorm": [
        Case(dict(channels=6, name="ebn"), lambda r: ((_normal(r, 2, 4, 4, 4),), {})),  # 4 of 6 channels
    ],
    "ElasticConv": [
        Case(
            dict(in_channels=6, filters=8, kernel_size=3, strides=2, name="econv"),
            lambda r: ((_normal(r, 2, 9, 9, 5),), dict(out_channels=np.int32(7))),
        ),
    ],
    "ElasticMBConv": [
        Case(
            dict(
                in_channels=8,
                out_channels=8,
                hidden=48,
                squeeze=12,
                kernel_size=5,
                expand=6,
                use_se=True,
                residual=True,
                name="emb_se",
            ),
            lambda r: ((_normal(r, 2, 6, 6, 6), np.int32(6), np.int32(36), np.int32(9)), {}),
        ),
        Case(
            dict(
                in_channels=8,
                out_channels=8,
                hidden=8,
                squeeze=0,
                kernel_size=3,
                expand=1,
                use_se=False,
                strides=2,
                activation="swish",
                name="emb_e1",
            ),
            lambda r: ((_normal(r, 2, 7, 7, 8), np.int32(5), np.int32(8), np.int32(0)), {}),
        ),
    ],
}

# Small spaces per family (and the input size their supernets get).
FAMILY_SPACES: dict[str, tuple[dict[str, Any], tuple[int, int]]] = {
    "scalenas": (
        dict(width=4, num_modules=(1, 1, 1), stem_channels=8, layer1_blocks=1, depth_choices=(1, 2)),
        (32, 32),
    ),
    "scarlet": (
        dict(
            variant="s1",
            channels=(8, 8, 16, 16),
            strides=(1, 1, 2, 1),
            stem_channels=8,
            first_channels=8,
            head_channels=24,
        ),
        (16, 16),
    ),
    "scalenet": (
        dict(
            stem_channels=4,
            stage_channels=(4, 4, 8, 8, 8, 12, 12),
            max_blocks=(1, 2, 1, 1, 1, 1, 1),
            head_channels=16,
            depth_multipliers=((1.0,), (1.5,)),
            width_multipliers=((1.0,), (1.5,)),
            resolutions=((16,), (20,)),
            resolution_multipliers=((1.0,), (1.25,)),
            base_resolution=16,
        ),
        (16, 16),
    ),
}
NUM_CLASSES = 3


# === Discovery ===


def _modules(package_name):
    package = importlib.import_module(package_name)
    yield package
    for info in pkgutil.walk_packages(package.__path__, package_name + "."):
        yield importlib.import_module(info.name)


def discover_layer_classes() -> dict[str, type]:
    """`{class name: class}` of every Layer subclass defined in the walked packages."""
    found: dict[str, type] = {}
    for package_name in PACKAGES:
        for module in _modules(package_name):
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if issubclass(obj, keras.layers.Layer) and obj.__module__ == module.__name__:
                    previous = found.setdefault(obj.__name__, obj)
                    assert previous is obj, (
                        f"Two layer classes named {obj.__name__}: {previous.__module__} and {obj.__module__}; "
                        "registered names ('scalenas>Name') would collide"
                    )
    return found


def family_supernet_classes() -> dict[str, type]:
    """`{family name: supernet class}` of every registered family."""
    return {name: registry._load(registry.get(name).supernet) for name in registry.names()}


LAYER_CLASSES = discover_layer_classes()


def test_discovery_finds_the_known_layers():
    # Guards the walk itself: if it found nothing, the coverage test below would pass vacuously.
    assert {"BasicBlock", "HRModule", "ChoiceLayer", "SupernetBatchNorm", "ScaleNASSupernet", "ScarletSupernet"} <= set(
        LAYER_CLASSES
    )


def test_every_layer_class_has_a_case():
    supernets = {cls.__name__ for cls in family_supernet_classes().values()}
    missing = sorted(set(LAYER_CLASSES) - set(LAYER_CASES) - supernets - set(ABSTRACT))
    assert not missing, (
        f"Layer classes without a serialization test: {missing} (in "
        f"{[LAYER_CLASSES[n].__module__ for n in missing]}). Add to LAYER_CASES in tests/test_serialization.py: "
        + ", ".join(
            f'"{n}": [Case(dict(<small constructor kwargs>), lambda rng: ((<call args>,), {{}}))]' for n in missing
        )
    )
    stale = sorted(set(LAYER_CASES) - set(LAYER_CLASSES))
    assert not stale, f"LAYER_CASES entries for classes that no longer exist: {stale}"
    for name in set(LAYER_CLASSES) & supernets:
        assert issubclass(LAYER_CLASSES[name], Supernet), name


def test_every_supernet_class_belongs_to_a_family():
    supernets = set(family_supernet_classes().values())
    orphans = sorted(
        name
        for name, cls in LAYER_CLASSES.items()
        if issubclass(cls, Supernet) and cls not in supernets and name not in ABSTRACT
    )
    assert not orphans, f"Supernet classes no registered family builds (register a family for them): {orphans}"


def test_every_family_has_a_small_space():
    missing = sorted(set(registry.names()) - set(FAMILY_SPACES))
    assert not missing, (
        f"Families without a small test space: {missing}. Add to FAMILY_SPACES in tests/test_serialization.py: "
        f"name -> (dict of space fields, (height, width) of the test images)"
    )


@pytest.mark.parametrize("name", sorted(n for n in LAYER_CLASSES if n not in ABSTRACT))
def test_layer_class_is_registered(name):
    cls = LAYER_CLASSES[name]
    registered = keras.saving.get_registered_name(cls)
    assert registered == f"{PACKAGE_PREFIX}>{name}", (
        f"{cls.__module__}.{name} is not registered: decorate it with "
        f'@keras.saving.register_keras_serializable(package="{PACKAGE_PREFIX}")'
    )
    assert keras.saving.get_registered_object(registered) is cls


# === Layers ===

CASE_IDS = [(name, i) for name in sorted(LAYER_CASES) for i in range(len(LAYER_CASES[name]))]


def _ids(value):
    name, i = value
    return f"{name}-{LAYER_CASES[name][i].kwargs.get('name', i)}"


def _make(name, i):
    case = LAYER_CASES[name][i]
    return LAYER_CLASSES[name](**case.kwargs), case


def _json_round_trip(value):
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("key", CASE_IDS, ids=_ids)
def test_layer_config_round_trip(key):
    layer, _ = _make(*key)
    cls = type(layer)
    config = layer.get_config()
    for arg, value in layer_kwargs(key).items():
        got = config[arg]
        assert (list(got) if isinstance(got, tuple) else got) == (list(value) if isinstance(value, tuple) else value), (
            f"get_config()[{arg!r}] = {got!r}; the constructor got {value!r}"
        )
    text = json.dumps(config)  # a .keras file stores the config as JSON
    assert cls.from_config(config).get_config() == config
    assert cls.from_config(json.loads(text)).get_config() == config, "config changes through JSON"

    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"{PACKAGE_PREFIX}>{cls.__name__}"
    for data in (serialized, _json_round_trip(serialized)):
        clone = keras.saving.deserialize_keras_object(data)
        assert type(clone) is cls
        assert clone.get_config() == config


def layer_kwargs(key):
    name, i = key
    return LAYER_CASES[name][i].kwargs


def _outputs(layer, args, kwargs):
    return [np.asarray(t) for t in tf.nest.flatten(layer(*args, training=False, **kwargs))]


@pytest.mark.parametrize("key", CASE_IDS, ids=_ids)
def test_layer_clone_computes_the_same(key):
    keras.utils.set_random_seed(0)
    layer, case = _make(*key)
    args, kwargs = case.inputs(np.random.default_rng(1))
    _outputs(layer, args, kwargs)  # builds it
    randomize_batch_norm(layer, seed=2)
    if isinstance(layer, keras.layers.BatchNormalization):  # the helper randomizes sublayers only
        rng = np.random.default_rng(2)
        for v in (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance):
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype("float32"))
    want = _outputs(layer, args, kwargs)
    assert layer.weights, "a layer without weights needs no weight-copy check; the case is mis-chosen"

    clone = keras.saving.deserialize_keras_object(_json_round_trip(keras.saving.serialize_keras_object(layer)))
    keras.utils.set_random_seed(3)
    fresh = _outputs(clone, args, kwargs)  # builds the clone with its own initial weights
    assert [w.path for w in clone.weights] == [w.path for w in layer.weights]
    assert [tuple(w.shape) for w in clone.weights] == [tuple(w.shape) for w in layer.weights]
    assert len(clone.trainable_weights) == len(layer.trainable_weights)
    assert any(np.abs(f - w).max() > 1e-4 for f, w in zip(fresh, want)), (
        "the clone's own weights give the original's output: the comparison below would be vacuous"
    )

    clone.set_weights(layer.get_weights())
    got = _outputs(clone, args, kwargs)
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=ATOL, rtol=0)
    compiled = tf.function(lambda *a, **k: clone(*a, training=False, **k))
    for g, w in zip(tf.nest.flatten(compiled(*args, **kwargs)), want):
        np.testing.assert_allclose(np.asarray(g), w, atol=1e-5, rtol=0)

    # Training mode (batch statistics; SupernetBatchNorm's fused path) and its BN updates agree too.
    want = [np.asarray(t) for t in tf.nest.flatten(layer(*args, training=True, **kwargs))]
    got = [np.asarray(t) for t in tf.nest.flatten(clone(*args, training=True, **kwargs))]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5, rtol=0)
    for a, b in zip(clone.weights, layer.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=0, err_msg=a.path)


# === Family supernets ===

FAMILY_TASKS = [(name, task) for name in registry.names() for task in registry.get(name).tasks]
_NETS: dict[tuple[str, str], Any] = {}


def _space(name):
    fields, size = FAMILY_SPACES[name]
    return registry.get(name).build_space(dict(fields)), size


def _images(size, seed=0):
    return np.random.default_rng(seed).normal(size=(2, *size, 3)).astype("float32")


def _built(name, task, seed=0):
    space, size = _space(name)
    keras.utils.set_random_seed(seed)
    net = registry.get(name).build_supernet(space, task, NUM_CLASSES)
    net(_images(size), training=False)  # builds it (and records its build config)
    return net


def supernet(name, task):
    """A built supernet with randomized BN statistics (cached per family and task)."""
    if (name, task) not in _NETS:
        net = _built(name, task)
        randomize_batch_norm(net, seed=4)
        _NETS[(name, task)] = net
    return _NETS[(name, task)]


def _archs(space):
    """A random arch vector and None (the largest arch)."""
    return [space.to_vector(space.sample(np.random.default_rng(5))), None]


def _run(net, x, arch):
    return net(x, arch=arch, training=False).numpy()


def _assert_same_variables(got, want):
    assert [v.path for v in got.variables] == [v.path for v in want.variables]
    for a, b in zip(got.variables, want.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)


@pytest.mark.parametrize("name, task", FAMILY_TASKS)
def test_supernet_config_round_trip(name, task):
    net = supernet(name, task)
    cls = type(net)
    assert cls is registry._load(registry.get(name).supernet)
    config = net.get_config()
    text = json.dumps(config)
    for data in (config, json.loads(text)):
        clone = cls.from_config(data)
        assert clone.get_config() == config
        assert clone.space == net.space and clone.task == task and clone.num_classes == NUM_CLASSES
    serialized = keras.saving.serialize_keras_object(net)
    assert serialized["registered_name"] == f"{PACKAGE_PREFIX}>{cls.__name__}"
    clone = keras.saving.deserialize_keras_object(_json_round_trip(serialized))
    assert type(clone) is cls and clone.get_config() == config


@pytest.mark.parametrize("name, task", FAMILY_TASKS)
def test_supernet_keras_file_round_trip(tmp_path, name, task):
    net = supernet(name, task)
    _, size = _space(name)
    x = _images(size, seed=6)
    path = tmp_path / "m.keras"
    net.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(net)
    assert loaded.get_config() == net.get_config()
    _assert_same_variables(loaded, net)
    other = _built(name, task, seed=7)
    for arch in _archs(net.space):
        want = _run(net, x, arch)
        assert np.abs(_run(other, x, arch) - want).max() > 1e-4, "other weights must change the output"
        np.testing.assert_allclose(_run(loaded, x, arch), want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name, task", FAMILY_TASKS)
def test_supernet_weights_file_round_trip(tmp_path, name, task):
    net = supernet(name, task)
    _, size = _space(name)
    x = _images(size, seed=8)
    path = tmp_path / "m.weights.h5"
    net.save_weights(path)
    fresh = _built(name, task, seed=9)
    arch = _archs(net.space)[0]
    assert np.abs(_run(fresh, x, arch) - _run(net, x, arch)).max() > 1e-4
    fresh.load_weights(path)
    _assert_same_variables(fresh, net)
    for arch in _archs(net.space):
        np.testing.assert_allclose(_run(fresh, x, arch), _run(net, x, arch), atol=ATOL, rtol=0)
