"""How much graph optimization (grappler) the supernet's compiled functions get on their first call, and which
of their conds TF lowers (`functional_control_flow`).

TensorFlow optimizes a function's graph the first time it is called. By default every grappler pass runs
twice, plus passes that do nothing for these graphs. A supernet's train function is a large graph (tens of
thousands of nodes once its cond branches are inlined), so this optimization is most of the first call.
Logged per pass (`TF_CPP_VMODULE=meta_optimizer=1`, `configs/shapes_seg.py`'s train function, 2 CPU cores,
TF 2.21): the first round took 17.9 s, the second 7.8 s to remove 501 of its 35k nodes (1.4%). The memory
optimizer (2.4 s), the TFG shape-inference pipeline (3.2 s), the loop optimizer and the implementation
selector changed no node. So did the layout optimizer (2.2 s), on a CPU.

Modes (`config.train.graph_optimizations`):
  `"fast"` (default): the passes that rewrite these graphs, once each: pruning, common subexpression
      elimination, arithmetic and dependency optimization (and, with a GPU visible, constant folding,
      remapping and the layout optimizer). The memory optimizer, the loop optimizer, the implementation
      selector and the TFG pipeline are off. On a CPU, remapping (the fused kernels) and constant folding are
      off too: logged on the full ScaleNAS space's train function they took 4.2 and 3.5 s of the 33.4 s first
      call and removed 4 and 14 of its 100k nodes (pruning, 2.4 s, removed 33k; dependency optimization,
      3.5 s, 25k). Without them the first call took 22.8 instead of 33.4 s there, 27.0 instead of 37.1 s for
      `configs/scarlet.py:cpu` (32.0 s with only remapping off) and 7.0 instead of 9.6 s for
      `configs/shapes_seg.py:w32`, at the same step (each traced once, calls interleaved over 8 subnets: 3,065
      vs 3,097 ms, 827 vs 814 ms, 4,198 vs 4,253 ms; with no grappler at all the full space stepped in
      3,302 ms).
  `"full"`: TensorFlow's default (the settings are left as they are).
  `"off"`: no grappler; the first call is quickest and the step slower where the fusions matter.

TensorFlow has no public setting for the number of rounds or for the memory optimizer
(`tf.config.optimizer.set_experimental_options` has neither). So `graph_optimizations(mode)` sets the
`RewriterConfig` that TF attaches to every function call on this thread (the eager context's function-call
options), and restores the previous options on exit. A function is optimized once for each config it is
called with, so call it inside the same context each time, as the runners and `bin/benchmark.py` do.
"""

from __future__ import annotations

import contextlib

import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.core.protobuf import rewriter_config_pb2
from tensorflow.python.eager import context
from tensorflow.python.ops import control_flow_util_v2

MODES = ("fast", "full", "off")

_Rewriter = rewriter_config_pb2.RewriterConfig


def configure(rewrite_options: rewriter_config_pb2.RewriterConfig, mode: str, gpu: bool) -> None:
    """Sets `rewrite_options` (a `RewriterConfig`, in place) for `mode`; `gpu`: whether a GPU is visible."""
    _check(mode)
    if mode == "off":
        rewrite_options.disable_meta_optimizer = True
    elif mode == "fast":
        rewrite_options.meta_optimizer_iterations = _Rewriter.ONE
        rewrite_options.memory_optimization = _Rewriter.NO_MEM_OPT
        rewrite_options.loop_optimization = _Rewriter.OFF
        rewrite_options.implementation_selector = _Rewriter.OFF
        rewrite_options.disable_tfg_optimizer = True
        if not gpu:
            rewrite_options.layout_optimizer = _Rewriter.OFF
            rewrite_options.remapping = _Rewriter.OFF
            rewrite_options.constant_folding = _Rewriter.OFF


@contextlib.contextmanager
def graph_optimizations(mode: str):
    """Functions first called inside this context are optimized as `mode` says (see the module docstring)."""
    _check(mode)
    if mode == "full":
        yield
        return
    ctx = context.context()
    previous = ctx.function_call_options
    config = config_pb2.ConfigProto.FromString(previous.config_proto_serialized)
    configure(config.graph_options.rewrite_options, mode, gpu=bool(tf.config.list_logical_devices("GPU")))
    ctx.function_call_options = context.FunctionCallOptions(executor_type=previous.executor_type, config_proto=config)
    try:
        yield
    finally:
        ctx.function_call_options = previous


def _check(mode):
    if mode not in MODES:
        raise ValueError(f"graph optimization mode must be one of {list(MODES)}. Received: {mode!r}")


@contextlib.contextmanager
def functional_control_flow(functional=True):
    """`tf.cond` and `tf.while_loop` ops created inside this context run as functional `If` / `While` ops.

    By default TF marks each `If` and `While` op for lowering: on the function's first call a graph pass turns it
    into `Switch`/`Merge` nodes with its branches inlined, so the graph grappler and the executor process holds
    every branch, and each step the executor walks the untaken branches' nodes as dead tensors. Left functional,
    an `If` runs only the branch it takes, as a function instantiated on first use, at the cost of a function call
    per `If` run. TF has no public setting for this (it skips lowering only under XLA and the single-threaded
    executor): this sets the module flag `control_flow_util_v2` reads as it creates each op, for the ops created
    inside the context, and restores it on exit. `compile_stats.graph_stats` counts the ops marked for lowering.

    The sparse update's conds are built inside it (`sparse_update.apply_gradients`): element-wise optimizer
    arithmetic, for which the first call of the train function got shorter at an unchanged step (2 CPU cores,
    lowered vs functional traced in one process, calls interleaved over 8 subnets: `configs/scarlet.py:cpu`
    first call 70.1 -> 49.0 s, step 1,066 -> 1,105 ms, and 80.6 -> 55.3 s, 1,181 -> 1,142 ms in a second run;
    `configs/shapes_seg.py:w32` without a teacher 16.5 -> 14.9 s, step 2,320 -> 2,307 ms. With the in-place
    teacher every weight is updated each step: no sparse-update conds, nothing changes). The supernet's gates
    are not: TF instantiates a functional `If`'s branch without its graph-rewrite passes, so the oneDNN rewrite
    never reaches the convolutions in it and they run on Eigen's kernels, and the `:w32` step got 24 % slower
    (README, Benchmarks).

    `functional=False` restores TF's lowering inside the context: for a cond whose branch places ops on several
    devices (the sparse update of mirrored variables), which a functional `If` cannot do.
    """
    previous = control_flow_util_v2._DISABLE_LOWER_USING_SWITCH_MERGE
    control_flow_util_v2._DISABLE_LOWER_USING_SWITCH_MERGE = bool(functional)
    try:
        yield
    finally:
        control_flow_util_v2._DISABLE_LOWER_USING_SWITCH_MERGE = previous
