r"""Benchmarks any family's supernet (compiled forward or train step) against extracted static models.

  python bin/benchmark.py --config=configs/scalenas_seg.py:w16 --input_size=256x512 --batch=2
  python bin/benchmark.py --what=train_step --config=configs/shapes_seg.py

--what=forward: trace time and count of one `tf.function` over many archs, then per named arch
(smallest, hrnet, largest) the best-of-N forward time of the supernet inside that function, of the
extracted static model (also in a `tf.function`), and the analytic MACs.
--what=train_step: the supernet's train function run for --sampled_steps steps with the config's
sampler (`train_function_traces` must be 1), then for --num_archs random archs the median step
time of the supernet's one compiled step running that arch (fed through a variable, no retrace)
and of the extracted static model trained the same way (same task loss, same optimizer, Keras
`train_on_batch` on both sides), their ratio, and the static model's first step (trace + graph
optimization: what a retrace-per-arch trainer would pay for every new arch).
--what=compile: what the one-time compile costs, for the train function (the trainer exactly as
bin/train_supernet.py builds it from the config: sampler, teacher, sparse updates) and for the
evaluator's metric function: `trace_s`, `first_step_s` (trace + graph optimization + first run),
`steady_step_ms` (median over --repeats calls, a new subnet each), `graph_ops` (top level),
`graph_ops_all` (including functions), `if_ops`, `case_ops`, `while_ops`, `peak_rss_mb`, and the
1-minute load average (`os.getloadavg`) at the start and end. A static teacher is timed with
untrained weights. Input size and batch come from the config.
The last line is JSON. Exit codes: 0 ok; 1 bad flags or bad input.
"""

import json
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags

from scalenas_tf import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Python config file[:variant].")
_INPUT_SIZE = flags.DEFINE_string("input_size", "256x256", "HEIGHTxWIDTH of the benchmark input.")
_BATCH = flags.DEFINE_integer("batch", 2, "Batch size.", lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed repeats per model (best is reported).", lower_bound=1)
_NUM_ARCHS = flags.DEFINE_integer("num_archs", 20, "Random archs run through the one traced function.", lower_bound=1)
_WHAT = flags.DEFINE_enum("what", "forward", ["forward", "train_step", "compile"], "What to benchmark.")
_PRECISION = flags.DEFINE_enum(
    "precision",
    None,
    ["float32", "mixed_bfloat16", "mixed_float16"],
    "train_step: dtype policy (default: config.train.precision).",
)
_SAMPLED_STEPS = flags.DEFINE_integer(
    "sampled_steps", 200, "train_step: steps with the config's sampler.", lower_bound=1
)


def _times(fn, repeats):
    """Seconds per call of `fn` over `repeats` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _best_time(fn, repeats):
    return min(_times(fn, repeats))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _WHAT.value == "train_step":
        return _train_step_benchmark()
    if _WHAT.value == "compile":
        return _compile_benchmark()
    return _forward_benchmark()


def _experiment():
    from scalenas_tf.experiment import Experiment

    return Experiment.from_config(_CONFIG.value)


def _peak_rss_mb():
    from scalenas_tf.training.compile_stats import peak_rss_mb

    return peak_rss_mb()


def _train_dataset(experiment):
    """The config's training pipeline (batched, repeating)."""
    from scalenas_tf.data import pipeline

    data, model = experiment.data, experiment.model
    dataset = pipeline.make_dataset(
        model.task,
        "train",
        data.batch_size,
        model.input_size,
        source=data.source,
        seed=experiment.seed,
        source_kwargs=data.source_kwargs,
    )
    return dataset


def _forward_benchmark():
    import numpy as np
    import tensorflow as tf

    from scalenas_tf.config import parse_input_size
    from scalenas_tf.models.extraction import extract_subnet

    try:
        experiment = _experiment()
        size = parse_input_size(_INPUT_SIZE.value)
    except ValueError as e:
        print(f"benchmark.py: error: {e}", file=sys.stderr)
        return 1
    family, space, model = experiment.family, experiment.space, experiment.model
    net = experiment.build_supernet()
    net.build((None, None, None, 3))
    x = tf.random.normal((_BATCH.value, *size, 3))
    forward = tf.function(lambda images, vector: net(images, arch=vector, training=False))

    start = time.perf_counter()
    forward(x, tf.constant(space.to_vector(space.largest()))).numpy()
    trace_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    for _ in range(_NUM_ARCHS.value):
        forward(x, tf.constant(space.to_vector(space.sample(rng)))).numpy()
    result = {
        "space": family.name,
        "trace_and_first_call_s": round(trace_s, 2),
        "traces": forward.experimental_get_tracing_count(),
    }
    print(f"one tf.function over {_NUM_ARCHS.value + 1} archs: {result['traces']} trace(s), first call {trace_s:.1f} s")

    for name in dict.fromkeys(("smallest", family.default_arch, "largest")):
        arch = space.named(name)
        vector = tf.constant(space.to_vector(arch))
        static = extract_subnet(net, arch, input_size=size)
        static_fn = tf.function(lambda images, m=static: m(images, training=False))
        t_super = _best_time(lambda: forward(x, vector).numpy(), _REPEATS.value)
        t_static = _best_time(lambda: static_fn(x).numpy(), _REPEATS.value)
        macs = family.count(space, arch, model.task, model.num_classes, size).macs
        result[name] = {
            "supernet_ms": round(1e3 * t_super, 2),
            "static_ms": round(1e3 * t_static, 2),
            "ratio": round(t_super / t_static, 3),
            "gmacs_per_image": round(macs / 1e9, 3),
        }
        print(
            f"{name:>8}: supernet {1e3 * t_super:8.2f} ms  static {1e3 * t_static:8.2f} ms  "
            f"ratio {t_super / t_static:.3f}  {macs / 1e9:.3f} GMACs/image"
        )
    result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result, sort_keys=True))
    return 0


def _train_step_benchmark():
    import keras
    import numpy as np

    from scalenas_tf.models.extraction import extract_subnet
    from scalenas_tf.training import losses
    from scalenas_tf.training.sampler import FeedSampler
    from scalenas_tf.training.trainer import SupernetTrainer

    try:
        experiment = _experiment()
        train, data = experiment.require("train"), experiment.require("data")
        experiment.build_optimizer()
    except ValueError as e:
        print(f"benchmark.py: error: {e}", file=sys.stderr)
        return 1
    space, model = experiment.space, experiment.model
    task, size = model.task, model.input_size
    precision = _PRECISION.value or train.precision
    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(experiment.seed)
    dataset = _train_dataset(experiment)
    images, targets = next(iter(dataset))
    task_loss = losses.task_loss(task)
    result = {
        "space": experiment.family.name,
        "config": {
            "batch": int(data.batch_size),
            "input_size": list(size),
            "optimizer": train.optimizer,
            "precision": precision,
        },
    }

    # 1. The config's sampler through Keras fit: one trace for every sampled subnet.
    net = experiment.build_supernet()
    trainer = SupernetTrainer(net, sampler=experiment.build_sampler(), teacher=None)
    trainer.compile(optimizer=experiment.build_optimizer())
    start = time.perf_counter()
    trainer.fit(dataset, epochs=1, steps_per_epoch=_SAMPLED_STEPS.value, verbose=2)
    result["sampled_steps"] = _SAMPLED_STEPS.value
    result["sampled_fit_s"] = round(time.perf_counter() - start, 1)
    result["train_function_traces"] = trainer.train_step_traces
    print(
        f"fit over {_SAMPLED_STEPS.value} sampled steps: {trainer.train_step_traces} trace(s), "
        f"{result['sampled_fit_s']} s"
    )

    # 2. Per arch: the one compiled supernet step vs the static model of that arch.
    feed = FeedSampler(space)
    timed = SupernetTrainer(net, sampler=feed, teacher=None)
    timed.compile(optimizer=experiment.build_optimizer())
    start = time.perf_counter()
    timed.train_on_batch(images, targets)
    result["supernet_first_step_s"] = round(time.perf_counter() - start, 1)
    rng = np.random.default_rng(experiment.seed)
    records = []
    for i in range(_NUM_ARCHS.value):
        arch = space.sample(rng)
        feed.set(arch)
        t_super = _median_time(lambda: timed.train_on_batch(images, targets), _REPEATS.value)
        static = extract_subnet(net, arch, input_size=size)
        static.compile(optimizer=experiment.build_optimizer(), loss=task_loss)
        start = time.perf_counter()
        static.train_on_batch(images, targets)
        first = time.perf_counter() - start
        t_static = _median_time(lambda: static.train_on_batch(images, targets), _REPEATS.value)
        record = {
            "arch_hash": arch.hash(),
            "supernet_ms": round(1e3 * t_super, 1),
            "static_ms": round(1e3 * t_static, 1),
            "ratio": round(t_super / t_static, 3),
            "static_first_step_s": round(first, 2),
        }
        records.append(record)
        print(
            f"arch {i}: supernet {record['supernet_ms']} ms, static {record['static_ms']} ms, "
            f"ratio {record['ratio']}, static first step {record['static_first_step_s']} s"
        )
    ratios = [r["ratio"] for r in records]
    result["archs"] = records
    result["ratio_median"] = round(float(np.median(ratios)), 3)
    result["ratio_max"] = round(float(np.max(ratios)), 3)
    result["train_function_traces_after_feeding"] = timed.train_step_traces
    result["retrace_per_arch_step_s_median"] = round(float(np.median([r["static_first_step_s"] for r in records])), 2)
    result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result, sort_keys=True))
    return 0


def _compile_benchmark():
    import os

    import keras
    import numpy as np
    import tensorflow as tf

    from scalenas_tf.evaluation.evaluator import SubnetEvaluator
    from scalenas_tf.models.extraction import extract_subnet
    from scalenas_tf.training import compile_stats

    try:
        experiment = _experiment()
        train, data = experiment.require("train"), experiment.require("data")
        experiment.build_optimizer()
        experiment.build_sampler()
    except ValueError as e:
        print(f"benchmark.py: error: {e}", file=sys.stderr)
        return 1
    space, model = experiment.space, experiment.model
    keras.config.set_dtype_policy(_PRECISION.value or train.precision)
    if not train.graph_optimizations:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    keras.utils.set_random_seed(experiment.seed)
    batch = next(iter(_train_dataset(experiment)))
    result = {
        "space": experiment.family.name,
        "config": {
            "batch": int(data.batch_size),
            "input_size": list(model.input_size),
            "sampler": train.sampler,
            "subnets_per_step": None,
            "teacher": train.teacher,
            "sparse_updates": train.sparse_updates,
            "graph_optimizations": train.graph_optimizations,
            "tf": tf.__version__,
        },
        "load_1m_start": round(os.getloadavg()[0], 2),
    }

    net = experiment.build_supernet()
    net.build((None, None, None, 3))
    teacher = None if train.teacher == "none" else train.teacher
    if train.teacher == "static":
        teacher = extract_subnet(net, space.largest(), model.input_size, name="teacher")
    trainer = experiment.build_trainer(net, teacher)
    trainer.compile(optimizer=experiment.build_optimizer())
    result["config"]["subnets_per_step"] = trainer.sampler.num_subnets
    print(f"train function: tracing ({trainer.sampler.num_subnets} subnet(s) per step, teacher {train.teacher})")
    result["train"] = compile_stats.measure(tf.function(trainer.train_step), lambda i: (batch,), _REPEATS.value)
    print(f"train function: {result['train']}")

    rng = np.random.default_rng(experiment.seed)
    vectors = [tf.constant(space.to_vector(space.sample(rng)), tf.int32) for _ in range(_REPEATS.value + 1)]
    evaluator = SubnetEvaluator(net, [batch], [batch], recalibrate=False)
    print("metric function: tracing")
    result["metric"] = compile_stats.measure(
        evaluator.statistic_function, lambda i: (batch[0], batch[1], vectors[i]), _REPEATS.value
    )
    print(f"metric function: {result['metric']}")
    result["load_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, sort_keys=True))
    return 0


def _median_time(fn, repeats):
    times = sorted(_times(fn, repeats))
    return times[len(times) // 2]


if __name__ == "__main__":
    cli.run(main, "benchmark.py", required=["config"])
