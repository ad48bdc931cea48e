"""How much graph optimization (grappler) the supernet's compiled functions get on their first call.

TensorFlow optimizes a function's graph the first time it is called. By default every grappler pass runs
twice, plus passes that do nothing for these graphs. A supernet's train function is a large graph (tens of
thousands of nodes once its cond branches are inlined), so this optimization is most of the first call.
Logged per pass (`TF_CPP_VMODULE=meta_optimizer=1`, `configs/shapes_seg.py`'s train function, 2 CPU cores,
TF 2.21): the first round took 17.9 s, the second 7.8 s to remove 501 of its 35k nodes (1.4%). The memory
optimizer (2.4 s), the TFG shape-inference pipeline (3.2 s), the loop optimizer and the implementation
selector changed no node. So did the layout optimizer (2.2 s), on a CPU.

Modes (`config.train.graph_optimizations`):
  `"fast"` (default): the passes that rewrite these graphs, once each: pruning, common subexpression
      elimination, constant folding, arithmetic, remapping (the fused kernels) and dependency optimization.
      The memory optimizer, the loop optimizer, the implementation selector and the TFG pipeline are off.
      The layout optimizer is off only when no GPU is visible.
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
