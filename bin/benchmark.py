r"""Benchmarks any family's supernet (compiled forward or train step) against extracted static models.

  python bin/benchmark.py --config=configs/scalenas_seg.py:w16 --input_size=256x512 --batch=2
  python bin/benchmark.py --what=train_step --config=configs/shapes_seg.py
  python bin/benchmark.py --what=latency --export_dir=saved_models/quickstart/export
  python bin/benchmark.py --what=latency --config=configs/quickstart.py --fit_archs=100 \
      --validate_archs=50 --latency_model=/tmp/latency_models/scalenas_quickstart.json

--what=forward: trace time and count of one `tf.function` over many archs, then per named arch
(smallest, hrnet, largest) the best-of-N forward time of the supernet inside that function, of the
extracted static model (also in a `tf.function`), and the analytic MACs.
--what=train_step: the supernet's train function run for --sampled_steps steps with the config's
sampler (`train_function_traces` must be 1), then for --num_archs random archs the median step
time of the supernet's one compiled step running that arch (fed through a variable, no retrace)
and of the extracted static model trained the same way (same task loss, same optimizer, Keras
`train_on_batch` on both sides), timed interleaved (--repeats rounds, each calling both), their
ratio, and the static model's first step (trace + graph optimization: what a retrace-per-arch
trainer would pay for every new arch), with the 1-minute load average at the start and end.
--what=compile: what the one-time compile costs, for the train function (the trainer exactly as
bin/train_supernet.py builds it from the config: sampler, teacher, sparse updates) and for the
evaluator's metric function: `trace_s`, `first_step_s` (trace + graph optimization + first run),
`steady_step_ms` (median over --repeats calls, a new subnet each), `slowest_step_ms` (the slowest of those),
`graph_ops` (top level),
`graph_ops_all` (including functions), `if_ops`, `case_ops`, `while_ops`, `lowered_ops` (of those, the ones TF
lowers to Switch/Merge on the first call: all but the sparse update's with one replica), `peak_rss_mb`, and the
1-minute load average (`os.getloadavg`) at the start and end. A static teacher is timed with
untrained weights. Input size and batch come from the config.
--what=forward, train_step and compile optimize their functions' graphs as training does
(`config.train.graph_optimizations`: `--config.train.graph_optimizations=full` for TF's default).
--what=latency: measured TFLite latency with LiteRT (`export.latency.measure_tflite`, --threads
interpreter threads, batch 1 unless --batch is given), in --rounds interleaved rounds that each run
every model (--warmup calls, then --repeats timed ones), so that a burst of load on the machine
spoils one round of each model rather than all calls of one. With --tflite=PATH[,PATH...] or
--export_dir=DIR (every *.tflite below DIR): each file's median, p90 and fastest call, and its size.
With --config: builds the family's supernet once (random weights: latency does not depend on them),
draws --fit_archs + --validate_archs distinct random archs (the space's sampler, seeded by
config.seed), extracts each at the config's input size (or --input_size) and converts it to float32
TFLite in memory, then measures them all; fits a `search.latency.LatencyModel` on the analytic
latency features of the first --fit_archs and reports, on the held-out rest, the Spearman rank
correlation and median absolute error of its predictions, next to the Spearman of plain MACs. The
per-arch latency is the fastest call (--statistic=min, default: what the arch costs on an idle
machine) or the median call. --latency_model=PATH writes the fitted model (JSON; a temporary file,
then renamed), the file `config.search.latency_model` names. The load average (`os.getloadavg`) is
reported at the start and end.
The last line is JSON. Exit codes: 0 ok; 1 bad flags or bad input.
"""

import dataclasses
import json
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags

from scalenas_tf import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Python config file[:variant].")
_INPUT_SIZE = flags.DEFINE_string(
    "input_size", "256x256", "HEIGHTxWIDTH of the benchmark input (--what=latency: default the config's)."
)
_BATCH = flags.DEFINE_integer("batch", 2, "Batch size (--what=latency: default 1).", lower_bound=1)
_REPEATS = flags.DEFINE_integer(
    "repeats", 10, "Timed repeats per model (forward: best is reported; latency: median).", lower_bound=1
)
_NUM_ARCHS = flags.DEFINE_integer("num_archs", 20, "Random archs run through the one traced function.", lower_bound=1)
_WHAT = flags.DEFINE_enum("what", "forward", ["forward", "train_step", "compile", "latency"], "What to benchmark.")
_TFLITE = flags.DEFINE_list("tflite", [], "latency: TFLite files to measure (comma-separated).")
_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "latency: measure every *.tflite below this directory.")
_THREADS = flags.DEFINE_integer("threads", 1, "latency: LiteRT interpreter threads.", lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 5, "latency: untimed calls before the timed ones.", lower_bound=0)
_FIT_ARCHS = flags.DEFINE_integer("fit_archs", 100, "latency: archs the predictor is fitted on.", lower_bound=1)
_VALIDATE_ARCHS = flags.DEFINE_integer(
    "validate_archs", 50, "latency: held-out archs the predictor is checked on.", lower_bound=2
)
_ROUNDS = flags.DEFINE_integer(
    "rounds",
    5,
    "latency: interleaved rounds; each measures every model (--warmup, then --repeats calls).",
    lower_bound=1,
)
_STATISTIC = flags.DEFINE_enum(
    "statistic",
    "min",
    ["min", "median"],
    "latency: the per-arch figure (over all rounds' calls) the predictor is fitted to and checked against. "
    "min: the fastest call, what the arch costs when nothing else runs (load only ever adds time); "
    "median: the typical call on this machine as loaded.",
)
_LATENCY_MODEL = flags.DEFINE_string("latency_model", None, "latency: write the fitted predictor (JSON) here.")
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


def _interleaved_medians(fns, repeats):
    """Median seconds per call of each of `fns`, timed in `repeats` rounds that call each once (the order
    alternating between rounds), after one warm-up call each: the machine's drifts in speed, which on a
    shared 2-core host move a sequential median by +-30% between two models, then reach both alike."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for r in range(repeats):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            start = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - start)
    return [sorted(t)[len(t) // 2] for t in times]


def _best_time(fn, repeats):
    return min(_times(fn, repeats))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _WHAT.value == "latency":
        return _latency_benchmark()
    from scalenas_tf.training import graph_options

    try:
        mode = _experiment().graph_optimizations
    except ValueError as e:
        print(f"benchmark.py: error: {e}", file=sys.stderr)
        return 1
    benchmark = {"forward": _forward_benchmark, "train_step": _train_step_benchmark, "compile": _compile_benchmark}
    # Graph optimization as training gets it (config.train.graph_optimizations), static models included.
    with graph_options.graph_optimizations(mode):
        return benchmark[_WHAT.value]()


def _experiment():
    from scalenas_tf.experiment import Experiment

    if _CONFIG.value is None:
        raise app.UsageError(f"--what={_WHAT.value} needs --config")
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
    import os

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
        "load_1m_start": round(os.getloadavg()[0], 2),
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
        static = extract_subnet(net, arch, input_size=size)
        static.compile(optimizer=experiment.build_optimizer(), loss=task_loss)
        start = time.perf_counter()
        static.train_on_batch(images, targets)
        first = time.perf_counter() - start
        t_super, t_static = _interleaved_medians(
            [lambda: timed.train_on_batch(images, targets), lambda: static.train_on_batch(images, targets)],
            _REPEATS.value,
        )
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
    result["load_1m_end"] = round(os.getloadavg()[0], 2)
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
    # Traced as Keras's fit traces it: without autograph (autograph's conversion of every function the step
    # calls is not what a user waits for).
    train_function = tf.function(trainer.train_step, autograph=False)
    result["train"] = compile_stats.measure(train_function, lambda i: (batch,), _REPEATS.value)
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


def _latency_settings():
    """`(threads, warmup, repeats, batch)` of --what=latency."""
    batch = _BATCH.value if flags.FLAGS["batch"].present else 1
    return _THREADS.value, _WARMUP.value, _REPEATS.value, batch


def _latency_benchmark():
    if _TFLITE.value or _EXPORT_DIR.value:
        if _CONFIG.value is not None:
            raise app.UsageError(
                "--what=latency takes --tflite/--export_dir (measure files) or --config (fit), not both"
            )
        return _file_latency()
    if _CONFIG.value is None:
        raise app.UsageError("--what=latency needs --tflite, --export_dir or --config")
    return _fitted_latency()


def _interleaved_runs(models, on_round=None):
    """Per model, the times (ms) of --rounds x --repeats calls: every round measures every model once
    (--warmup calls first), so a burst of load on the machine hits one round of each model rather
    than every call of one model."""
    from scalenas_tf.export.latency import measure_tflite

    threads, warmup, repeats, batch = _latency_settings()
    runs = [[] for _ in models]
    for r in range(_ROUNDS.value):
        for i, model in enumerate(models):
            timing = measure_tflite(model, threads=threads, warmup=warmup, repeats=repeats, batch=batch)
            runs[i] += timing["runs_ms"]
        if on_round is not None:
            on_round(r, runs)
    return runs


def _summary(runs):
    from scalenas_tf.export.latency import summarize

    return summarize(runs)


def _tflite_paths():
    import os

    paths = list(_TFLITE.value)
    if _EXPORT_DIR.value:
        if not os.path.isdir(_EXPORT_DIR.value):
            raise FileNotFoundError(f"--export_dir is not a directory: {_EXPORT_DIR.value}")
        for root, dirs, files in os.walk(_EXPORT_DIR.value):
            dirs.sort()
            paths += [os.path.join(root, f) for f in sorted(files) if f.endswith(".tflite")]
        if not paths:
            raise FileNotFoundError(f"No *.tflite file below --export_dir={_EXPORT_DIR.value}")
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"TFLite file not found: {path}")
    return paths


def _latency_header():
    import os

    from scalenas_tf.search.latency import device_description

    threads, warmup, repeats, batch = _latency_settings()
    return {
        "device": device_description(),
        "threads": threads,
        "warmup": warmup,
        "repeats": repeats,
        "rounds": _ROUNDS.value,
        "batch": batch,
        "load_1m_start": round(os.getloadavg()[0], 2),
    }


def _file_latency():
    import os

    paths = _tflite_paths()
    result = {**_latency_header(), "files": []}
    for path, runs in zip(paths, _interleaved_runs(paths)):
        entry = {"path": path, "size_bytes": os.path.getsize(path)}
        entry.update({k: round(v, 4) for k, v in _summary(runs).items()})
        result["files"].append(entry)
        print(
            f"{path}: median {entry['median_ms']:.3f} ms (p90 {entry['p90_ms']:.3f}, min {entry['min_ms']:.3f}), "
            f"{entry['size_bytes'] / 1e6:.3f} MB"
        )
    result["load_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, sort_keys=True))
    return 0


def _distinct_archs(space, count, seed):
    """`count` distinct random archs (by hash) from the space's sampler, in draw order."""
    import numpy as np

    rng = np.random.default_rng(seed)
    archs, seen = [], set()
    for _ in range(100 * count):
        arch = space.sample(rng)
        if arch.hash() not in seen:
            seen.add(arch.hash())
            archs.append(arch)
            if len(archs) == count:
                return archs
    raise ValueError(f"The space gave only {len(archs)} distinct archs in {100 * count} draws; asked for {count}")


def _fitted_latency():
    import gc
    import os

    import keras
    import numpy as np
    import tensorflow as tf

    from scalenas_tf.config import parse_input_size
    from scalenas_tf.export.latency import tflite_bytes
    from scalenas_tf.search import latency as latency_lib
    from scalenas_tf.search.cost import LATENCY_FEATURES

    out = _LATENCY_MODEL.value
    if out is not None and (not out or os.path.isdir(out)):
        raise ValueError(f"--latency_model must be a file path, not a directory. Received: {out!r}")
    if _FIT_ARCHS.value < len(LATENCY_FEATURES) + 1:
        raise ValueError(
            f"--fit_archs must be >= {len(LATENCY_FEATURES) + 1} (one per weight and the intercept). "
            f"Received: {_FIT_ARCHS.value}"
        )
    experiment = _experiment()
    family, space, model = experiment.family, experiment.space, experiment.model
    size = parse_input_size(_INPUT_SIZE.value) if flags.FLAGS["input_size"].present else model.input_size
    threads, _, _, batch = _latency_settings()
    archs = _distinct_archs(space, _FIT_ARCHS.value + _VALIDATE_ARCHS.value, experiment.seed)
    keras.utils.set_random_seed(experiment.seed)
    net = experiment.build_supernet()
    result = {
        "space": family.name,
        "config": config_flags.get_config_filename(flags.FLAGS["config"]),
        "task": model.task,
        "input_size": list(size),
        "statistic": _STATISTIC.value,
        "tf": tf.__version__,
        **_latency_header(),
    }
    # 1. Extract and convert every arch (TensorFlow busy), then 2. measure them all, interleaved.
    start = time.perf_counter()
    models, records = [], []
    for i, arch in enumerate(archs):
        records.append(family.count(space, arch, model.task, model.num_classes, size))
        static = family.extract(net, arch, size).model
        models.append(tflite_bytes(static))
        del static
        gc.collect()  # an extracted model's layers form reference cycles; 150 of them add up
        print(
            f"converted {i + 1}/{len(archs)} {arch.hash()}: {records[-1].macs / 1e6:.2f} M MACs, "
            f"{len(models[-1]) / 1e6:.2f} MB, {time.perf_counter() - start:.0f} s",
            flush=True,
        )

    def on_round(r, runs):
        lows = [min(v) for v in runs]
        print(
            f"round {r + 1}/{_ROUNDS.value}: fastest call per arch {min(lows):.3f}-{max(lows):.3f} ms, "
            f"load {os.getloadavg()[0]:.2f}, {time.perf_counter() - start:.0f} s",
            flush=True,
        )

    rows = []
    for i, (arch, record, runs) in enumerate(zip(archs, records, _interleaved_runs(models, on_round))):
        summary = _summary(runs)
        rows.append(
            {
                "arch_hash": arch.hash(),
                "set": "fit" if i < _FIT_ARCHS.value else "validate",
                "latency_ms": round(summary[f"{_STATISTIC.value}_ms"], 5),
                **{k: round(v, 5) for k, v in summary.items()},
                "macs": int(record.macs),
                "tflite_bytes": len(models[i]),
                "features": dict(record.features),
            }
        )
    fit, held_out = rows[: _FIT_ARCHS.value], rows[_FIT_ARCHS.value :]
    predictor = latency_lib.LatencyModel.fit(
        [r["features"] for r in fit],
        [r["latency_ms"] for r in fit],
        feature_names=LATENCY_FEATURES,
        family=family.name,
        device=result["device"],
        threads=threads,
        tf_version=tf.__version__,
        input_size=tuple(size),
    )
    measured = np.array([r["latency_ms"] for r in held_out])
    predicted = np.array([predictor.predict(r["features"]) for r in held_out])
    validation = {
        "fit_archs": len(fit),
        "validate_archs": len(held_out),
        "spearman_predictor": round(latency_lib.spearman(predicted, measured), 4),
        "spearman_macs": round(latency_lib.spearman([r["macs"] for r in held_out], measured), 4),
        "median_abs_error_ms": round(latency_lib.median_absolute_error(predicted, measured), 4),
        "median_rel_error": round(float(np.median(np.abs(predicted - measured) / measured)), 4),
        "spearman_predictor_fit": round(
            latency_lib.spearman([predictor.predict(r["features"]) for r in fit], [r["latency_ms"] for r in fit]), 4
        ),
        "latency_ms_range": [
            round(min(r["latency_ms"] for r in rows), 4),
            round(max(r["latency_ms"] for r in rows), 4),
        ],
    }
    for r, p in zip(held_out, predicted):
        r["predicted_ms"] = round(float(p), 5)
    extra = {
        "config": result["config"],
        "task": model.task,
        "num_classes": model.num_classes,
        "runtime": f"ai-edge-litert {_package_version('ai-edge-litert')}, float32, batch {batch}",
        "statistic": f"{_STATISTIC.value} of {result['rounds']} interleaved rounds x {result['repeats']} calls",
        "seed": experiment.seed,
        "validation": validation,
        "measurements": rows,
    }
    predictor = dataclasses.replace(predictor, extra=extra)
    result.update(validation)
    result["weights"] = predictor.weights
    result["intercept_ms"] = predictor.intercept_ms
    result["load_1m_end"] = round(os.getloadavg()[0], 2)
    result["seconds"] = round(time.perf_counter() - start, 1)
    if out is not None:
        result["latency_model"] = predictor.save(out)
    print(
        f"held-out {len(held_out)} archs: Spearman predictor {validation['spearman_predictor']}, "
        f"MACs {validation['spearman_macs']}; median |error| {validation['median_abs_error_ms']} ms"
    )
    print(json.dumps(result, sort_keys=True))
    return 0


def _package_version(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    cli.run(main, "benchmark.py")
