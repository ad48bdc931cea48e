r"""Benchmarks the supernet's compiled forward against the extracted static models of the same archs.

  python bin/benchmark.py --config=configs/scalenas_seg.py:w16 --input_size=256x512 --batch=2

Reports: trace time and trace count of one `tf.function` over many archs, then per named arch
(smallest, hrnet, largest) the best-of-N forward time of the supernet inside that function, of the
extracted static model (also in a `tf.function`), and the analytic MACs. The last line is JSON.
Exit codes: 0 ok; 1 bad flags or bad input.
"""

import json
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Python config file[:variant].")
_INPUT_SIZE = flags.DEFINE_string("input_size", "256x256", "HEIGHTxWIDTH of the benchmark input.")
_BATCH = flags.DEFINE_integer("batch", 2, "Batch size.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed repeats per model (best is reported).")
_NUM_ARCHS = flags.DEFINE_integer("num_archs", 20, "Random archs run through the one traced function.")


def _best_time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    import tensorflow as tf

    from scalenas_tf import config as config_lib
    from scalenas_tf.models.subnet import extract_subnet
    from scalenas_tf.models.supernet import ScaleNASSupernet
    from scalenas_tf.models.supernet import random_arch_vectors
    from scalenas_tf.search import cost

    try:
        config_lib.validate(_CONFIG.value)
        size = config_lib.parse_input_size(_INPUT_SIZE.value)
    except ValueError as e:
        print(f"benchmark.py: error: {e}", file=sys.stderr)
        return 1
    config = _CONFIG.value
    kwargs = config_lib.build_model_kwargs(config)
    space = kwargs["space"]
    net = ScaleNASSupernet(**kwargs)
    net.build((None, None, None, 3))
    x = tf.random.normal((_BATCH.value, *size, 3))
    forward = tf.function(lambda images, vector: net(images, arch=vector, training=False))

    start = time.perf_counter()
    forward(x, tf.constant(space.to_vector(space.largest()))).numpy()
    trace_s = time.perf_counter() - start
    for vector in random_arch_vectors(space, _NUM_ARCHS.value, seed=0):
        forward(x, tf.constant(vector)).numpy()
    result = {"trace_and_first_call_s": round(trace_s, 2), "traces": forward.experimental_get_tracing_count()}
    print(f"one tf.function over {_NUM_ARCHS.value + 1} archs: {result['traces']} trace(s), first call {trace_s:.1f} s")

    for name in ("smallest", "hrnet", "largest"):
        arch = space.named(name)
        vector = tf.constant(space.to_vector(arch))
        static = extract_subnet(net, arch, input_size=size)
        static_fn = tf.function(lambda images, m=static: m(images, training=False))
        t_super = _best_time(lambda: forward(x, vector).numpy(), _REPEATS.value)
        t_static = _best_time(lambda: static_fn(x).numpy(), _REPEATS.value)
        macs = cost.count(space, arch, config.model.task, config.model.num_classes, size).live_macs
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
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
