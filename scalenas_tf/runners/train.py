"""Supernet training job: `run(config, workdir, strategy)` -> summary dict. No flags, no exit.

Workdir layout:
  backup/                  BackupAndRestore state (fit): weights, optimizer, epoch; resumed on restart
  loop_checkpoints/        tf.train checkpoints of the custom loop (multi_worker); resumed on restart
  checkpoints/             ModelCheckpoint: the trainer's weights after every epoch
  tensorboard/             TensorBoard logs
  supernet.weights.h5      the trained supernet's weights (what search and export load)
  config.json              the config the job ran with
"""

from __future__ import annotations

import json
import os
from typing import Any

from scalenas_tf import config as config_lib
from scalenas_tf import distribute


def run(config: Any, workdir: str, strategy: str = "default", verbose="auto", log=print) -> dict:
    """Trains the supernet of `config` under `strategy`, resuming from `workdir` if it holds a run."""
    import keras
    import tensorflow as tf

    from scalenas_tf.data import pipeline
    from scalenas_tf.models.subnet import extract_subnet
    from scalenas_tf.models.subnet import load_subnet_weights
    from scalenas_tf.training.loop import train_loop
    from scalenas_tf.training.trainer import SupernetTrainer

    config_lib.validate_train(config)
    train = config.train
    precision = config_lib.check_precision(train.get("precision", "float32"))
    if train.teacher not in ("inplace", "none", "static"):
        raise ValueError(f"config.train.teacher must be inplace, none or static. Received: {train.teacher!r}")
    if train.teacher == "static" and not train.teacher_weights:
        raise ValueError("config.train.teacher='static' needs config.train.teacher_weights (an extracted model's .weights.h5)")
    if train.teacher_weights and not os.path.exists(train.teacher_weights):
        raise ValueError(f"config.train.teacher_weights not found: {train.teacher_weights}")
    config_lib.build_optimizer(train)  # fail on a bad field before any heavy work
    config_lib.build_sampler(config, config_lib.build_space(config))
    dist = distribute.get_strategy(strategy)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))

    input_size = config_lib.parse_input_size(config.model.input_size)
    data = config.data
    train_ds = pipeline.make_dataset(
        config.model.task, "train", data.batch_size, input_size, source=data.source, seed=config.seed,
        num_examples=data.get("train_examples"), source_kwargs=data.get("source_kwargs"),
    )
    val_ds = pipeline.make_dataset(
        config.model.task, "validation", data.batch_size, input_size, source=data.source, seed=config.seed,
        num_examples=data.get("validation_examples"), source_kwargs=data.get("source_kwargs"),
    )

    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    graph_optimizations = bool(train.get("graph_optimizations", True))
    if not graph_optimizations:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        keras.utils.set_random_seed(config.seed)
        with dist.scope():
            supernet = config_lib.build_supernet(config)
            space = supernet.space
            supernet.build((None, None, None, 3))
            teacher = None if train.teacher == "none" else train.teacher
            if train.teacher == "static":
                teacher = extract_subnet(supernet, space.largest(), input_size, name="teacher")
                teacher.load_weights(train.teacher_weights)
                if train.init_from_teacher:
                    load_subnet_weights(supernet, teacher)
            trainer = SupernetTrainer(
                supernet,
                sampler=config_lib.build_sampler(config, space),
                teacher=teacher,
                distill_weight=train.distill_weight,
                sparse_updates=train.sparse_updates,
                per_replica_subnets=train.per_replica_subnets,
            )
            trainer.compile(optimizer=config_lib.build_optimizer(train))

        steps, per_epoch = int(train.steps), int(train.steps_per_epoch)
        if strategy == "multi_worker":
            summary = train_loop(
                trainer, train_ds, steps, os.path.join(workdir, "loop_checkpoints"), dist,
                checkpoint_every=per_epoch, log=log,
            )
        else:
            callbacks = [
                # Kept after the run, so that restarting a finished job does not train it again.
                keras.callbacks.BackupAndRestore(os.path.join(workdir, "backup"), delete_checkpoint=False),
                keras.callbacks.ModelCheckpoint(
                    os.path.join(workdir, "checkpoints", "trainer.weights.h5"), save_weights_only=True
                ),
                keras.callbacks.TensorBoard(os.path.join(workdir, "tensorboard"), update_freq="epoch"),
            ]
            history = trainer.fit(
                train_ds,
                epochs=-(-steps // per_epoch),
                steps_per_epoch=per_epoch,
                validation_data=val_ds,
                callbacks=callbacks,
                verbose=verbose,
            )
            summary = {k: float(v[-1]) for k, v in history.history.items()}
            summary["steps"] = int(trainer.optimizer.iterations.numpy())
        if distribute.is_chief(dist):
            supernet.save_weights(os.path.join(workdir, "supernet.weights.h5"))
    finally:
        keras.config.set_dtype_policy(previous_policy)
        if not graph_optimizations:
            tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
    summary["workdir"] = workdir
    with open(os.path.join(workdir, "train_summary.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    return summary
