"""Building the train step's gradient graph with less Python: TF's reachability walk with its captures indexed.

Every gradient TF builds in a graph (each cond's gradient function, `tf.GradientTape.gradient`) starts with
`gradients_util._MarkReachedOps`, a breadth-first walk over the ops reachable from the gradient's inputs. For each
output of each reached op it collects the consumers (`_Consumers`), including those inside every function graph
that captures the output, found by scanning the whole capture list of each enclosing function graph: the cond
branch and, around it, the train step's graph, which captures every variable the step reads. A supernet's step
builds hundreds of cond gradients, each walking its branch, so the scans add up: tracing `configs/scarlet.py:cpu`'s
train step (2,535 variables, 482 walks) spent 4.9 s of its 90 s in the walk, `configs/shapes_seg.py`'s 0.36 s.

`indexed_gradient_walk()` replaces the walk, while the train step traces, with one that looks captures up in an
index per enclosing graph (a dict from captured tensor to its placeholders, in TF's order), rebuilt only when that
graph's captures change: 0.24 s and 0.08 s for the two traces above (timed around the walk, one trace each, in
one process). The graph is not changed during the walk, so it reaches the same ops (tested against TF's). It is
written by hand because no TF API builds gradients without this walk; where the private functions it relies on
are missing or differ (another TF version), the context leaves TF's walk in place.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import threading

from tensorflow.python.eager import backprop_util
from tensorflow.python.ops import gradients_util

_LOCK = threading.Lock()
_ACTIVE = 0  # contexts open, over all threads
_ORIGINAL = None  # TF's `_MarkReachedOps` while one is open
_INDEXES = {}  # id(graph) -> (graph, its capture list, index): while a context is open, emptied when the last exits


def _supported():
    """Whether this TF has the private functions the walk replaces and uses, with the signature it replaces."""
    if not all(hasattr(gradients_util, name) for name in ("_MarkReachedOps", "_Captures")):
        return False
    if not hasattr(backprop_util, "IsTrainable"):
        return False
    parameters = tuple(inspect.signature(gradients_util._MarkReachedOps).parameters)
    return parameters == ("from_ops", "reached_ops", "func_graphs")


_SUPPORTED = _supported()


def mark_reached_ops(from_ops, reached_ops, func_graphs):
    """`gradients_util._MarkReachedOps`, with the captures of `func_graphs` indexed instead of scanned per tensor:
    adds to the set `reached_ops` every op reachable from `from_ops` through trainable tensors, crossing into the
    function graphs of `func_graphs` that capture them."""
    indexes = [_capture_index(graph) for graph in func_graphs]

    def consumers(tensor):
        found = tensor.consumers()
        for index in indexes:
            for placeholder in index.get(id(tensor), ()):
                found.extend(consumers(placeholder))
        return found

    queue = collections.deque(from_ops)
    while queue:
        op = queue.popleft()
        if op not in reached_ops:
            reached_ops.add(op)
            for output in op.outputs:
                if backprop_util.IsTrainable(output):
                    queue.extend(consumers(output))


def _capture_index(graph):
    """`{id(captured tensor): [its placeholders in capture order]}` for `graph`, reused while its captures are
    unchanged: TF keeps one capture list per graph and builds a new one when a capture is added or removed."""
    captures = gradients_util._Captures(graph)
    cached = _INDEXES.get(id(graph))
    if cached is not None and cached[0] is graph and cached[1] is captures:
        return cached[2]
    index = collections.defaultdict(list)
    for external, internal in captures:
        index[id(external)].append(internal)
    index = dict(index)
    _INDEXES[id(graph)] = (graph, captures, index)
    return index


@contextlib.contextmanager
def indexed_gradient_walk():
    """Gradients built inside this context walk the graph with `mark_reached_ops` (module docstring).

    Reentrant and thread-safe: TF's function is put back when the last context open in the process exits.
    """
    global _ACTIVE, _ORIGINAL
    if not _SUPPORTED:
        yield
        return
    with _LOCK:
        if _ACTIVE == 0:
            _ORIGINAL = gradients_util._MarkReachedOps
            gradients_util._MarkReachedOps = mark_reached_ops
        _ACTIVE += 1
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE -= 1
            if _ACTIVE == 0:
                gradients_util._MarkReachedOps = _ORIGINAL
                _INDEXES.clear()
