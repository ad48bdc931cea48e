"""Fuzzing the bin/ programs as a user runs them: bad flags, configs, overrides, arch files and
workdirs, each in a subprocess with a timeout.

Every run must be refused: exit status 1, no traceback, the last line of standard error
`<program>: error: <one line naming the flag, field or file>`, within the timeout; files beside and
above the workdir, and every file already in it, must be left byte-identical.

bin/cost.py does not import TensorFlow, so its cases are fast; the other programs import it (a few
seconds per run) and are marked slow (run them with --run_slow).
"""

import json
import os
import pathlib
import pickle
import subprocess
import sys
import time

import pytest

from configs import quickstart

REPO = pathlib.Path(__file__).resolve().parents[2]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONDONTWRITEBYTECODE": "1"}
FAST_TIMEOUT = 60
SLOW_TIMEOUT = 240
QS = "--config=configs/quickstart.py"
SC = "--config=configs/scarlet.py:cpu"


def run_program(program: str, args, timeout: float) -> subprocess.CompletedProcess:
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, f"bin/{program}", *args],
            cwd=REPO,
            env=ENV,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"bin/{program} {args} did not finish within {timeout} s (a hang, or it started working)")
    proc.seconds = time.monotonic() - start
    return proc


def assert_refused(proc, program: str, *needles: str) -> str:
    """Exit 1, no traceback, and a one-line `<program>: error:` message (containing one of `needles`) last."""
    err = proc.stderr
    report = f"rc={proc.returncode}\n--- stderr (tail) ---\n{err[-3000:]}\n--- stdout (tail) ---\n{proc.stdout[-1000:]}"
    assert proc.returncode == 1, report
    assert "Traceback" not in err and "Traceback" not in proc.stdout, report
    assert "FATAL Flags" not in err, report
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, report
    prefix = f"{program}: error: "
    assert lines[-1].startswith(prefix), report
    assert sum(line.startswith(prefix) for line in lines) == 1, report
    message = lines[-1][len(prefix) :]
    assert message.strip(), report
    if needles:
        assert any(n in message for n in needles), f"message names none of {needles}: {message!r}"
    return message


def snapshot(*roots: pathlib.Path) -> dict[str, bytes | None]:
    """Every file and directory under `roots` (a directory maps to None)."""
    state = {}
    for root in roots:
        if not root.exists():
            continue
        for path in sorted(root.rglob("*")):
            state[str(path)] = None if path.is_dir() else path.read_bytes()
    return state


@pytest.fixture
def sandbox(tmp_path):
    """`tmp_path/work`, with sentinels beside it and above it (each test compares a `snapshot` of
    `tmp_path` before and after the run)."""
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "above_sentinel.txt").write_bytes(b"above\n")
    (work / "beside_sentinel.txt").write_bytes(b"beside\n")
    return work


def check_unchanged(before: dict, root: pathlib.Path):
    after = snapshot(root)
    assert after == before, (
        f"files changed: added {sorted(set(after) - set(before))}, removed {sorted(set(before) - set(after))}, "
        f"modified {sorted(k for k in set(after) & set(before) if after[k] != before[k])}"
    )


class _TouchOnLoad:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def _files(work: pathlib.Path) -> dict[str, str]:
    """Input files the cost.py cases refer to as {name}."""
    marker = work.parent / "marker_created_by_pickle"
    files = {
        "garbage_json": b"[[[",
        "deep_json": b"[" * 100_000 + b"]" * 100_000,
        "empty_json": b"",
        "non_utf8_json": b"\xff\xfe\xfa",
        "wrong_arch_json": json.dumps({"modules": 5}).encode(),
        "scarlet_18_json": json.dumps(["K3E3"] * 18).encode(),
        "pickle_npy": pickle.dumps(_TouchOnLoad(marker)),
        "garbage_npy": b"\x80\x04 not a pickle",
        "mask_json": json.dumps([{"d": [2, 2], "f": [[[1, 1]], [[1, 1]]]}]).encode(),
        "syntax_config_py": b"def get_config(:\n",
        "raising_config_py": b"def get_config(arg=None):\n    raise RuntimeError('boom from the config')\n",
        "no_get_config_py": b"x = 1\n",
        "list_config_py": b"def get_config(arg=None):\n    return [1, 2]\n",
    }
    paths = {}
    for name, data in files.items():
        stem, ext = name.rsplit("_", 1)
        path = work / f"{stem}.{ext}"
        path.write_bytes(data)
        paths[name] = str(path)
    paths["dir"] = str(work / "a_directory")
    os.mkdir(paths["dir"])
    paths["missing"] = str(work / "missing.json")
    paths["marker"] = str(marker)
    return paths


# (args with {file} placeholders, names the message may contain)
COST_CASES = {
    "variant_w0": (["--config=configs/shapes_seg.py:w0"], ["w0"]),
    "variant_wx": (["--config=configs/scalenas_seg.py:wx"], ["wx"]),
    "variant_nope": (["--config=configs/scarlet.py:nope"], ["nope"]),
    "variant_on_quickstart": (["--config=configs/quickstart.py:w0"], ["w0"]),
    "config_missing_file": (["--config=configs/nonexistent.py"], ["nonexistent.py"]),
    "config_directory": (["--config={dir}"], ["{dir}", "directory"]),
    "config_empty": (["--config="], ["config"]),
    "config_syntax_error": (["--config={syntax_config_py}"], ["syntax_config.py"]),
    "config_raises": (["--config={raising_config_py}"], ["boom from the config"]),
    "config_without_get_config": (["--config={no_get_config_py}"], ["get_config"]),
    "config_not_a_dict": (["--config={list_config_py}"], ["config"]),
    "config_flag_missing": ([], ["--config"]),
    "unknown_flag": ([QS, "--nope=1"], ["nope"]),
    "positional_argument": ([QS, "extra_argument"], ["extra_argument"]),
    "unknown_override": ([QS, "--config.model.foo=1"], ["foo"]),
    "unknown_override_section": ([QS, "--config.bogus.x=1"], ["bogus"]),
    "override_wrong_type": ([QS, "--config.model.num_classes=abc"], ["num_classes"]),
    "override_fraction_for_int": ([QS, "--config.search_space.width=1.5"], ["width"]),
    "override_out_of_range": ([QS, "--config.model.num_classes=0"], ["num_classes"]),
    "override_section_scalar": ([QS, "--config.model=1"], ["model"]),
    "override_space_bool": ([QS, "--config.search_space.multi_scale_output=maybe"], ["multi_scale_output"]),
    "override_value_missing": ([QS, "--config.model.task"], ["model.task"]),
    "override_scarlet_task": ([SC, "--config.model.task=seg"], ["model.task"]),
    "input_size_zero": ([QS, "--input_size=0x5"], ["input_size"]),
    "input_size_garbage": ([QS, "--input_size=abc"], ["input_size"]),
    "input_size_3d": ([QS, "--input_size=64x64x3"], ["input_size"]),
    "input_size_negative": ([QS, "--input_size=-64x64"], ["input_size"]),
    "arch_unknown_name": ([QS, "--arch=nope"], ["nope"]),
    "arch_scarlet_name_on_scalenas": ([QS, "--arch=scarlet_a"], ["scarlet_a"]),
    "arch_directory": ([QS, "--arch={dir}"], ["{dir}"]),
    "arch_dev_null": ([SC, "--arch=/dev/null"], ["/dev/null"]),
    "arch_missing": ([QS, "--arch={missing}"], ["{missing}"]),
    "arch_garbage": ([QS, "--arch={garbage_json}"], ["{garbage_json}"]),
    "arch_deep": ([SC, "--arch={deep_json}"], ["{deep_json}"]),
    "arch_empty": ([SC, "--arch={empty_json}"], ["{empty_json}"]),
    "arch_non_utf8": ([QS, "--arch={non_utf8_json}"], ["{non_utf8_json}"]),
    "arch_wrong_type": ([QS, "--arch={wrong_arch_json}"], ["{wrong_arch_json}"]),
    "arch_wrong_length": ([SC, "--arch={scarlet_18_json}"], ["{scarlet_18_json}"]),
    "as_extracted_on_scalenas": ([QS, "--as_extracted"], ["as_extracted"]),
    "official_mask_on_scarlet": ([SC, "--official_mask={mask_json}"], ["official_mask"]),
    "allow_pickle_on_scarlet": ([SC, "--allow_pickle"], ["allow_pickle"]),
    "official_mask_wrong": ([QS, "--official_mask={mask_json}"], ["{mask_json}"]),
    "official_mask_directory": ([QS, "--official_mask={dir}"], ["{dir}"]),
    "arch_and_official_mask": ([QS, "--arch=largest", "--official_mask={mask_json}"], ["arch"]),
    "pickle_without_allow_pickle": ([QS, "--official_mask={pickle_npy}"], ["allow_pickle"]),
    "garbage_npy_with_allow_pickle": ([QS, "--official_mask={garbage_npy}", "--allow_pickle"], ["{garbage_npy}"]),
    "bool_flag_with_value": ([QS, "--extract=maybe"], ["extract"]),
}


@pytest.mark.parametrize("case", sorted(COST_CASES))
def test_cost_refuses_bad_input(case, sandbox):
    files = _files(sandbox)
    args, needles = COST_CASES[case]
    args = [a.format(**files) for a in args]
    before = snapshot(sandbox.parent)
    proc = run_program("cost.py", args, FAST_TIMEOUT)
    assert_refused(proc, "cost.py", *(n.format(**files) for n in needles))
    assert proc.stdout.strip() == "", proc.stdout[-2000:]  # no report of a refused run
    check_unchanged(before, sandbox.parent)  # the pickle did not run: no marker file either
    assert not os.path.exists(files["marker"])


def test_cost_accepts_good_input(sandbox):
    # The control: the same program and flags work when the input is good.
    proc = run_program("cost.py", [QS, "--arch=smallest", "--input_size=32x32"], FAST_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["input_size"] == [32, 32]


# =================================================================================================
# Programs that import TensorFlow (slow)
# =================================================================================================


@pytest.fixture
def workdir(sandbox):
    """A run directory with files a refused command must not touch: garbage weights, a config,
    an earlier export and a search summary."""
    (sandbox / "supernet.weights.h5").write_bytes(b"not an HDF5 file\x00\xff" * 10)
    (sandbox / "config.json").write_text('{"earlier": "run"}\n')
    (sandbox / "export" / "earlier").mkdir(parents=True)
    (sandbox / "export" / "earlier" / "metadata.json").write_text('{"earlier": "export"}\n')
    return sandbox


def _slow_case(program, args, needles, setup=None):
    shown = " ".join(a for a in args if a not in (QS, "--workdir={work}")) or "no-flags"
    suffix = f"-{setup.__name__}" if setup is not None else ""
    return pytest.param(program, args, needles, setup, id=f"{program}-{shown[:70]}{suffix}", marks=pytest.mark.slow)


def _truncate(name, text):
    def setup(work):
        path = work / "search" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)

    setup.__name__ = f"{name}={text[:12]}"
    return setup


SLOW_CASES = [
    # train_supernet.py: every bad config is refused before any training or write.
    _slow_case("train_supernet.py", [QS, "--workdir={work}", "--config.train.learning_rate=-1"], ["learning_rate"]),
    _slow_case("train_supernet.py", [QS, "--workdir={work}", "--config.train.momentum=5"], ["momentum"]),
    _slow_case("train_supernet.py", [QS, "--workdir={work}", "--config.train.warmup_steps=1500"], ["warmup_steps"]),
    _slow_case("train_supernet.py", [QS, "--workdir={work}", "--config.train.optimizer=nope"], ["optimizer"]),
    _slow_case("train_supernet.py", [QS, "--workdir={work}", "--config.train.sampler=spos"], ["sampler"]),
    _slow_case("train_supernet.py", [QS, "--workdir={work}", "--config.data.batch_size=0"], ["batch_size"]),
    _slow_case("train_supernet.py", [QS, "--workdir={work}", "--config.train.precision=float64"], ["precision"]),
    _slow_case("train_supernet.py", [QS, "--workdir={work}", "--config.train.teacher=static"], ["teacher_weights"]),
    _slow_case(
        "train_supernet.py",
        [
            QS,
            "--workdir={work}",
            "--config.train.teacher=static",
            "--config.train.teacher_weights={work}/missing.weights.h5",
        ],
        ["missing.weights.h5"],
    ),
    _slow_case("train_supernet.py", [QS, "--workdir={work}", "--strategy=bogus"], ["strategy"]),
    _slow_case("train_supernet.py", [QS], ["workdir"]),
    _slow_case(
        "train_supernet.py",
        ["--config=configs/scalenas_seg.py:w8", "--workdir={work}"],
        ["config.train", "config.data"],
    ),
    _slow_case("train_supernet.py", [QS, "--workdir={work}", "positional"], ["positional"]),
    _slow_case("train_supernet.py", [QS, "--workdir={work}", "--config.train.bogus=1"], ["bogus"]),
    # search.py
    _slow_case("search.py", [QS, "--workdir={work}"], ["supernet.weights.h5"]),
    _slow_case("search.py", [QS, "--workdir={work}/missing_run"], ["missing_run"]),
    _slow_case("search.py", [QS, "--workdir={work}", "--config.search.budget=0"], ["budget"]),
    _slow_case("search.py", [QS, "--workdir={work}", "--config.search.population=1000"], ["population"]),
    _slow_case("search.py", [QS, "--workdir={work}", "--config.search.methods=nsga2"], ["methods"]),
    _slow_case(
        "search.py", ["--config=configs/scalenas_seg.py:w8", "--workdir={work}"], ["config.search", "config.data"]
    ),
    _slow_case("search.py", [QS, "--workdir={work}", "--budget=5"], ["budget"]),
    _slow_case("search.py", [SC, "--workdir={work}", "--config.search.weights=0,0,0"], ["weights"]),
    # export.py: names that would leave export/, then missing or malformed inputs.
    _slow_case("export.py", [QS, "--workdir={work}", "--arch=largest", "--name=.."], ["export name"]),
    _slow_case("export.py", [QS, "--workdir={work}", "--arch=largest", "--name=."], ["export name"]),
    _slow_case("export.py", [QS, "--workdir={work}", "--arch=largest", "--name={above}/escaped"], ["export name"]),
    _slow_case("export.py", [QS, "--workdir={work}", "--arch=largest", "--name=../escaped"], ["export name"]),
    _slow_case("export.py", [QS, "--workdir={work}", "--arch=largest", "--name=a/b"], ["export name"]),
    _slow_case("export.py", [QS, "--workdir={work}", "--arch=largest", "--name=.hidden"], ["export name"]),
    _slow_case("export.py", [QS, "--workdir={work}", "--arch=largest", "--config.export.name=.."], ["export name"]),
    _slow_case("export.py", [QS, "--workdir={work}/missing_run", "--arch=largest"], ["missing_run"]),
    _slow_case("export.py", [QS, "--workdir={work}"], ["pareto_front.json"]),
    _slow_case("export.py", [QS, "--workdir={work}", "--arch=largest"], ["supernet.weights.h5"]),
    _slow_case("export.py", [QS, "--workdir={work}", "--arch=nope"], ["nope"]),
    _slow_case("export.py", [QS, "--workdir={work}", "--arch=largest", "--budget=1"], ["budget"]),
    _slow_case("export.py", [QS, "--workdir={work}", "--config.export.parity_atol=0"], ["parity_atol"]),
    _slow_case(
        "export.py",
        [QS, "--workdir={work}"],
        ["pareto_front.json"],
        _truncate("pareto_front.json", '[{"arch": {"format": "scalenas_tf.arch/v1", "modu'),
    ),
    _slow_case("export.py", [QS, "--workdir={work}"], ["pareto_front.json"], _truncate("pareto_front.json", "{}")),
    _slow_case(
        "export.py",
        [QS, "--workdir={work}", "--arch=largest"],
        ["search_summary.json"],
        _truncate("search_summary.json", '{"metric": "miou", "cost_un'),
    ),
    _slow_case("export.py", [QS, "--workdir={work}", "--budget=abc"], ["budget"]),
    # benchmark.py
    _slow_case("benchmark.py", [QS, "--batch=-1"], ["batch"]),
    _slow_case("benchmark.py", [QS, "--repeats=0"], ["repeats"]),
    _slow_case("benchmark.py", [QS, "--num_archs=0"], ["num_archs"]),
    _slow_case("benchmark.py", [QS, "--what=bogus"], ["what"]),
    _slow_case("benchmark.py", [QS, "--input_size=0x0"], ["input_size"]),
    _slow_case("benchmark.py", [QS, "--precision=float64"], ["precision"]),
    _slow_case("benchmark.py", [QS, "--config.train.learning_rate=nan"], ["learning_rate"]),
    _slow_case("benchmark.py", ["--what=train_step", "--config=configs/scalenas_seg.py:w8"], ["config.train"]),
    _slow_case("benchmark.py", [], ["config"]),
]


@pytest.mark.parametrize("program,args,needles,setup", SLOW_CASES)
def test_program_refuses_bad_input(program, args, needles, setup, workdir):
    if setup is not None:
        setup(workdir)
    names = {"work": str(workdir), "above": str(workdir.parent)}
    args = [a.format(**names) for a in args]
    before = snapshot(workdir.parent)
    proc = run_program(program, args, SLOW_TIMEOUT)
    assert_refused(proc, program, *(n.format(**names) for n in needles))
    check_unchanged(before, workdir.parent)
    assert not (workdir.parent / "escaped").exists()


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory):
    """A run directory with real (untrained) quickstart supernet weights, and the search log header
    that fits them."""
    from scalenas_tf.experiment import Experiment
    from scalenas_tf.runners import search as search_runner

    work = tmp_path_factory.mktemp("run") / "work"
    work.mkdir()
    experiment = Experiment.from_config(quickstart.get_config(), require=("data", "search"))
    supernet = experiment.build_supernet()
    supernet.build((None, None, None, 3))
    weights = str(work / "supernet.weights.h5")
    supernet.save_weights(weights)
    return work, search_runner.log_header(experiment, weights)


def _log_lines(header):
    from scalenas_tf.search.state import LOG_FORMAT

    lines = [json.dumps({"format": LOG_FORMAT, "header": header})]
    lines += [json.dumps({"method": "random", "hash": f"h{i}", "metric": 0.1, "arch": {}}) for i in range(3)]
    return lines


@pytest.mark.slow
@pytest.mark.parametrize("corruption", ["garbage_line", "bool_metric", "foreign_header"])
def test_search_refuses_corrupt_log_and_keeps_it(corruption, trained_workdir):
    work, header = trained_workdir
    lines = _log_lines(header)
    if corruption == "garbage_line":
        lines[2] = '{"method": "random", "ha'
    elif corruption == "bool_metric":
        lines[2] = json.dumps({"method": "random", "hash": "hb", "metric": True, "arch": {}})
    else:
        lines[0] = json.dumps({"format": json.loads(lines[0])["format"], "header": {**header, "cost_measure": "x"}})
    log = work / "search" / "evaluations.jsonl"
    log.parent.mkdir(exist_ok=True)
    log.write_text("\n".join(lines) + "\n")
    (work.parent / "above_sentinel.txt").write_bytes(b"above\n")
    before = snapshot(work.parent)
    proc = run_program("search.py", [QS, f"--workdir={work}"], SLOW_TIMEOUT)
    message = assert_refused(proc, "search.py", str(log))
    assert ("line 3" in message) if corruption != "foreign_header" else ("cost_measure" in message)
    check_unchanged(before, work.parent)


@pytest.mark.slow
def test_export_refuses_truncated_summary_before_writing(trained_workdir):
    # A malformed search summary fails the command before anything is exported (so exit 1 never
    # comes with a fresh export on disk).
    work, _ = trained_workdir
    summary = work / "search" / "search_summary.json"
    summary.parent.mkdir(exist_ok=True)
    summary.write_text('{"metric": "miou", "front": [')
    before = snapshot(work.parent)
    proc = run_program("export.py", [QS, f"--workdir={work}", "--arch=smallest", "--name=fresh"], SLOW_TIMEOUT)
    assert_refused(proc, "export.py", str(summary))
    check_unchanged(before, work.parent)
    assert proc.seconds < SLOW_TIMEOUT
