"""Latency as a search objective: the counters' features, the fitted predictor, its JSON, the config
field, `Experiment.cost_of`, and `export.latency.measure_tflite` (no assertion on time values)."""

import dataclasses
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import quickstart
from scalenas_tf.experiment import ConfigError
from scalenas_tf.experiment import Experiment
from scalenas_tf.families.scalenas import cost as scalenas_cost
from scalenas_tf.families.scalenas.space import ModuleArch
from scalenas_tf.families.scalenas.space import ScaleNASArch
from scalenas_tf.families.scalenas.space import ScaleNASSpace
from scalenas_tf.families.scalenet import cost as scalenet_cost
from scalenas_tf.families.scalenet.space import Block
from scalenas_tf.families.scalenet.space import Network
from scalenas_tf.families.scalenet.space import ScaleNetSpace
from scalenas_tf.families.scarlet import cost as scarlet_cost
from scalenas_tf.families.scarlet.space import ScarletArch
from scalenas_tf.families.scarlet.space import ScarletSpace
from scalenas_tf.search.cost import LATENCY_FEATURES
from scalenas_tf.search.latency import LatencyModel
from scalenas_tf.search.latency import LatencyModelError
from scalenas_tf.search.latency import median_absolute_error
from scalenas_tf.search.latency import nonnegative_least_squares
from scalenas_tf.search.latency import spearman

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAC_FEATURES = ("conv_macs", "pointwise_macs", "depthwise3_macs", "depthwise5_macs", "depthwise7_macs", "dense_macs")


def features(**values):
    return {name: values.get(name, 0) for name in LATENCY_FEATURES}


# === Predictor arithmetic ===


def test_fit_recovers_known_nonnegative_weights_and_intercept():
    rng = np.random.default_rng(0)
    x = rng.random((40, 4)) * np.array([1e7, 1e5, 1e3, 50.0])  # scales as far apart as MACs and op counts
    true = np.array([2e-7, 0.0, 3e-4, 0.02])
    y = x @ true + 0.4
    rows = [dict(zip(("a", "b", "c", "d"), row)) for row in x]
    model = LatencyModel.fit(rows, y, family="scalenas", threads=2)
    np.testing.assert_allclose([model.weights[k] for k in "abcd"], true, rtol=1e-6, atol=1e-12)
    assert model.intercept_ms == pytest.approx(0.4)
    assert model.fit_size == 40 and model.threads == 2 and model.feature_names == ("a", "b", "c", "d")


def test_fit_keeps_weights_nonnegative():
    # y falls with b: least squares would weigh b negatively; the fit clamps it to 0 instead.
    rows = [{"a": a, "b": b} for a, b in [(1, 4), (2, 1), (3, 3), (4, 0), (5, 2)]]
    y = [2 * r["a"] - 0.5 * r["b"] + 1 for r in rows]
    model = LatencyModel.fit(rows, y, family="scarlet")
    assert model.weights["b"] == 0.0 and model.weights["a"] > 0


def test_nonnegative_least_squares_matches_the_best_feasible_subset():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = np.array([1.0, -1.0, 0.0])  # unconstrained: x = (1, -1); constrained: x2 = 0, x1 = 0.5
    np.testing.assert_allclose(nonnegative_least_squares(a, b), [0.5, 0.0])


def test_predict_is_the_weighted_sum_plus_intercept():
    model = LatencyModel({"conv_macs": 1e-6, "ops": 0.01}, 0.25, family="scalenas")
    assert model.predict({"conv_macs": 3e6, "ops": 20, "dense_macs": 7}) == pytest.approx(3 + 0.2 + 0.25)
    with pytest.raises(ValueError, match="'ops'"):
        model.predict({"conv_macs": 3e6})
    with pytest.raises(ValueError, match="'conv_macs'"):
        model.predict({"conv_macs": math.nan, "ops": 1})


def test_fit_refuses_too_few_archs_and_mismatched_lengths():
    with pytest.raises(LatencyModelError, match=">= 3 archs"):
        LatencyModel.fit([{"a": 1, "b": 2}] * 2, [1.0, 2.0], family="x")
    with pytest.raises(LatencyModelError, match="One latency per"):
        LatencyModel.fit([{"a": 1}] * 3, [1.0], family="x")
    with pytest.raises(LatencyModelError, match=r"features_list\[1\]\['a'\]"):
        LatencyModel.fit([{"a": 1}, {"a": None}, {"a": 2}], [1.0, 2.0, 3.0], family="x")


def test_spearman_against_hand_computed_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # One swapped pair of 4: 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 60.
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # Ties take the mean rank: ranks (1, 2.5, 2.5, 4) vs (1, 3, 2, 4); centred (-1.5, 0, 0, 1.5) and
    # (-1.5, 0.5, -0.5, 1.5): 4.5 / sqrt(4.5 * 5).
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="one length"):
        spearman([1, 2], [1, 2, 3])


def test_median_absolute_error():
    assert median_absolute_error([1.0, 2.0, 3.0], [2.0, 2.0, 5.0]) == 1.0
    assert median_absolute_error([1.0, 2.0], [1.5, 3.0]) == pytest.approx(0.75)


# === JSON ===


def _model():
    return LatencyModel(
        {"conv_macs": 2e-7, "ops": 0.003},
        0.125,
        family="scalenas",
        device="test CPU",
        threads=1,
        tf_version="2.21.0",
        input_size=(64, 64),
        fit_size=100,
        extra={"task": "seg"},
    )


def test_json_round_trip_writes_atomically(tmp_path):
    path = tmp_path / "new_dir" / "model.json"
    assert _model().save(path) == str(path)
    again = LatencyModel.load(path)
    assert again == _model() and again.extra == {"task": "seg"} and again.input_size == (64, 64)
    assert os.listdir(path.parent) == ["model.json"]  # no temporary file left behind
    with pytest.raises(IsADirectoryError):
        _model().save(tmp_path)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("format", "v0", "format must be"),
        ("family", "", "family must be"),
        ("weights", {}, "weights must be"),
        ("weights", {"ops": -1.0}, r"weights\['ops'\] must be a finite number >= 0"),
        ("weights", {"ops": "1"}, r"weights\['ops'\]"),
        ("intercept_ms", "0.1", "intercept_ms must be"),
        ("threads", 0, "threads must be an int >= 1"),
        ("fit_size", 1.5, "fit_size must be"),
        ("input_size", [64], "input_size must be"),
        ("device", 3, "device must be a string"),
        ("extra", [], "extra must be an object"),
        ("typo", 1, r"Unknown field\(s\) in the latency model: \['typo'\]"),
    ],
)
def test_bad_json_fields_are_named(tmp_path, field, value, match):
    data = _model().to_dict()
    data[field] = value
    path = tmp_path / "model.json"
    path.write_text(json.dumps(data))
    with pytest.raises(LatencyModelError, match=match):
        LatencyModel.load(path)


def test_missing_field_unreadable_json_and_missing_file(tmp_path):
    data = _model().to_dict()
    del data["weights"]
    path = tmp_path / "model.json"
    path.write_text(json.dumps(data))
    with pytest.raises(LatencyModelError, match="missing the field 'weights'"):
        LatencyModel.load(path)
    path.write_text("{not json")
    with pytest.raises(LatencyModelError, match="latency model .*model.json: invalid JSON at line 1"):
        LatencyModel.load(path)
    with pytest.raises(FileNotFoundError):
        LatencyModel.load(tmp_path / "absent.json")


# === Features of hand-countable archs (what the extracted model executes) ===


def test_latency_features_classify_each_conv():
    from scalenas_tf.search.cost import LatencyFeatures

    tally = LatencyFeatures()
    tally.conv((4, 4), 8, 16, 3)  # dense 3x3: 4*4*16 outputs x 8*9
    tally.conv((4, 4), 8, 16, 1)  # pointwise
    tally.conv((1, 1), 8, 16, 1)  # 1x1 on a 1x1 map: matrix-vector
    for kernel in (3, 5, 7, 9):
        tally.conv((2, 2), 8, 8, kernel, groups=8)
    tally.dense(16, 10)
    tally.memory(100, ops=2)
    assert tally.as_dict() == features(
        conv_macs=256 * 72,
        pointwise_macs=256 * 8,
        dense_macs=16 * 8 + 160,
        depthwise3_macs=32 * 9,
        depthwise5_macs=32 * 25,
        depthwise7_macs=32 * 49 + 32 * 81,  # 7x7 and larger
        conv_outputs=256 + 256 + 16 + 4 * 32 + 10,
        memory_elements=100,
        ops=8 + 2,
    )


def test_scalenas_features_by_hand():
    # Seg at 16x16: stem 3->4->4 (stride 2 twice), one bottleneck 4->16, branches of 2 and 4
    # channels at 4x4 and 2x2, one block each, branch 1 fused into branch 0.
    space = ScaleNASSpace(
        width=2, depth_choices=(1,), num_modules=(1,), num_branches=(2,), stem_channels=4, layer1_blocks=1
    )
    arch = ScaleNASArch((ModuleArch((1, 1), (((1, 1),), ((0, 1),))),))
    got = scalenas_cost.count(space, arch, task="seg", num_classes=3, input_size=(16, 16)).features
    conv = 8 * 8 * 4 * 3 * 9 + 4 * 4 * 4 * 4 * 9  # stem
    conv += 16 * 4 * 4 * 9  # bottleneck 3x3
    conv += 16 * 2 * 16 * 9 + 4 * 4 * 16 * 9  # transition to branch 0 (3x3) and branch 1 (3x3 stride 2)
    conv += 2 * (16 * 2 * 2 * 9) + 2 * (4 * 4 * 4 * 9)  # one basic block per branch
    pointwise = 16 * 4 * 4 + 2 * (16 * 16 * 4)  # bottleneck 1x1 in, 1x1 out and projection
    pointwise += 4 * 2 * 4  # fusion edge 1 -> 0: 1x1 conv at 2x2
    pointwise += 16 * 6 * 6 + 16 * 3 * 6  # head: 1x1 convs on the concat (2 + 4 channels)
    outputs = 256 + 64 + (64 + 64 + 256 + 256) + 32 + 16 + 2 * 32 + 2 * 16 + 8 + 96 + 48
    memory = 18 * 18 * 3 + 10 * 10 * 4  # stem padding
    memory += 256 + 6 * 6 * 16  # bottleneck add, branch 1's padding
    memory += 32 + 16  # block adds
    memory += 32 + 32  # fusion: upsampling to 4x4x2 and the add
    memory += 16 * 4 + 16 * 6  # head: resize of branch 1, concat
    ops = 15 + 10  # convs; pads (3), adds (4), upsampling, resize, concat
    expected = features(conv_macs=conv, pointwise_macs=pointwise, conv_outputs=outputs, memory_elements=memory, ops=ops)
    assert got == expected
    assert sum(got[k] for k in MAC_FEATURES) == scalenas_cost.count(space, arch, "seg", 3, (16, 16)).live_macs


def test_scalenas_features_count_only_live_work():
    # Pose reads branch 0 of the last module only: branch 1's block and an edge into target 1 are dead.
    space = ScaleNASSpace(
        width=2, depth_choices=(1,), num_modules=(1,), num_branches=(2,), stem_channels=4, layer1_blocks=1
    )
    isolated = ScaleNASArch((ModuleArch((1, 1), (((1, 0),), ((0, 1),))),))
    dead_edge = ScaleNASArch((ModuleArch((1, 1), (((1, 0),), ((1, 1),))),))
    a = scalenas_cost.count(space, isolated, task="pose", num_classes=1, input_size=(16, 16))
    b = scalenas_cost.count(space, dead_edge, task="pose", num_classes=1, input_size=(16, 16))
    assert b.macs > a.macs and b.features == a.features
    assert sum(a.features[k] for k in MAC_FEATURES) == a.live_macs < a.macs


def _tiny_scarlet(**kwargs):
    return ScarletSpace(
        channels=(8, 8),
        strides=(2, 1),
        stem_channels=4,
        first_channels=4,
        head_channels=16,
        kernel_sizes=(3,),
        expand_ratios=(2,),
        **kwargs,
    )


def test_scarlet_features_by_hand():
    # 8x8 input: stem to 4x4x4, separable conv, layer 0 K3E2 stride 2 (4 -> 8 hidden -> 8 at 2x2),
    # layer 1 K3E2+SE (8 -> 16 -> 8, residual), head 8 -> 16, classifier 16 -> 2; h-swish in blocks.
    space = _tiny_scarlet()
    arch = ScarletArch(("K3E2", "K3E2+SE"))
    got = scarlet_cost.count(space, arch, num_classes=2, input_size=(8, 8)).features
    conv = 16 * 4 * 3 * 9
    pointwise = 16 * 4 * 4 + 16 * 8 * 4 + 4 * 8 * 8 + 4 * 16 * 8 + 4 * 8 * 16 + 4 * 16 * 8
    depthwise = 16 * 4 * 9 + 4 * 8 * 9 + 4 * 16 * 9
    dense = 16 * 4 + 4 * 16 + 16 * 2  # SE convs on 1x1 and the classifier
    outputs = 3 * 64 + (128 + 32 + 32) + (64 + 64 + 4 + 16 + 32) + 64 + 2
    memory = 10 * 10 * 3  # stem padding
    memory += 128 + 6 * 6 * 8 + 32  # layer 0: h-swish, padding, h-swish
    memory += 64 + 64 + 64 + 16 + 64 + 32  # layer 1: 2 h-swish, SE pool, gate, multiply; residual add
    memory += 64  # head pooling
    expected = features(
        conv_macs=conv,
        pointwise_macs=pointwise,
        depthwise3_macs=depthwise,
        dense_macs=dense,
        conv_outputs=outputs,
        memory_elements=memory,
        ops=13 + 11,
    )
    assert got == expected
    assert sum(got[k] for k in MAC_FEATURES) == scarlet_cost.count(space, arch, 2, (8, 8)).macs


def test_scarlet_features_describe_the_extracted_model():
    # Layer 1 as identity: its ELS folds forward into the head conv, so it executes nothing, in either count.
    space = _tiny_scarlet()
    with_identity = ScarletArch(("K3E2", "id"))
    papers = scarlet_cost.count(space, with_identity, num_classes=2, input_size=(8, 8))
    extracted = scarlet_cost.count(space, with_identity, num_classes=2, input_size=(8, 8), as_extracted=True)
    assert papers.features == extracted.features
    full = scarlet_cost.count(space, ScarletArch(("K3E2", "K3E2+SE")), num_classes=2, input_size=(8, 8)).features
    layer1_ops = 5 + 6
    assert extracted.features["ops"] == full["ops"] - layer1_ops
    assert extracted.features["depthwise3_macs"] == full["depthwise3_macs"] - 4 * 16 * 9


def test_scalenet_features_by_hand():
    # 8x8 input: stem to 4x4x4; block 1: K3 E1 + SE (no expand conv), residual; block 2: K5 E2
    # stride 2 (4 -> 8 -> 8); head 8 -> 16, classifier 16 -> 2. h-swish, SE ReLU (fused), hard sigmoid.
    space = ScaleNetSpace()
    net = Network(
        resolution=8,
        stem_channels=4,
        blocks=(
            # Block(stage, slot, kernel, expand, se, in_channels, out_channels, hidden, squeeze, stride)
            Block(0, 0, 3, 1, True, 4, 4, 4, 1, 1),
            Block(1, 0, 5, 2, False, 4, 8, 8, 0, 2),
        ),
        head_channels=16,
    )
    got = scalenet_cost.count_network(space, net, num_classes=2).features
    expected = features(
        conv_macs=16 * 4 * 3 * 9,
        pointwise_macs=16 * 4 * 4 + 16 * 8 * 4 + 4 * 8 * 8 + 4 * 16 * 8,
        depthwise3_macs=16 * 4 * 9,
        depthwise5_macs=4 * 8 * 25,
        dense_macs=4 + 4 + 16 * 2,
        conv_outputs=64 + (64 + 1 + 4 + 64) + (128 + 32 + 32) + 64 + 2,
        memory_elements=10 * 10 * 3 + 64 + (64 + 64 + 4 + 64 + 64) + (128 + 8 * 8 * 8 + 32) + 64 + 64,
        ops=10 + 12,
    )
    assert got == expected
    assert sum(got[k] for k in MAC_FEATURES) == scalenet_cost.count_network(space, net, num_classes=2).macs


@pytest.mark.parametrize("name", ["quickstart", "scarlet", "scalenet"])
def test_mac_features_sum_to_the_executed_macs(name):
    from configs import scalenet
    from configs import scarlet

    if name == "quickstart":
        config = quickstart.get_config()
    else:
        config = (scarlet if name == "scarlet" else scalenet).get_config("cpu")
    experiment = Experiment.from_config(config)
    family, space, model = experiment.family, experiment.space, experiment.model
    rng = np.random.default_rng(1)
    for _ in range(5):
        arch = space.sample(rng)
        record = family.count(space, arch, model.task, model.num_classes, model.input_size)
        executed = getattr(record, "live_macs", record.macs)
        if family.name == "scarlet":
            executed = family.count(
                space, arch, model.task, model.num_classes, model.input_size, as_extracted=True
            ).macs
        assert sum(record.features[k] for k in MAC_FEATURES) == executed
        assert set(record.features) == set(LATENCY_FEATURES) and record.latency_ms is None


# === The latency_ms measure, config validation and Experiment.cost_of ===


def _quickstart(**search):
    config = quickstart.get_config().to_dict()
    config["search"].update(search)
    return config


def test_latency_measure_needs_a_predicted_latency():
    space = ScaleNASSpace(width=4, depth_choices=(1,), num_modules=(1,), num_branches=(2,), stem_channels=4)
    record = scalenas_cost.count(space, space.smallest(), "seg", 3, (16, 16))
    with pytest.raises(ValueError, match="config.search.latency_model"):
        record.measure("latency_ms")
    assert dataclasses.replace(record, latency_ms=1.25).measure("latency_ms") == 1.25
    # Features never change equality; a predicted latency does.
    assert dataclasses.replace(record, features={}) == record
    assert dataclasses.replace(record, latency_ms=1.0) != record


def test_cost_of_attaches_the_predicted_latency(tmp_path):
    path = tmp_path / "scalenas.json"
    LatencyModel({"conv_macs": 1e-6, "ops": 0.002}, 0.05, family="scalenas", input_size=(64, 64)).save(path)
    experiment = Experiment.from_config(
        _quickstart(cost_measure="latency_ms", latency_model=str(path)), require=("search",)
    )
    assert experiment.search.cost_unit == "latency_ms" and experiment.search.latency_model == str(path)
    arch = experiment.space.smallest()
    record = experiment.family.count(experiment.space, arch, "seg", 5, (64, 64))
    expected = 1e-6 * record.features["conv_macs"] + 0.002 * record.features["ops"] + 0.05
    assert experiment.cost_of()(arch) == pytest.approx(expected)
    # Another measure still compares MACs, with the model loaded or not.
    macs = Experiment.from_config(_quickstart(latency_model=str(path)), require=("search",)).cost_of()(arch)
    assert macs == pytest.approx(record.gmacs)


def test_config_validation_of_latency_model(tmp_path):
    with pytest.raises(ConfigError, match="config.search.latency_model") as error:
        Experiment.from_config(_quickstart(cost_measure="latency_ms"), require=("search",))
    assert "\n" not in str(error.value)
    missing = tmp_path / "absent.json"
    with pytest.raises(ConfigError, match="config.search.latency_model: .*not found: .*absent.json"):
        Experiment.from_config(_quickstart(cost_measure="latency_ms", latency_model=str(missing)))
    other = tmp_path / "scarlet.json"
    LatencyModel({"ops": 0.01}, 0.0, family="scarlet").save(other)
    with pytest.raises(ConfigError, match="fitted for the 'scarlet' space"):
        Experiment.from_config(_quickstart(cost_measure="latency_ms", latency_model=str(other)))
    elsewhere = tmp_path / "224.json"
    LatencyModel({"ops": 0.01}, 0.0, family="scalenas", input_size=(224, 224)).save(elsewhere)
    with pytest.raises(ConfigError, match=r"fitted at input size \[224, 224\]; config.model.input_size is \[64, 64\]"):
        Experiment.from_config(_quickstart(latency_model=str(elsewhere)))
    foreign = tmp_path / "foreign.json"
    LatencyModel({"flops": 0.01}, 0.0, family="scalenas").save(foreign)
    with pytest.raises(ConfigError, match=r"do not report: \['flops'\]"):
        Experiment.from_config(_quickstart(latency_model=str(foreign)))
    broken = tmp_path / "broken.json"
    broken.write_text(
        '{"format": "scalenas_tf.latency_model/1", "family": "scalenas", "weights": {"ops": -1}, "intercept_ms": 0}'
    )
    with pytest.raises(ConfigError, match=r"weights\['ops'\]"):
        Experiment.from_config(_quickstart(latency_model=str(broken)))
    with pytest.raises(ConfigError, match="config.search.latency_model must be a string"):
        Experiment.from_config(_quickstart(latency_model=3))


# === Measuring TFLite files ===


def _tiny_model():
    import keras

    images = keras.Input((8, 8, 3), name="images")
    x = keras.layers.Conv2D(4, 3, padding="same")(images)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(images, keras.layers.Dense(2)(x))


def _check_timing(timing, repeats, threads=1, batch=1):
    keys = {"median_ms", "mean_ms", "p90_ms", "min_ms", "runs_ms", "threads", "batch", "warmup", "repeats"}
    assert set(timing) == keys
    assert len(timing["runs_ms"]) == repeats and all(v > 0 for v in timing["runs_ms"])
    assert 0 < timing["min_ms"] <= timing["median_ms"] <= max(timing["runs_ms"])
    assert timing["threads"] == threads and timing["batch"] == batch


def test_measure_tflite_of_a_converted_model(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from scalenas_tf.export.latency import measure_tflite
    from scalenas_tf.export.latency import tflite_bytes

    data = tflite_bytes(_tiny_model())
    ops = {op["op_name"] for op in Interpreter(model_content=data)._get_ops_details()}
    assert "VAR_HANDLE" not in ops and "RSQRT" not in ops  # variables frozen, BN folded
    _check_timing(measure_tflite(data, warmup=1, repeats=3), 3)
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    _check_timing(measure_tflite(str(path), threads=2, warmup=0, repeats=2, batch=3), 2, threads=2, batch=3)
    with pytest.raises(FileNotFoundError):
        measure_tflite(tmp_path / "absent.tflite")
    with pytest.raises(ValueError, match="repeats"):
        measure_tflite(data, repeats=0)


def test_measure_tflite_runs_the_serving_signature_with_int8_inputs():
    import tensorflow as tf

    from scalenas_tf.export.latency import measure_tflite

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((1, 4, 4, 3), tf.int8, name="images")])
        def serve(self, images):
            return {"scores": tf.reduce_sum(tf.cast(images, tf.float32), axis=[1, 2])}

    module = Module()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.serve.get_concrete_function()], module)
    data = converter.convert()
    _check_timing(measure_tflite(data, warmup=1, repeats=2), 2)


@pytest.mark.slow
def test_benchmark_measures_files(tmp_path):
    from scalenas_tf.export.latency import tflite_bytes

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "model.tflite").write_bytes(tflite_bytes(_tiny_model()))
    out = subprocess.run(
        [sys.executable, "bin/benchmark.py", "--what=latency", f"--export_dir={tmp_path}", "--repeats=2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert [f["path"] for f in result["files"]] == [str(tmp_path / "a" / "model.tflite")]
    assert result["files"][0]["median_ms"] > 0 and result["threads"] == 1


@pytest.mark.slow
def test_benchmark_fits_and_writes_a_predictor_the_config_accepts(tmp_path):
    out = tmp_path / "models" / "scarlet.json"
    args = ["--what=latency", "--config=configs/scarlet.py:cpu", "--fit_archs=10", "--validate_archs=2"]
    args += ["--repeats=2", "--rounds=1", "--warmup=1", f"--latency_model={out}"]
    done = subprocess.run(
        [sys.executable, "bin/benchmark.py", *args], cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["fit_archs"] == 10 and result["validate_archs"] == 2 and result["latency_model"] == str(out)
    model = LatencyModel.load(out)
    assert model.family == "scarlet" and model.fit_size == 10 and model.input_size == (32, 32)
    assert len(model.extra["measurements"]) == 12
    from configs import scarlet

    config = scarlet.get_config("cpu").to_dict()
    config["search"].update(cost_measure="latency_ms", latency_model=str(out))
    experiment = Experiment.from_config(config, require=("search",))
    assert experiment.cost_of()(experiment.space.largest())[0] == pytest.approx(
        model.predict(
            experiment.family.count(experiment.space, experiment.space.largest(), "cls", 4, (32, 32)).features
        )
    )


def test_a_latency_search_log_depends_on_its_predictor(tmp_path):
    from scalenas_tf.runners.search import log_header

    weights = tmp_path / "supernet.weights.h5"
    weights.write_bytes(b"weights")
    path = tmp_path / "model.json"
    LatencyModel({"ops": 0.01}, 0.0, family="scalenas").save(path)
    plain = log_header(Experiment.from_config(_quickstart(latency_model=str(path))), str(weights))
    assert "latency_model_sha256" not in plain  # logs of other measures are unchanged
    header = log_header(
        Experiment.from_config(_quickstart(cost_measure="latency_ms", latency_model=str(path))), str(weights)
    )
    LatencyModel({"ops": 0.02}, 0.0, family="scalenas").save(path)
    refitted = log_header(
        Experiment.from_config(_quickstart(cost_measure="latency_ms", latency_model=str(path))), str(weights)
    )
    assert header["cost_measure"] == "latency_ms" and header["latency_model_sha256"] != refitted["latency_model_sha256"]
