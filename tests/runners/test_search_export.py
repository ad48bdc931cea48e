"""runners/search.py and runners/export.py end to end on a tiny supernet (trained for a few steps).

One module-scoped workdir: train (20 steps) -> search (both methods) -> export; the export's parity
check loads the SavedModel in a subprocess that never imports scalenas_tf, and runs the TFLite file
under LiteRT.
"""

import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from configs import quickstart
from scalenas_tf.experiment import DEFAULT_MAX_METRIC_DROP
from scalenas_tf.export import parity
from scalenas_tf.export import tflite
from scalenas_tf.runners import export as export_runner
from scalenas_tf.runners import search as search_runner
from scalenas_tf.runners import train as train_runner
from scalenas_tf.search.state import SearchStateError


def tiny_config():
    config = quickstart.get_config()
    config.search_space.update(width=4, depth_choices=(1, 2), num_modules=(1, 1), num_branches=(2, 3), stem_channels=8)
    config.model.input_size = (32, 32)
    config.data.update(batch_size=4, train_examples=64, validation_examples=16)
    config.train.update(steps=20, steps_per_epoch=20, warmup_steps=0)
    config.search.update(
        population=8,
        top_k=4,
        children=4,
        budget=16,
        calibration_batches=2,
        calibration_batch_size=8,
        validation_examples=16,
        batch_size=8,
    )
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("job"))
    train_runner.run(tiny_config(), workdir, verbose=0, log=lambda *a: None)
    return workdir


@pytest.fixture(scope="module")
def searched(trained):
    summary = search_runner.run(tiny_config(), trained, log=lambda *a: None)
    return trained, summary


def test_search_outputs(searched):
    workdir, summary = searched
    out = os.path.join(workdir, "search")
    for name in ("evaluations.jsonl", "pareto_front.json", "pareto_front.csv", "pareto.png", "search_summary.json"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    assert summary["metric_traces"] == 1  # one metric trace for every arch
    for method in ("evolution", "random"):
        assert summary["methods"][method]["evaluated"] == 16
    lines = open(os.path.join(out, "evaluations.jsonl")).read().splitlines()
    records = [json.loads(line) for line in lines[1:]]
    assert len(records) == 32 and len({(r["method"], r["hash"]) for r in records}) == 32
    front = json.load(open(os.path.join(out, "pareto_front.json")))
    costs = [p["gmacs"] for p in front]
    assert costs == sorted(costs) and len(front) >= 1
    # Along the front, more cost buys a strictly higher metric.
    assert all(b["miou"] > a["miou"] for a, b in zip(front, front[1:]))
    rows = list(csv.DictReader(open(os.path.join(out, "pareto_front.csv"))))
    assert [r["hash"] for r in rows] == [p["hash"] for p in front]
    # The front dominates every evaluation.
    for r in records:
        assert any(p["gmacs"] <= r["cost"] and p["miou"] >= r["metric"] for p in front)
    assert 0.0 < summary["constant_baseline"]["metric"] < 1.0
    text = search_runner.format_summary(summary)
    assert "Pareto front" in text and "constant prediction" in text


def test_restarting_a_finished_search_evaluates_nothing_and_larger_budget_extends_it(searched):
    workdir, summary = searched
    before = open(os.path.join(workdir, "search", "evaluations.jsonl")).read()
    again = search_runner.run(tiny_config(), workdir, log=lambda *a: None)
    assert open(os.path.join(workdir, "search", "evaluations.jsonl")).read() == before
    assert again["front"] == summary["front"]
    # A different setting is refused instead of mixing results.
    config = tiny_config()
    config.search.top_k = 5
    with pytest.raises(SearchStateError, match="settings"):
        search_runner.run(config, workdir, log=lambda *a: None)


def test_export_parity_and_metadata(searched):
    workdir, summary = searched
    result = export_runner.run(tiny_config(), workdir, name="best", log=lambda *a: None)
    out = result["export_dir"]
    meta = json.load(open(os.path.join(out, "metadata.json")))
    best = max(summary["front"], key=lambda p: p["miou"])
    assert meta["arch_hash"] == best["hash"]
    # The exported arch scores what the search measured (same calibration and validation data).
    assert meta["metric"]["value"] == pytest.approx(best["miou"], abs=1e-9)
    for kind in ("saved_model", "tflite_fp32"):
        report = meta["parity"][kind]
        assert report["passed"] and report["max_abs_diff"] <= 1e-4 * max(1.0, report["output_max_abs"]), report
        assert report["metric"] == pytest.approx(meta["parity"]["supernet"]["metric"], abs=1e-3)
        assert report["decision_agreement"] > 0.99
    assert meta["cost"]["keras_count_params"] > 0 and meta["source_checkpoint"]["sha256"]
    assert meta["versions"]["tensorflow"] == tf.__version__
    # The serving contract: a named input and task-named outputs.
    loaded = tf.saved_model.load(os.path.join(out, "saved_model"))
    signature = loaded.signatures["serving_default"]
    assert list(signature.structured_input_signature[1]) == ["images"]
    assert sorted(signature.structured_outputs) == ["logits", "segmentation"]
    images = np.random.default_rng(0).random((3, 32, 32, 3)).astype(np.float32)
    outputs = signature(images=tf.constant(images))
    assert outputs["segmentation"].shape == (3, 32, 32) and outputs["logits"].shape == (3, 8, 8, 5)
    assert "Exported" in export_runner.format_summary(result)


def test_export_by_budget_named_arch_and_errors(searched, monkeypatch):
    workdir, summary = searched
    config = tiny_config()
    config.export.isolated_check = False
    config.export.formats = ("saved_model",)
    cheapest = summary["front"][0]
    result = export_runner.run(config, workdir, budget=cheapest["gmacs"], name="cheap", log=lambda *a: None)
    assert result["arch_hash"] == cheapest["hash"]
    with pytest.raises(ValueError, match="No Pareto point costs <= budget"):
        export_runner.run(config, workdir, budget=cheapest["gmacs"] / 2, log=lambda *a: None)
    with pytest.raises(ValueError, match="not both"):
        export_runner.run(config, workdir, arch="largest", budget=1.0, log=lambda *a: None)
    with pytest.raises(ValueError, match="Not found"):
        export_runner.run(config, workdir, arch="no/such/arch.json", log=lambda *a: None)
    # A broken export fails loudly.
    config.export.formats = ("saved_model", "tflite_fp32")
    real = parity.run_tflite
    monkeypatch.setattr(parity, "run_tflite", lambda path, images: {k: v + 0.01 for k, v in real(path, images).items()})
    with pytest.raises(parity.ParityError, match="tflite_fp32: max abs diff"):
        export_runner.run(config, workdir, arch="smallest", name="broken", log=lambda *a: None)
    export_root = os.path.join(workdir, "export")
    assert not os.path.exists(os.path.join(export_root, "broken"))  # never swapped in
    failed = json.load(open(os.path.join(export_root, "broken.parity_failed.json")))
    assert failed["parity"]["tflite_fp32"]["passed"] is False


def test_export_quantized_formats(searched):
    workdir, _ = searched
    config = tiny_config()
    config.export.isolated_check = False
    config.export.update(calibration_samples=8, int8_io=True)
    formats = ("tflite_fp32", "tflite_fp16", "tflite_dynamic", "tflite_int8")
    result = export_runner.run(config, workdir, arch="largest", name="quantized", formats=formats, log=lambda *a: None)
    out = result["export_dir"]
    # Only what was asked for: no SavedModel directory.
    assert sorted(os.listdir(out)) == sorted(["metadata.json", *(tflite.FILE_NAMES[f] for f in formats)])
    meta = json.load(open(os.path.join(out, "metadata.json")))
    assert meta["files"] == {f: tflite.FILE_NAMES[f] for f in formats}
    supernet_metric = meta["parity"]["supernet"]["metric"]
    for fmt in formats:
        report = meta["parity"][fmt]
        assert report["size_bytes"] == os.path.getsize(os.path.join(out, tflite.FILE_NAMES[fmt]))
        assert report["metric_drop"] == pytest.approx(supernet_metric - report["metric"], abs=1e-12)
        assert report["passed"] and 0.0 <= report["decision_agreement"] <= 1.0
        if fmt == "tflite_fp32":
            assert "max_metric_drop" not in report and report["max_abs_diff"] <= report["tolerance"]
        else:
            assert report["max_metric_drop"] == DEFAULT_MAX_METRIC_DROP[fmt]
    # Quantized weights are smaller on disk (in this tiny model the graph itself is much of the file).
    sizes = {f: meta["parity"][f]["size_bytes"] for f in formats}
    assert sizes["tflite_int8"] < sizes["tflite_fp16"] < sizes["tflite_fp32"]
    assert sizes["tflite_dynamic"] < sizes["tflite_fp16"]
    assert meta["parity"]["tflite_int8"]["calibration_samples"] == 8 and meta["parity"]["tflite_int8"]["int8_io"]
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=os.path.join(out, "model_int8.tflite")).get_signature_runner("serving_default")
    assert runner.get_input_details()["images"]["dtype"] == np.int8
    assert runner.get_output_details()["segmentation"]["dtype"] == np.int32
    assert "tflite_int8" in export_runner.format_summary(result)


def test_export_records_the_predicted_latency(searched, tmp_path):
    from scalenas_tf.experiment import Experiment
    from scalenas_tf.search.latency import LatencyModel

    workdir, _ = searched
    path = LatencyModel({"conv_macs": 1e-6, "ops": 0.002}, 0.05, family="scalenas").save(str(tmp_path / "lat.json"))
    config = tiny_config()
    config.export.isolated_check = False
    config.search.latency_model = path
    result = export_runner.run(
        config, workdir, arch="largest", name="lat", formats=("saved_model",), log=lambda *a: None
    )
    experiment = Experiment.from_config(config)
    record = experiment.family.count(experiment.space, experiment.space.named("largest"), "seg", 5, (32, 32))
    expected = 0.05 + 1e-6 * record.features["conv_macs"] + 0.002 * record.features["ops"]
    assert result["cost"]["latency_ms_predicted"] == pytest.approx(expected, rel=1e-12)


def test_export_refuses_a_quantized_format_that_loses_too_much(searched, monkeypatch):
    workdir, _ = searched
    config = tiny_config()
    config.export.isolated_check = False
    config.export.calibration_samples = 4
    config.export.max_metric_drop = {"tflite_dynamic": 0.0}
    real = parity.run_tflite

    def worse(path, images):  # the dynamic-range file predicts class 1 (not the background) everywhere
        outputs = real(path, images)
        if path.endswith(tflite.FILE_NAMES["tflite_dynamic"]):
            outputs["logits"] = np.zeros_like(outputs["logits"])
            outputs["logits"][..., 1] = 1.0
        return outputs

    monkeypatch.setattr(parity, "run_tflite", worse)
    with pytest.raises(parity.ParityError, match=r"tflite_dynamic: miou drops by 0\.\d+ .* > max_metric_drop 0\.0000"):
        export_runner.run(
            config, workdir, arch="largest", name="lossy", formats=("tflite_dynamic",), log=lambda *a: None
        )
    export_root = os.path.join(workdir, "export")
    assert not os.path.exists(os.path.join(export_root, "lossy"))
    failed = json.load(open(os.path.join(export_root, "lossy.parity_failed.json")))
    assert failed["parity"]["tflite_dynamic"]["passed"] is False


def test_representative_images_come_from_the_training_pipeline(searched):
    from scalenas_tf.experiment import Experiment

    experiment = Experiment.from_config(tiny_config(), require=("data",))
    images = export_runner._representative_images(experiment, 5)
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.std() > 0.01
    with pytest.raises(ValueError, match="calibration_samples=100000 but the training split gave only 64"):
        export_runner._representative_images(experiment, 100_000)


def test_export_format_errors(searched):
    from scalenas_tf.export import qat

    workdir, _ = searched
    with pytest.raises(ValueError, match="formats must be distinct names from"):
        export_runner.run(tiny_config(), workdir, arch="largest", formats=("tflite_int4",), log=lambda *a: None)
    if qat.unavailable_reason() is not None:
        with pytest.raises(ValueError, match=r"tflite_qat needs the \[qat\] extra"):
            export_runner.run(tiny_config(), workdir, arch="largest", formats=("tflite_qat",), log=lambda *a: None)


def _tree(root):
    """{relative path: file bytes} of every file under `root`."""
    out = {}
    for base, _, files in os.walk(root):
        for name in files:
            path = os.path.join(base, name)
            out[os.path.relpath(path, root)] = open(path, "rb").read()
    return out


def test_failed_export_and_bad_names_leave_earlier_files_intact(searched, monkeypatch):
    from scalenas_tf import workdir as workdir_lib
    from scalenas_tf.export import serving

    workdir, _ = searched
    config = tiny_config()
    config.export.isolated_check = False
    config.export.formats = ("saved_model",)
    first = export_runner.run(config, workdir, arch="largest", name="keep", log=lambda *a: None)
    keep = first["export_dir"]
    before = _tree(workdir)

    # Export names are plain names: nothing outside (or the workdir itself) is ever touched.
    for name in ("..", ".", "/tmp", "a/b", ".hidden", "keep/.."):
        with pytest.raises(workdir_lib.WorkdirError, match="export name"):
            export_runner.run(config, workdir, arch="smallest", name=name, log=lambda *a: None)
    assert _tree(workdir) == before

    # A failure mid-export (here: while writing the SavedModel) leaves the earlier export as it was.
    def broken(*args, **kwargs):
        os.makedirs(args[3])
        open(os.path.join(args[3], "partial.pb"), "w").write("half a model")
        raise OSError("disk full")

    monkeypatch.setattr(serving, "save_saved_model", broken)
    with pytest.raises(OSError, match="disk full"):
        export_runner.run(config, workdir, arch="smallest", name="keep", log=lambda *a: None)
    assert _tree(workdir) == before
    assert not [n for n in os.listdir(os.path.dirname(keep)) if n.startswith(".")]  # no staging left behind


def test_search_errors(tmp_path):
    with pytest.raises(ValueError, match="No trained supernet"):
        search_runner.run(tiny_config(), str(tmp_path), log=lambda *a: None)
    config = tiny_config()
    config.search.cost_measure = "flops"
    with pytest.raises(ValueError, match="cost_measure"):
        search_runner.run(config, str(tmp_path), log=lambda *a: None)
    config = tiny_config()
    config.search.unknown_field = 1
    with pytest.raises(ValueError, match="unknown_field"):
        search_runner.run(config, str(tmp_path), log=lambda *a: None)
    config = tiny_config()
    config.search.population = 100
    with pytest.raises(ValueError, match="population"):
        search_runner.run(config, str(tmp_path), log=lambda *a: None)


# === The binaries, killed and restarted (slow: several TensorFlow processes) ===

TINY_FLAGS = [
    "--config.search_space.width=4",
    "--config.search_space.depth_choices=(1, 2)",
    "--config.search_space.num_modules=(1, 1)",
    "--config.search_space.num_branches=(2, 3)",
    "--config.search_space.stem_channels=8",
    "--config.model.input_size=(32, 32)",
    "--config.search.population=8",
    "--config.search.top_k=4",
    "--config.search.children=4",
    "--config.search.budget=24",
    "--config.search.calibration_batches=2",
    "--config.search.calibration_batch_size=8",
    "--config.search.validation_examples=16",
    "--config.search.batch_size=8",
]


def _search_command(workdir):
    import pathlib
    import sys

    repo = pathlib.Path(__file__).resolve().parents[2]
    return [
        sys.executable,
        str(repo / "bin" / "search.py"),
        "--config=configs/quickstart.py",
        f"--workdir={workdir}",
        *TINY_FLAGS,
    ], str(repo)


def _evaluations(workdir):
    lines = open(os.path.join(workdir, "search", "evaluations.jsonl")).read().splitlines()[1:]
    return [(r["method"], r["hash"], r["metric"]) for r in map(json.loads, lines)]


@pytest.mark.slow
def test_search_binary_killed_mid_run_resumes_to_the_same_evaluations(trained, tmp_path):
    import shutil
    import signal
    import subprocess
    import time

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    runs = {}
    for name in ("whole", "killed"):
        runs[name] = str(tmp_path / name)
        os.makedirs(runs[name])
        shutil.copy(os.path.join(trained, "supernet.weights.h5"), runs[name])
    command, repo = _search_command(runs["whole"])
    assert subprocess.run(command, cwd=repo, env=env, capture_output=True, timeout=900).returncode == 0
    expected = _evaluations(runs["whole"])
    assert len(expected) == 48

    command, repo = _search_command(runs["killed"])
    log = os.path.join(runs["killed"], "search", "evaluations.jsonl")
    proc = subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    while time.time() < deadline and not (os.path.exists(log) and sum(1 for _ in open(log)) > 12):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _evaluations(runs["killed"])
    assert 0 < len(partial) < 48 and partial == expected[: len(partial)]
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming" in done.stdout
    assert _evaluations(runs["killed"]) == expected


@pytest.mark.slow
def test_export_binary_killed_mid_export_keeps_the_earlier_export(searched, tmp_path):
    import shutil
    import signal
    import subprocess
    import sys
    import time

    workdir, _ = searched
    run_dir = str(tmp_path / "run")
    shutil.copytree(workdir, run_dir, ignore=shutil.ignore_patterns("export"))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    command = [
        sys.executable,
        os.path.join(repo, "bin", "export.py"),
        "--config=configs/quickstart.py",
        f"--workdir={run_dir}",
        "--name=model",
        "--arch=largest",
        *TINY_FLAGS,
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    root = os.path.join(run_dir, "export")
    before = _tree(os.path.join(root, "model"))

    command[-len(TINY_FLAGS) - 1] = "--arch=smallest"
    proc = subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        staging = [n for n in os.listdir(root) if ".staging-" in n]
        if staging and os.path.exists(os.path.join(root, staging[0], "saved_model")):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _tree(os.path.join(root, "model")) == before  # the kill left the earlier export as it was

    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _tree(os.path.join(root, "model")) != before
    assert json.load(open(os.path.join(root, "model", "metadata.json")))["chosen_by"].startswith(
        "named arch 'smallest'"
    )
    assert not [n for n in os.listdir(root) if n.startswith(".")]  # the killed run's staging was cleaned up
