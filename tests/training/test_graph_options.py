"""graph_options: the grappler settings of each mode reach the functions first called inside the context."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.core.protobuf import rewriter_config_pb2
from tensorflow.python.eager import context

from scalenas_tf.experiment import GRAPH_OPTIMIZATIONS
from scalenas_tf.training import graph_options

Rewriter = rewriter_config_pb2.RewriterConfig


def _current_rewrite_options():
    serialized = context.context().function_call_options.config_proto_serialized
    return config_pb2.ConfigProto.FromString(serialized).graph_options.rewrite_options


def test_modes_are_the_configs_choices():
    assert graph_options.MODES == GRAPH_OPTIMIZATIONS


@pytest.mark.parametrize("gpu", [False, True])
def test_fast_runs_the_rewriting_passes_once(gpu):
    options = Rewriter()
    graph_options.configure(options, "fast", gpu=gpu)
    assert options.meta_optimizer_iterations == Rewriter.ONE
    assert options.memory_optimization == Rewriter.NO_MEM_OPT
    assert options.loop_optimization == Rewriter.OFF
    assert options.implementation_selector == Rewriter.OFF
    assert options.disable_tfg_optimizer
    # Passes that changed (almost) no node of the supernets' train graphs on a CPU, at seconds each.
    for name in ("layout_optimizer", "remapping", "constant_folding"):
        assert getattr(options, name) == (Rewriter.DEFAULT if gpu else Rewriter.OFF), name
    # The passes that rewrite the supernets' graphs stay at TF's default (on).
    for name in ("arithmetic_optimization", "dependency_optimization", "common_subgraph_elimination"):
        assert getattr(options, name) == Rewriter.DEFAULT, name
    assert not options.disable_meta_optimizer


def test_off_disables_grappler_and_full_changes_nothing():
    options = Rewriter()
    graph_options.configure(options, "off", gpu=False)
    assert options.disable_meta_optimizer
    options = Rewriter()
    graph_options.configure(options, "full", gpu=False)
    assert options == Rewriter()


def test_context_sets_this_threads_call_options_and_restores_them():
    before = context.context().function_call_options.config_proto_serialized
    with graph_options.graph_optimizations("fast"):
        assert _current_rewrite_options().meta_optimizer_iterations == Rewriter.ONE
        with graph_options.graph_optimizations("off"):
            assert _current_rewrite_options().disable_meta_optimizer
        assert not _current_rewrite_options().disable_meta_optimizer
    assert context.context().function_call_options.config_proto_serialized == before
    with pytest.raises(RuntimeError), graph_options.graph_optimizations("off"):
        raise RuntimeError("restored on errors too")
    assert context.context().function_call_options.config_proto_serialized == before


def test_the_config_reaches_grappler():
    # Grappler folds `(x * 3) * 7` into `x * 21`, which rounds differently from the two products for
    # some float32 inputs: the result shows whether the function was optimized.
    x = np.random.default_rng(0).uniform(1.0, 2.0, 1000).astype(np.float32)
    unoptimized, folded = (x * np.float32(3)) * np.float32(7), x * np.float32(21)
    assert (unoptimized != folded).any()

    def first_call(mode):
        fn = tf.function(lambda t: (t * 3.0) * 7.0)
        with graph_options.graph_optimizations(mode):
            return fn(tf.constant(x)).numpy()

    np.testing.assert_array_equal(first_call("off"), unoptimized)
    np.testing.assert_array_equal(first_call("fast"), folded)
    np.testing.assert_array_equal(first_call("full"), folded)


def test_unknown_mode_is_named():
    with pytest.raises(ValueError, match=r"one of \['fast', 'full', 'off'\]. Received: 'fastest'"):
        with graph_options.graph_optimizations("fastest"):
            pass
