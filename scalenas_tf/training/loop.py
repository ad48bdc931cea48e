"""A training loop of its own around `SupernetTrainer.train_step`, for MultiWorkerMirroredStrategy.

Keras 3.15's `fit` fails under MultiWorkerMirroredStrategy before the first step
(keras-team/keras#20585); this loop runs the same step function through `strategy.run`, writes a
`tf.train.CheckpointManager` checkpoint every `checkpoint_every` steps and resumes from the latest
one, so killing every worker loses at most the steps since the last checkpoint. It works under any
strategy (and without one).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time

import tensorflow as tf

from scalenas_tf import distribute


def train_loop(trainer, dataset, steps, checkpoint_dir, strategy=None, checkpoint_every=100, log_every=10, log=print):
    """Trains `trainer` (compiled, under `strategy.scope()`) until `optimizer.iterations == steps`.

    Args:
        trainer: a compiled `SupernetTrainer`.
        dataset: `tf.data.Dataset` of global batches `(images, targets)`, repeated.
        steps: int. The total number of steps (resumed runs stop at the same total).
        checkpoint_dir: str. Checkpoints of trainer and optimizer; the latest is restored first.
        strategy: the strategy `trainer` was built under (default: the current one).
        checkpoint_every, log_every: ints, in steps.
        log: callable taking one line of progress.

    Returns:
        A dict of the final metric results plus `"steps"` and `"resumed_from"`.
    """
    strategy = strategy or tf.distribute.get_strategy()
    chief = distribute.is_chief(strategy)
    # Every worker must save (the save is a collective op), but only the chief's copy is kept.
    save_dir = checkpoint_dir if chief else tempfile.mkdtemp(prefix="scalenas_worker_ckpt_")
    checkpoint = tf.train.Checkpoint(trainer=trainer, optimizer=trainer.optimizer)
    manager = tf.train.CheckpointManager(checkpoint, save_dir, max_to_keep=2)
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest:
        _check_optimizer_layout(latest, trainer)
        checkpoint.restore(latest).assert_existing_objects_matched()
    resumed_from = int(trainer.optimizer.iterations.numpy())
    if latest:
        log(f"resumed from {latest} at step {resumed_from}")

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    iterator = iter(strategy.experimental_distribute_dataset(dataset.with_options(options)))

    @tf.function
    def train_step(iterator):
        strategy.run(trainer.train_step, args=(next(iterator),))

    step, start = resumed_from, time.perf_counter()
    while step < steps:
        train_step(iterator)
        step += 1
        if step % checkpoint_every == 0 or step == steps:
            manager.save(checkpoint_number=step)
        if step % log_every == 0 or step == steps:
            rate = (step - resumed_from) / (time.perf_counter() - start)
            metrics = " - ".join(f"{m.name}: {float(m.result()):.4f}" for m in trainer.metrics[:3])
            log(f"step {step}/{steps} - {metrics} - {rate:.2f} steps/s")
    if not chief:
        shutil.rmtree(save_dir, ignore_errors=True)
    results = {m.name: float(m.result()) for m in trainer.metrics[:3]}
    results.update(steps=step, resumed_from=resumed_from)
    return results


def latest_step(checkpoint_dir):
    """The step of the latest loop checkpoint in `checkpoint_dir`, or 0."""
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    return int(os.path.basename(latest).rsplit("-", 1)[-1]) if latest else 0


def _check_optimizer_layout(path, trainer):
    """Raises a ValueError if the optimizer state at `path` was written with another slot layout.

    A checkpoint keys the optimizer's variables (and the model variables it updates) by their index in its
    lists, so a checkpoint written with one slot per variable would restore into stacked slots
    (`SupernetTrainer(stacked_slots=True)`) by position: mismatched shapes at best, another variable's values
    where shapes agree.
    """
    optimizer = trainer.optimizer
    saved = {}
    for key, shape in tf.train.list_variables(path):
        match = re.fullmatch(r"optimizer/(_variables|_trainable_variables)/(\d+)/\.ATTRIBUTES/VARIABLE_VALUE", key)
        if match:
            saved.setdefault(match.group(1), {})[int(match.group(2))] = list(shape)
    ours = {"_variables": optimizer.variables, "_trainable_variables": optimizer._trainable_variables}
    for name, variables in ours.items():
        entries = saved.get(name, {})
        fits = not entries or (
            max(entries) == len(variables) - 1
            and all(list(variables[i].shape) == shape for i, shape in entries.items())
        )
        if not fits:
            detail = f"{max(entries) + 1} saved {name.strip('_')} vs {len(variables)}"
            raise trainer.slot_layout_error(path, detail)
