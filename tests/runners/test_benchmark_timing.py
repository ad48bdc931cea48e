"""bin/benchmark.py's interleaved timing (the train-step ratio's two medians)."""

import functools
import importlib.util
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]


@functools.cache  # its absl flags can be defined once per process
def _benchmark_module():
    spec = importlib.util.spec_from_file_location("benchmark_script", REPO / "bin" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_interleaved_medians_alternate_the_order_and_time_each_function_alone(monkeypatch):
    benchmark = _benchmark_module()
    clock, calls = [0.0], []

    def model(index, seconds):
        durations = iter(seconds)

        def call():
            calls.append(index)
            clock[0] += next(durations)

        return call

    monkeypatch.setattr(benchmark.time, "perf_counter", lambda: clock[0])
    # Warm-up call first (slow, not timed), then 5 timed calls; one timed outlier each.
    fast = model(0, [100.0, 1.0, 1.0, 9.0, 1.0, 1.0])
    slow = model(1, [100.0, 3.0, 30.0, 3.0, 3.0, 3.0])
    medians = benchmark._interleaved_medians([fast, slow], repeats=5)

    assert medians == [1.0, 3.0]
    assert calls == [0, 1] + [0, 1] + [1, 0] + [0, 1] + [1, 0] + [0, 1]
