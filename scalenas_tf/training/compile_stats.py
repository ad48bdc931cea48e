"""What compiling a supernet function costs: trace time, first step, steady step and the graph's size.

One trace serves every subnet, so the one-time cost of that trace (Python op creation, then grappler's graph
optimization on the first call) is what a user waits for before the first step. `measure` times the three phases
of a `tf.function` separately; `graph_stats` counts the ops of its traced graph, top level and inside the function
library (cond branches, loop bodies and their gradients), and the control-flow ops among them.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

IF_OPS = ("If", "StatelessIf")
CASE_OPS = ("Case", "StatelessCase")
WHILE_OPS = ("While", "StatelessWhile")
LOWERING_ATTR = "_lower_using_switch_merge"  # TF's mark on an `If`/`Case`/`While` op it lowers when first called


def graph_stats(concrete) -> dict[str, int]:
    """Op counts of a concrete function's graph.

    Returns:
        `graph_ops` (top-level nodes), `graph_ops_all` (plus every node of every function in the graph's
        library), `if_ops`, `case_ops`, `while_ops` counted over both, and `lowered_ops`: how many of those
        control-flow ops TF will lower to `Switch`/`Merge` on the first call
        (`graph_options.functional_control_flow`).
    """
    graph_def = concrete.graph.as_graph_def()
    top = list(graph_def.node)
    every = top + [node for function in graph_def.library.function for node in function.node_def]
    control_flow = [node for node in every if node.op in IF_OPS + CASE_OPS + WHILE_OPS]
    return {
        "graph_ops": len(top),
        "graph_ops_all": len(every),
        "if_ops": sum(node.op in IF_OPS for node in control_flow),
        "case_ops": sum(node.op in CASE_OPS for node in control_flow),
        "while_ops": sum(node.op in WHILE_OPS for node in control_flow),
        "lowered_ops": sum(node.attr[LOWERING_ATTR].b for node in control_flow if LOWERING_ATTR in node.attr),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _block(outputs) -> None:
    """Waits for `outputs` (any nest of tensors) to be computed."""
    for t in tf.nest.flatten(outputs):
        if tf.is_tensor(t):
            t.numpy()


def measure(
    fn: tf.types.experimental.PolymorphicFunction,
    args_per_call: Callable[[int], Sequence[Any]],
    steady_calls: int = 10,
) -> dict[str, Any]:
    """Times the trace, the first call and later calls of `fn`.

    Args:
        fn: a `tf.function` not yet traced for these argument shapes.
        args_per_call: `i -> args` of call `i` (call 0 traces); e.g. a new random arch each call.
        steady_calls: timed calls after the first (the median is reported).

    Returns:
        `trace_s` (building the graph: Python), `first_call_s` (graph optimization and the first run),
        `first_step_s` (their sum: what a user waits for), `steady_step_ms` (median of the later calls),
        `slowest_step_ms` (the slowest later call: a function TF instantiates only when it first runs, such as
        a functional cond's branch the first call did not take, is optimized then), `traces` (must stay 1),
        `peak_rss_mb` and the `graph_stats` of the traced graph.
    """
    if steady_calls < 1:
        raise ValueError(f"`steady_calls` must be >= 1. Received: steady_calls={steady_calls}")
    args = args_per_call(0)
    start = time.perf_counter()
    concrete = fn.get_concrete_function(*args)
    trace_s = time.perf_counter() - start
    start = time.perf_counter()
    _block(fn(*args))
    first_call_s = time.perf_counter() - start
    times = []
    for i in range(1, steady_calls + 1):
        args = args_per_call(i)
        start = time.perf_counter()
        _block(fn(*args))
        times.append(time.perf_counter() - start)
    result = {
        "trace_s": round(trace_s, 2),
        "first_call_s": round(first_call_s, 2),
        "first_step_s": round(trace_s + first_call_s, 2),
        "steady_step_ms": round(1e3 * float(np.median(times)), 1),
        "slowest_step_ms": round(1e3 * max(times), 1),
        "traces": int(fn.experimental_get_tracing_count()),
        "peak_rss_mb": peak_rss_mb(),
    }
    result.update(graph_stats(concrete))
    return result
