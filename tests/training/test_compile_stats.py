"""compile_stats: op counts of traced graphs and the timing of trace, first call and later calls."""

import pytest
import tensorflow as tf

from scalenas_tf.training import compile_stats
from scalenas_tf.training import graph_options


def _control_flow_stats(functional):
    @tf.function
    def fn(x, n):
        y = tf.cond(x[0] > 0, lambda: x * 2.0, lambda: x - 1.0)
        _, z = tf.while_loop(lambda i, z: i < n, lambda i, z: (i + 1, z + y), (tf.constant(0), y))
        # A cond inside a branch: its op lives in the function library, not at top level.
        return tf.switch_case(n % 2, [lambda: z, lambda: tf.cond(z[0] > 1.0, lambda: z + 1.0, lambda: z)])

    specs = (tf.TensorSpec((3,)), tf.TensorSpec((), tf.int32))
    if functional:
        with graph_options.functional_control_flow():
            return compile_stats.graph_stats(fn.get_concrete_function(*specs))
    return compile_stats.graph_stats(fn.get_concrete_function(*specs))


def test_graph_stats_counts_top_level_and_function_ops():
    stats = _control_flow_stats(functional=False)
    assert stats["if_ops"] == 2
    assert stats["while_ops"] == 1
    assert stats["case_ops"] == 1
    assert stats["graph_ops_all"] > stats["graph_ops"] > 0
    assert stats["lowered_ops"] == 4  # TF's default: every control-flow op is lowered on the first call


def test_functional_control_flow_leaves_every_op_unlowered_and_restores_the_default():
    stats = _control_flow_stats(functional=True)
    assert stats["if_ops"] == 2 and stats["while_ops"] == 1 and stats["case_ops"] == 1
    assert stats["lowered_ops"] == 0
    with pytest.raises(RuntimeError), graph_options.functional_control_flow():
        raise RuntimeError("restored on errors too")
    assert _control_flow_stats(functional=False)["lowered_ops"] == 4


def test_measure_times_each_phase_and_counts_traces():
    calls = []

    @tf.function
    def fn(x):
        calls.append(1)  # Python runs only while tracing
        return tf.reduce_sum(x * x)

    result = compile_stats.measure(fn, lambda i: (tf.fill((4,), float(i)),), steady_calls=3)
    assert result["traces"] == 1 and len(calls) == 1
    assert result["first_step_s"] == pytest.approx(result["trace_s"] + result["first_call_s"], abs=0.02)
    assert 0 <= result["steady_step_ms"] <= result["slowest_step_ms"] and result["peak_rss_mb"] > 0
    assert result["graph_ops"] > 0 and result["if_ops"] == 0


def test_measure_refuses_no_steady_calls():
    with pytest.raises(ValueError, match="steady_calls=0"):
        compile_stats.measure(tf.function(lambda: tf.constant(1)), lambda i: (), steady_calls=0)
