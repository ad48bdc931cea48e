"""Building the train step's gradient graph with less Python and fewer ops: TF's reachability walk with its captures
indexed, and cond gradients that take their forward intermediates directly.

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

`direct_cond_intermediates()` changes how each cond's gradient reaches the forward values it needs (a conv's
input, a batch norm's saved statistics). By default TF wraps every such intermediate in an optional: the forward
`If` gets one more output per intermediate, `OptionalFromValue` in the branch that computes it and `OptionalNone`
in the other, and the gradient `If` unwraps it with `OptionalGetValue`, three ops per intermediate. Inside the
context TF builds the form it uses under XLA: the branch outputs the intermediate itself and the other branch a
`FakeParam` (one op, a placeholder value that is never read: the gradient `If` runs the branch the forward `If`
ran, and only that branch's gradient reads the intermediates). The branches compute the same ops on the same
values, so the step's results are the same bits (tested, with the graph optimizations training uses). The full
ScaleNAS space's train graph went from 95,734 to 86,056 ops including functions and its peak RSS while compiling
from 3.12 to 2.91 GB, `configs/scarlet.py:cpu`'s from 101,397 to 85,183 ops and 3.82 to 3.47 GB.

A `Case` keeps TF's optionals. They are all variants, so its branches share output slots: a 3-way `Case`
outputs as many optionals as its largest branch has intermediates, where the direct form outputs every
branch's intermediates, each with a `FakeParam` in the two other branches. ScaleNet's switches compiled with
0.42 GB more memory that way (4.72 -> 5.14 GB). TF decides the form by one process-wide setting, read when a
gradient graph captures a forward value and again when the gradient rewrites the forward op; a `Case` inside
an `If` captures through the `If`'s gradient graph. So inside the context each cond gradient runs with the
setting for its own op type, and each cond gradient graph captures with the setting for the cond it
differentiates: ScaleNet's train graph has 159,582 ops (163,264 in either single form) and compiled in
4.65 GB.

TF allocates a `FakeParam`'s buffer once per kernel, for as long as the function lives, with the traced shape
and 0 for each unknown dimension. Traced with its batch of 16, `configs/shapes_seg.py`'s step would hold
22.7 MB that way, a copy of every gated activation (on a GPU, device memory). So inside the context the
`FakeParam`s are built with a leading dimension of 0, as TF builds them when the batch size is unknown
(tracing the step with an unknown batch instead empties them too, but added 3.5k top-level ops to the
full space's graph): every buffer is empty, and the other ops keep their static shapes.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import threading

from tensorflow.python.eager import backprop_util
from tensorflow.python.eager import context
from tensorflow.python.framework import ops
from tensorflow.python.framework import registry
from tensorflow.python.ops import cond_v2
from tensorflow.python.ops import gen_functional_ops
from tensorflow.python.ops import gradients_util

_LOCK = threading.Lock()
_FORM_LOCK = threading.RLock()  # held while a cond gradient or its capture sets TF's optionals setting
_OPEN = collections.Counter()  # contexts open per patch, over all threads
_SAVED = {}  # patch name -> what its `apply` returned, for `restore`, while one of its contexts is open
_INDEXES = {}  # id(graph) -> (graph, its capture list, index) while a walk is open, emptied when the last exits
_IF_TYPES = ("If", "StatelessIf")
_CASE_TYPES = ("Case", "StatelessCase")
_GRAD_GRAPH = getattr(cond_v2, "_CondGradFuncGraph", None)


@contextlib.contextmanager
def _patched(name, apply, restore):
    """Runs `apply()` when the first context named `name` opens in the process and `restore(what it returned)`
    when the last exits, on errors too: TF's functions and settings are process-wide."""
    with _LOCK:
        if _OPEN[name] == 0:
            _SAVED[name] = apply()
        _OPEN[name] += 1
    try:
        yield
    finally:
        with _LOCK:
            _OPEN[name] -= 1
            if _OPEN[name] == 0:
                restore(_SAVED.pop(name))


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
    if not _SUPPORTED:
        yield
        return
    with _patched("walk", _use_indexed_walk, _restore_walk):
        yield


def _use_indexed_walk():
    original = gradients_util._MarkReachedOps
    gradients_util._MarkReachedOps = mark_reached_ops
    return original


def _restore_walk(original):
    gradients_util._MarkReachedOps = original
    _INDEXES.clear()


_DIRECT_SUPPORTED = all(
    hasattr(context, name)
    for name in ("optionals_in_gradients_enabled", "enable_optionals_in_gradients", "disable_optionals_in_gradients")
) and (
    hasattr(cond_v2, "_create_fakeparams")
    and tuple(inspect.signature(cond_v2._create_fakeparams).parameters) == ("func_graph", "template_tensors")
    and hasattr(gen_functional_ops, "fake_param")
    and hasattr(registry, "_TYPE_TAG")
    and isinstance(getattr(getattr(ops, "_gradient_registry", None), "_registry", None), dict)
    and all(registry._TYPE_TAG in ops._gradient_registry._registry.get(t, {}) for t in _IF_TYPES + _CASE_TYPES)
    and _GRAD_GRAPH is not None
    and tuple(inspect.signature(_GRAD_GRAPH._capture_helper).parameters) == ("self", "tensor", "name")
)


def empty_fakeparams(func_graph, template_tensors):
    """`cond_v2._create_fakeparams` with a leading dimension of 0: `FakeParam`s in `func_graph` standing for
    `template_tensors` (never read), whose buffers are empty."""
    with func_graph.as_default():
        return [gen_functional_ops.fake_param(dtype=t.dtype, shape=_empty_shape(t.shape)) for t in template_tensors]


def _empty_shape(shape):
    """`shape` (a `tf.TensorShape`) with its leading dimension 0 and its unknown dimensions 0; a scalar or an
    unknown rank as it is (a buffer of one element, or none)."""
    if shape.rank is None or shape.rank == 0:
        return shape
    return [0] + [0 if d is None else d for d in shape.as_list()[1:]]


@contextlib.contextmanager
def direct_cond_intermediates():
    """Cond gradients built inside this context take their forward intermediates as plain outputs of the forward
    `If`, not wrapped in optionals, with empty `FakeParam`s in the other branch (module docstring). `Case`
    gradients keep TF's optionals.

    TF's setting and functions are process-wide: they are replaced when the first context opens in any thread and
    put back as they were when the last exits. Cond gradients that other threads build meanwhile take the same
    forms, computing the same values, one thread at a time. Where this TF lacks the setting or the functions it
    replaces, the context changes nothing.
    """
    if not _DIRECT_SUPPORTED:
        yield
        return
    with _patched("direct", _use_direct_intermediates, _restore_direct_intermediates):
        yield


def _use_direct_intermediates():
    saved = (context.optionals_in_gradients_enabled(), cond_v2._create_fakeparams, {}, _GRAD_GRAPH._capture_helper)
    context.disable_optionals_in_gradients()
    cond_v2._create_fakeparams = empty_fakeparams
    for op_type in _IF_TYPES + _CASE_TYPES:
        entry = ops._gradient_registry._registry[op_type]
        saved[2][op_type] = entry[registry._TYPE_TAG]
        entry[registry._TYPE_TAG] = _in_form(entry[registry._TYPE_TAG], optionals=op_type in _CASE_TYPES)
    _GRAD_GRAPH._capture_helper = _capture_in_form(_GRAD_GRAPH._capture_helper)
    return saved


def _restore_direct_intermediates(saved):
    optionals, fakeparams, gradients, capture_helper = saved
    _GRAD_GRAPH._capture_helper = capture_helper
    for op_type, gradient in gradients.items():
        ops._gradient_registry._registry[op_type][registry._TYPE_TAG] = gradient
    cond_v2._create_fakeparams = fakeparams
    if optionals:
        context.enable_optionals_in_gradients()


@contextlib.contextmanager
def _optionals(enabled):
    """TF's optionals setting `enabled` inside, then as it was. The setting is process-wide, so one thread at a
    time runs inside (reentrant: gradients nest)."""
    with _FORM_LOCK:
        before = context.optionals_in_gradients_enabled()
        if enabled != before:
            (context.enable_optionals_in_gradients if enabled else context.disable_optionals_in_gradients)()
        try:
            yield
        finally:
            if enabled != before:
                (context.enable_optionals_in_gradients if before else context.disable_optionals_in_gradients)()


def _in_form(gradient, optionals):
    """A registered cond gradient function that builds its form (`optionals` or direct intermediates) whatever
    form the gradient it is nested in builds."""

    def wrapped(op, *grads):
        with _optionals(optionals):
            return gradient(op, *grads)

    return wrapped


def _capture_in_form(capture_helper):
    """`_CondGradFuncGraph._capture_helper` that captures a forward intermediate in the form of the cond whose
    gradient the graph computes: TF decides by the setting when it captures, and a `Case`'s gradient captures
    through the gradient graph of each cond around it."""

    def capture(graph, tensor, name):
        forward = getattr(graph._forward_graph, "_forward_cond", None)
        optionals = context.optionals_in_gradients_enabled() if forward is None else forward.type in _CASE_TYPES
        with _optionals(optionals):
            return capture_helper(graph, tensor, name)

    return capture
