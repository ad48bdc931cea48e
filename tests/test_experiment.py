"""Experiment.from_config: one validated, frozen object per run; bad fields fail at start-up in one line."""

import dataclasses
import math

import pytest

from configs import quickstart
from configs import scalenas_seg
from configs import scarlet
from scalenas_tf.experiment import ConfigError
from scalenas_tf.experiment import Experiment
from scalenas_tf.families.scalenas.evolution import EvolutionSettings
from scalenas_tf.families.scarlet.nsga2 import NSGA2Settings


def test_quickstart_becomes_plain_frozen_settings():
    experiment = Experiment.from_config(quickstart.get_config(), require=("data", "train", "search"))
    assert experiment.family.name == "scalenas" and experiment.space.width == 8
    assert experiment.model.input_size == (64, 64) and experiment.model.task == "seg"
    assert experiment.train.optimizer == "adam" and experiment.train.learning_rate == 0.003
    assert experiment.train.sampler_kwargs == {"sandwich": True}
    assert experiment.search.methods == ("evolution", "random") and experiment.search.cost_unit == "gmacs"
    assert isinstance(experiment.search.algorithm, EvolutionSettings) and experiment.search.algorithm.budget == 140
    assert experiment.export.parity_atol == 1e-4 and experiment.export.formats == ("saved_model", "tflite_fp32")
    assert experiment.export.max_metric_drop["tflite_int8"] == 0.03 and experiment.export.calibration_samples == 200
    with pytest.raises(dataclasses.FrozenInstanceError):
        experiment.train.steps = 3
    assert '"search_space"' in experiment.config_json


def test_scarlet_config_gets_its_family_settings():
    experiment = Experiment.from_config(scarlet.get_config("cpu"), require=("data", "train", "search"))
    assert experiment.family.name == "scarlet"
    assert isinstance(experiment.search.algorithm, NSGA2Settings)
    assert experiment.search.algorithm.max_cost == 1.2 and experiment.search.cost_measure == "madds"
    assert experiment.search.methods == ("nsga2", "random")


def test_cost_only_configs_need_no_train_or_search_section():
    experiment = Experiment.from_config(scalenas_seg.get_config("w8"))
    assert experiment.train is None and experiment.search is None and experiment.data is None
    with pytest.raises(ConfigError, match="missing the section `config.train`"):
        Experiment.from_config(scalenas_seg.get_config("w8"), require=("train",))
    with pytest.raises(ConfigError, match="missing the section `config.train`"):
        experiment.require("train")


@pytest.mark.parametrize(
    "section, field, value, match",
    [
        ("train", "learning_rate", -1.0, r"config.train.learning_rate must be a finite number in \(0.0, inf\]"),
        ("train", "learning_rate", math.nan, "config.train.learning_rate must be a finite number"),
        ("train", "learning_rate", math.inf, "config.train.learning_rate must be a finite number"),
        ("train", "momentum", 5.0, r"config.train.momentum must be a finite number in \[0.0, 1.0\)"),
        ("train", "momentum", 1.0, r"config.train.momentum .* Received: 1.0"),
        ("train", "steps", 0, "config.train.steps must be an int >= 1. Received: 0"),
        ("train", "steps", True, "config.train.steps must be an int >= 1. Received: True"),
        ("train", "warmup_steps", 1500, r"config.train.warmup_steps must be in \[0, steps=1500\)"),
        ("train", "optimizer", "lamb", "config.train.optimizer must be one of"),
        ("train", "sampler", "spos", "config.train.sampler must be one of .* for the scalenas space"),
        ("train", "sparse_updates", "yes", "config.train.sparse_updates must be true or false"),
        (
            "train",
            "graph_optimizations",
            "fastest",
            r"config.train.graph_optimizations must be one of \['fast', 'full', 'off'\] .* Received: 'fastest'",
        ),
        ("train", "typo", 1, r"Unknown field\(s\) in config.train: \['typo'\]"),
        ("data", "batch_size", 0, "config.data.batch_size must be an int >= 1"),
        ("search", "methods", ("nsga2",), "config.search.methods must be distinct names from"),
        ("search", "cost_measure", "madds", "config.search.cost_measure must be one of"),
        ("search", "population", 0, "search.population must be an int >= 1"),
        ("export", "parity_atol", 0.0, "config.export.parity_atol"),
        ("export", "formats", ("tflite_int4",), r"config.export.formats must be distinct names from \['saved_model'"),
        ("export", "formats", (), "config.export.formats must be distinct names"),
        ("export", "formats", ("tflite_fp16", "tflite_fp16"), "config.export.formats must be distinct names"),
        ("export", "tflite", True, "config.export.tflite was replaced by config.export.formats"),
        ("export", "max_metric_drop", {"tflite_fp32": 0.1}, "max_metric_drop keys must be from .*parity_atol"),
        ("export", "max_metric_drop", {"tflite_int8": -0.1}, r"config.export.max_metric_drop.tflite_int8 must be"),
        ("export", "max_metric_drop", 0.1, "config.export.max_metric_drop must be a dict"),
        ("export", "calibration_samples", 0, "config.export.calibration_samples must be an int >= 1"),
        ("export", "int8_io", "yes", "config.export.int8_io must be true or false"),
        ("export", "qat_steps", 0, "config.export.qat_steps must be an int >= 1"),
        ("export", "qat_learning_rate", 0.0, "config.export.qat_learning_rate must be a finite number"),
        ("model", "task", "cls2", "config.model"),
        ("search_space", "width", 0, "width"),
        ("search_space", "type", "nope", "config.search_space.type must be one of"),
    ],
)
def test_bad_fields_name_the_field_and_value(section, field, value, match):
    config = quickstart.get_config().to_dict()  # a plain dict: ConfigDict itself refuses some wrong types
    config[section][field] = value
    with pytest.raises(ConfigError, match=match) as error:
        Experiment.from_config(config, require=("data", "train", "search"))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "value, mode", [("fast", "fast"), ("full", "full"), ("off", "off"), (True, "fast"), (False, "off")]
)
def test_graph_optimizations_take_a_mode_or_the_former_bool(value, mode):
    config = quickstart.get_config().to_dict()
    config["train"]["graph_optimizations"] = value
    assert Experiment.from_config(config).train.graph_optimizations == mode
    del config["train"]["graph_optimizations"]
    assert Experiment.from_config(config).train.graph_optimizations == "fast"


def test_unknown_top_level_section_and_wrong_section_type():
    config = quickstart.get_config()
    config.trian = {"steps": 3}
    with pytest.raises(ConfigError, match=r"Unknown field\(s\) in config.<top level>: \['trian'\]"):
        Experiment.from_config(config)
    with pytest.raises(ConfigError, match="config.train must be a dict of fields"):
        Experiment.from_config({**quickstart.get_config().to_dict(), "train": 3})


def test_scarlet_space_serves_classification_only():
    config = scarlet.get_config("cpu")
    config.model.task = "seg"
    with pytest.raises(ConfigError, match=r"config.model.task must be one of \['cls'\] for the scarlet space"):
        Experiment.from_config(config)
