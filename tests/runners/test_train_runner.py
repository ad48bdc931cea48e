"""bin/train_supernet.py and runners/train.py: bad input, and resuming after a kill (slow, subprocesses)."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

from configs import shapes_seg
from scalenas_tf.runners import train as train_runner

REPO = pathlib.Path(__file__).resolve().parents[2]
# A cheap job: 2 depth choices, 32x32 images, batch 4.
SMALL = [
    "--config.search_space.width=4",
    "--config.search_space.depth_choices=(1, 2)",
    "--config.model.input_size=(32, 32)",
    "--config.data.batch_size=4",
    "--config.data.train_examples=64",
    "--config.data.validation_examples=8",
    "--config.train.warmup_steps=0",
]


def _command(workdir, steps, per_epoch, strategy="default"):
    return [
        sys.executable,
        str(REPO / "bin" / "train_supernet.py"),
        "--config=configs/shapes_seg.py",
        f"--workdir={workdir}",
        f"--strategy={strategy}",
        f"--config.train.steps={steps}",
        f"--config.train.steps_per_epoch={per_epoch}",
        *SMALL,
    ]


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO), **extra)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("teacher", "big", "config.train.teacher"),
        ("optimizer", "lamb", "config.train.optimizer"),
        ("precision", "float8", "config.train.precision"),
        ("sampler", "magic", "config.train.sampler"),
    ],
)
def test_bad_train_fields_name_the_field(tmp_path, field, value, message):
    config = shapes_seg.get_config()
    config.train[field] = value
    with pytest.raises(ValueError, match=message):
        train_runner.run(config, str(tmp_path))


def test_binary_reports_bad_input_in_one_line(tmp_path):
    out = subprocess.run(
        _command(tmp_path, 2, 1) + ["--config.train.optimizer=lamb"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1
    assert "config.train.optimizer" in out.stderr and "Traceback" not in out.stderr


def _small_config(steps, per_epoch, **train):
    config = shapes_seg.get_config()
    config.search_space.width = 4
    config.search_space.depth_choices = (1, 2)
    config.model.input_size = (32, 32)
    config.data.batch_size, config.data.train_examples, config.data.validation_examples = 4, 64, 8
    config.train.warmup_steps, config.train.steps, config.train.steps_per_epoch = 0, steps, per_epoch
    config.train.update(train)
    return config


def test_a_backup_with_the_other_slot_layout_fails_naming_the_field_that_resumes_it(tmp_path, capsys):
    """A backup written with one optimizer slot per variable (as before slots were stacked) does not resume into
    stacked slots with fresh optimizer state (Keras's warning): it fails, naming the setting that resumes it."""
    workdir = str(tmp_path)
    train_runner.run(_small_config(2, 1, stacked_optimizer_slots=False), workdir, verbose=0)
    message = r"optimizer state does not fit.*--config\.train\.stacked_optimizer_slots=False"
    with pytest.raises(ValueError, match=message):
        train_runner.run(_small_config(4, 1), workdir, verbose=0)
    capsys.readouterr()
    summary = train_runner.run(_small_config(4, 1, stacked_optimizer_slots=False), workdir, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 3/4" in out and "Epoch 1/4" not in out  # resumed after the backup's 2 epochs
    assert summary["steps"] == 4


def _wait_for(path, proc, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path():
            return True
        if all(p.poll() is not None for p in proc):
            return False
        time.sleep(1)
    return False


@pytest.mark.slow
def test_fit_resumes_after_kill(tmp_path):
    """Killed after its first epoch's backup, the restarted job runs only the remaining epochs."""
    cmd = _command(tmp_path, steps=6, per_epoch=2)
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    meta = tmp_path / "backup" / "training_metadata.json"
    assert _wait_for(lambda: meta.exists() and json.loads(meta.read_text())["epoch"] >= 1, [proc], 600)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epoch_done = json.loads(meta.read_text())["epoch"]
    assert epoch_done < 3

    out = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"Epoch {epoch_done + 1}/3" in out.stdout
    assert "Epoch 1/3" not in out.stdout
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 6  # optimizer iterations: restored, then only the rest trained
    assert (tmp_path / "supernet.weights.h5").exists()


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_trains_and_resumes_after_both_workers_are_killed(tmp_path):
    """Two MultiWorkerMirroredStrategy workers on 127.0.0.1 train with the custom loop; after both are
    killed, restarting them resumes from the last checkpoint and finishes at the same total step."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    cmd = _command(tmp_path, steps=8, per_epoch=2, strategy="multi_worker")

    def start():
        return [
            subprocess.Popen(
                cmd,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})),
            )
            for i in range(2)
        ]

    ckpt_dir = tmp_path / "loop_checkpoints"
    workers = start()
    found = _wait_for(lambda: any(ckpt_dir.glob("ckpt-*.index")), workers, 900)
    for w in workers:
        w.send_signal(signal.SIGKILL)
        w.wait()
    assert found, workers[0].stdout.read()[-3000:]
    saved = max(int(p.name.split("-")[1].split(".")[0]) for p in ckpt_dir.glob("ckpt-*.index"))
    assert saved < 8

    workers = start()
    outputs = [w.communicate(timeout=900)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "resumed from" in outputs[0], outputs[0][-3000:]
    summary = json.loads(outputs[0].strip().splitlines()[-1])
    assert summary["steps"] == 8 and 2 <= summary["resumed_from"] <= saved
    assert (tmp_path / "supernet.weights.h5").exists()


def test_config_without_train_section_is_a_clear_error(tmp_path):
    from configs import scalenas_seg

    with pytest.raises(ValueError, match="missing the section `config.train`"):
        train_runner.run(scalenas_seg.get_config("w8"), str(tmp_path))


def test_a_damaged_backup_says_what_to_delete(tmp_path):
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "training_metadata.json").write_text('{"epoch')  # cut short by a kill
    with pytest.raises(ValueError, match=f"training_metadata.json: invalid JSON.*delete {backup}"):
        train_runner.run(shapes_seg.get_config(), str(tmp_path))
    assert (backup / "training_metadata.json").read_text() == '{"epoch'  # nothing deleted for the user


def _small_experiment(**train):
    from scalenas_tf.experiment import Experiment

    config = shapes_seg.get_config()
    config.search_space.update(width=4, depth_choices=(2, 4))  # hrnet (depth 4) is a point
    config.model.input_size = (32, 32)
    config.train.update(train)
    return Experiment.from_config(config, require=("data", "train"))


def test_teacher_checkpoint_gives_the_teacher_and_initializes_the_supernet(tmp_path):
    """ScaleNAS's recipe: supernet weights imported from a pretrained HRNet are the teacher (its subnet
    `teacher_arch`, default the family's `hrnet`) and the supernet's starting point."""
    import keras
    import numpy as np

    from scalenas_tf.models.extraction import extract_subnet

    keras.utils.set_random_seed(1)
    pretrained = _small_experiment().build_supernet()
    pretrained.build((None, None, None, 3))
    path = str(tmp_path / "hrnet.weights.h5")
    pretrained.save_weights(path)
    experiment = _small_experiment(teacher="static", teacher_checkpoint=path, init_from_teacher=True)
    keras.utils.set_random_seed(2)
    supernet = experiment.build_supernet()
    supernet.build((None, None, None, 3))
    logs = []
    teacher = train_runner.prepare_teacher(experiment, supernet, (32, 32), log=logs.append)
    for mine, theirs in zip(supernet.weights, pretrained.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    hrnet = experiment.space.named("hrnet")
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    expected = extract_subnet(pretrained, hrnet, (32, 32))(x, training=False)
    np.testing.assert_allclose(teacher(x, training=False), expected, atol=1e-5)
    assert any("initialized from" in line for line in logs)
    # In-place distillation with the checkpoint as the starting point only.
    inplace = _small_experiment(teacher="inplace", teacher_checkpoint=path, init_from_teacher=True)
    assert train_runner.prepare_teacher(inplace, supernet, (32, 32), log=logs.append) == "inplace"


@pytest.mark.parametrize(
    "train, message",
    [
        (dict(teacher="static", teacher_weights="a.weights.h5", teacher_checkpoint="b.weights.h5"), "set one"),
        (dict(teacher="inplace", teacher_checkpoint="b.weights.h5"), "neither is set"),
        (dict(teacher="static"), "teacher_checkpoint"),
    ],
)
def test_teacher_fields_are_checked(train, message):
    from scalenas_tf.experiment import ConfigError

    with pytest.raises(ConfigError, match=message):
        _small_experiment(**train)


def test_missing_teacher_checkpoint_or_arch_fails_before_training(tmp_path):
    config = shapes_seg.get_config()
    config.train.update(teacher="static", teacher_checkpoint=str(tmp_path / "absent.weights.h5"))
    with pytest.raises(ValueError, match="teacher_checkpoint not found"):
        train_runner.run(config, str(tmp_path / "run"))
    present = tmp_path / "present.weights.h5"
    present.write_bytes(b"")
    config.train.update(teacher_checkpoint=str(present), teacher_arch="no_such_arch")
    with pytest.raises(ValueError, match="no_such_arch"):
        train_runner.run(config, str(tmp_path / "run"))


@pytest.mark.parametrize("mode", ["off", "fast"])
def test_the_train_step_is_compiled_under_the_configured_graph_optimizations(tmp_path, monkeypatch, mode):
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.eager import context

    from scalenas_tf.training.trainer import SupernetTrainer

    seen = []
    train_step = SupernetTrainer.train_step

    def traced(self, data):  # runs while the train function is traced, inside its first call
        serialized = context.context().function_call_options.config_proto_serialized
        seen.append(config_pb2.ConfigProto.FromString(serialized).graph_options.rewrite_options)
        return train_step(self, data)

    monkeypatch.setattr(SupernetTrainer, "train_step", traced)
    config = shapes_seg.get_config()
    config.search_space.update(width=4, depth_choices=(1,), num_modules=(1, 1, 1))
    config.model.input_size = (32, 32)
    config.data.update(batch_size=2, train_examples=4, validation_examples=2)
    config.train.update(steps=1, steps_per_epoch=1, warmup_steps=0, teacher="none", graph_optimizations=mode)
    train_runner.run(config, str(tmp_path), verbose=0, log=lambda line: None)
    assert seen, "the train step was not traced"
    assert all(options.disable_meta_optimizer == (mode == "off") for options in seen)
    assert all((options.meta_optimizer_iterations == options.ONE) == (mode == "fast") for options in seen)
