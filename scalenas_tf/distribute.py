"""`get_strategy(name)`: the tf.distribute strategy a training job runs under."""

from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")
_multi_worker = []  # one MultiWorkerMirroredStrategy per process: collectives configure once


def get_strategy(name: str = "default") -> tf.distribute.Strategy:
    """`"default"` (one device), `"mirrored"` (every local GPU, or the logical CPUs) or `"multi_worker"`.

    `multi_worker` reads the cluster from the `TF_CONFIG` environment variable and must be created
    before any other TensorFlow op runs in the process.
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={name!r}")
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        if not _multi_worker:
            _multi_worker.append(tf.distribute.MultiWorkerMirroredStrategy())
        return _multi_worker[0]
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this is a non-chief worker of a multi-worker strategy."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().jobs
    )
