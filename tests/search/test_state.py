import json
import os
import signal
import subprocess
import sys
import time

import pytest

from scalenas_tf import ScaleNASSpace
from scalenas_tf.search.state import EvaluationLog
from scalenas_tf.search.state import SearchStateError

HEADER = {"space": "test", "seed": 0}


def test_append_reload_and_lookup(tmp_path):
    path = tmp_path / "log.jsonl"
    log = EvaluationLog(path, HEADER)
    log.append({"method": "random", "hash": "a", "metric": 0.5})
    log.append({"method": "evolution", "hash": "a", "metric": 0.5})
    again = EvaluationLog(path, HEADER)
    assert len(again.records) == 2
    assert again.get("random", "a")["metric"] == 0.5 and again.get("random", "b") is None
    assert [r["method"] for r in again.of("evolution")] == ["evolution"]


def test_a_line_cut_by_a_crash_is_dropped_and_the_file_repaired(tmp_path):
    path = tmp_path / "log.jsonl"
    log = EvaluationLog(path, HEADER)
    log.append({"method": "random", "hash": "a", "metric": 0.5})
    with open(path, "a") as f:
        f.write('{"method": "random", "hash": "b", "met')  # killed mid-write
    again = EvaluationLog(path, HEADER)
    assert [r["hash"] for r in again.records] == ["a"]
    again.append({"method": "random", "hash": "b", "metric": 0.25})
    lines = open(path).read().splitlines()
    assert [json.loads(line).get("hash") for line in lines[1:]] == ["a", "b"]


def test_a_different_header_or_a_corrupt_line_is_refused(tmp_path):
    path = tmp_path / "log.jsonl"
    EvaluationLog(path, HEADER).append({"method": "random", "hash": "a", "metric": 0.5})
    with pytest.raises(SearchStateError, match=r"different settings \(fields \['seed'\]\)"):
        EvaluationLog(path, {"space": "test", "seed": 1})
    with open(path, "a") as f:
        f.write("not json\n")
    with pytest.raises(SearchStateError, match="line 3"):
        EvaluationLog(path, HEADER)


def test_cached_evaluate_replays_and_reuses_across_methods(tmp_path):
    space = ScaleNASSpace(width=8, num_modules=(1, 1, 1))
    calls = []

    def evaluate(arch):
        calls.append(arch.hash())
        return {"metric": 0.1 * sum(arch.modules[0].depths)}

    log = EvaluationLog(tmp_path / "log.jsonl", HEADER)
    arch = space.largest()
    first = log.cached_evaluate("evolution", evaluate)
    assert first(arch) == pytest.approx(1.0) and first(arch) == pytest.approx(1.0)
    assert calls == [arch.hash()]
    second = log.cached_evaluate("random", evaluate)
    assert second(arch) == pytest.approx(1.0) and calls == [arch.hash()]
    assert log.get("random", arch.hash())["reused"] is True
    assert len(log.records) == 2


# The search a subprocess runs: pure Python, a slow synthetic metric, the log as its state.
_SEARCH = r"""
import sys, time
from scalenas_tf import ScaleNASSpace
from scalenas_tf.families.scalenas import evolution
from scalenas_tf.search.state import EvaluationLog

path, delay = sys.argv[1], float(sys.argv[2])
space = ScaleNASSpace(width=8, num_modules=(1, 2, 1))
settings = evolution.EvolutionSettings(population=20, top_k=8, children=8, budget=60, seed=7)

def metric(arch):
    time.sleep(delay)
    bits = sum(b for m in arch.modules for t in m.fusion for s in t for b in s)
    return {"metric": (bits % 17) / 17 + 0.01 * sum(sum(m.depths) for m in arch.modules)}

def cost(arch):
    return float(sum(sum(m.depths) for m in arch.modules))

log = EvaluationLog(path, {"test": "kill"})
for method, search in (("evolution", evolution.topology_evolution), ("random", evolution.random_search)):
    search(space, log.cached_evaluate(method, metric), cost, settings)
print("done", len(log.records))
"""


def _run(path, delay):
    return subprocess.Popen([sys.executable, "-c", _SEARCH, str(path), str(delay)], stdout=subprocess.PIPE, text=True)


def _records(path):
    return [(r["method"], r["hash"], r["metric"]) for r in EvaluationLog(path, {"test": "kill"}).records]


def test_a_search_killed_mid_run_resumes_to_the_same_evaluations(tmp_path):
    whole = tmp_path / "whole.jsonl"
    assert _run(whole, 0.0).wait(timeout=300) == 0
    expected = _records(whole)
    assert len(expected) == 120 and len(set(expected)) == 120

    killed = tmp_path / "killed.jsonl"
    for stop_after in (15, 70):  # once in the initial population, once in the generations / random
        proc = _run(killed, 0.02)
        deadline = time.time() + 300
        while time.time() < deadline:
            if os.path.exists(killed) and sum(1 for _ in open(killed)) > stop_after:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        partial = _records(killed)
        assert 0 < len(partial) < 120
        assert partial == expected[: len(partial)]  # nothing lost, nothing corrupted
    assert _run(killed, 0.0).wait(timeout=300) == 0
    assert _records(killed) == expected  # same evaluations, in the same order, no duplicates
