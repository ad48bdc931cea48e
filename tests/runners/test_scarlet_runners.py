"""The SCARLET space through the same runners: train -> NSGA-II search (resumable) -> export with ELS folds.

A tiny 5-layer S1 space (identity offered everywhere, so strided and width-changing ELS convs occur)
keeps the traced train step to seconds; the export runs the isolated SavedModel and TFLite parity.
"""

import json
import os

import pytest

from configs import scarlet
from scalenas_tf.experiment import Experiment
from scalenas_tf.runners import export as export_runner
from scalenas_tf.runners import search as search_runner
from scalenas_tf.runners import train as train_runner


def tiny_config():
    config = scarlet.get_config("cpu")
    config.search_space.update(
        variant="s1",
        channels=(8, 8, 16, 16, 24),
        strides=(2, 1, 2, 1, 1),
        stem_channels=8,
        first_channels=8,
        head_channels=16,
        kernel_sizes=(3, 5),
        identity_everywhere=True,
    )
    config.model.input_size = (16, 16)
    config.data.update(batch_size=8, train_examples=64, validation_examples=32)
    config.train.update(steps=12, steps_per_epoch=6, warmup_steps=0)
    config.search.update(
        population=6,
        generations=2,
        max_cost=0.12,
        min_metric=0.0,
        num_outputs=3,
        calibration_batches=2,
        calibration_batch_size=8,
        validation_examples=32,
        batch_size=16,
    )
    config.export.parity_atol = 1e-5
    return config


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("scarlet"))
    trained = train_runner.run(tiny_config(), workdir, verbose=0, log=lambda *a: None)
    summary = search_runner.run(tiny_config(), workdir, log=lambda *a: None)
    return workdir, trained, summary


def test_training_logs_loss_spread(searched):
    _, trained, _ = searched
    assert trained["steps"] == 12
    assert trained["loss_spread"] >= 0.0 and trained["loss"] > 0.0


def test_nsga2_search_outputs_respect_the_constraint(searched):
    workdir, _, summary = searched
    assert summary["cost_unit"] == "madds_m"
    assert set(summary["methods"]) == {"nsga2", "random"}
    assert summary["methods"]["nsga2"]["evaluated"] == summary["methods"]["random"]["evaluated"] == 18
    lines = open(os.path.join(workdir, "search", "evaluations.jsonl")).read().splitlines()
    records = [json.loads(line) for line in lines[1:]]
    assert records and all(r["cost"] <= 0.12 for r in records)  # nothing over max_cost was evaluated
    assert all(isinstance(r["params"], float) and r["params"] > 0 for r in records)
    selected = summary["methods"]["nsga2"]["selected"]
    assert 1 <= len(selected) <= 3 and all("params" in p and p["describe"] for p in selected)
    text = search_runner.format_summary(summary)
    assert "spread along" in text and "nsga2" in text


def test_restart_evaluates_nothing_and_more_generations_extend(searched):
    workdir, _, summary = searched
    path = os.path.join(workdir, "search", "evaluations.jsonl")
    before = open(path).read()
    again = search_runner.run(tiny_config(), workdir, log=lambda *a: None)
    assert open(path).read() == before and again["front"] == summary["front"]
    longer = tiny_config()
    longer.search.generations = 3
    extended = search_runner.run(longer, workdir, log=lambda *a: None)
    assert open(path).read().startswith(before)
    assert extended["methods"]["nsga2"]["evaluated"] == 24


def test_export_folds_and_serves_with_parity(searched):
    workdir, _, _ = searched
    config = tiny_config()
    arch = Experiment.from_config(config).space.named("smallest")  # identity everywhere: every fold kind
    path = os.path.join(workdir, "smallest.json")
    with open(path, "w") as f:
        f.write(arch.to_json())
    summary = export_runner.run(config, workdir, arch=path, name="smallest", log=lambda *a: None)
    folds = summary["els_folds"]
    # Layers 0-1 follow a max pooling and precede a strided identity: kept; 2-4 fold into the head.
    assert [(list(f["layers"]), f["action"], f["target"]) for f in folds] == [
        ([0, 1], "kept", None),
        ([2, 3, 4], "forward", "head"),
    ]
    assert folds[0]["reason"]
    for kind in ("saved_model", "tflite_fp32"):
        assert summary["parity"][kind]["passed"], summary["parity"][kind]
    assert summary["cost"]["counted"].startswith("as extracted")
    meta = json.load(open(os.path.join(summary["export_dir"], "metadata.json")))
    assert meta["els_folds"] == folds and meta["cost"]["keras_count_params"] > 0


def test_export_of_a_preset_name_outside_the_tiny_space_is_a_clear_error(searched):
    workdir, _, _ = searched
    with pytest.raises(ValueError, match="scarlet_a"):
        export_runner.run(tiny_config(), workdir, arch="scarlet_a", log=lambda *a: None)
