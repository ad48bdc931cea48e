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

import os

from scalenas_tf import distribute
from scalenas_tf import workdir as workdir_lib
from scalenas_tf.experiment import Experiment


def prepare_teacher(experiment, supernet, input_size, log=print):
    """The teacher of `experiment.train` (None, `"inplace"` or a frozen static model), initializing the
    built `supernet` from it first when `init_from_teacher` is set.

    `teacher_weights`: an extracted largest model's `.weights.h5`. `teacher_checkpoint`: supernet
    weights (`bin/import_weights.py` of a pretrained HRNet, or a trained `supernet.weights.h5`); the
    teacher is then its subnet `teacher_arch` (default: the family's default arch, e.g. `hrnet`), and
    `init_from_teacher` loads the whole file into the supernet, as ScaleNAS starts from HRNet.
    """
    from scalenas_tf.models.extraction import extract_subnet
    from scalenas_tf.models.extraction import load_subnet_weights

    train, space, family = experiment.train, experiment.space, experiment.family
    if train.teacher_checkpoint:
        source = experiment.build_supernet()
        source.build((None, None, None, 3))
        source.load_weights(train.teacher_checkpoint)
        arch, label = family.resolve_arch(space, train.teacher_arch or None)
        static = extract_subnet(source, arch, input_size, name="teacher")
        if train.init_from_teacher:
            supernet.load_weights(train.teacher_checkpoint)
            log(f"[train] supernet initialized from {train.teacher_checkpoint}")
        if train.teacher == "static":
            log(f"[train] teacher: subnet {label} of {train.teacher_checkpoint}")
            return static
    elif train.teacher == "static":
        static = extract_subnet(supernet, space.largest(), input_size, name="teacher")
        static.load_weights(train.teacher_weights)
        if train.init_from_teacher:
            load_subnet_weights(supernet, static)
        return static
    return None if train.teacher == "none" else train.teacher


def run(config, workdir: str, strategy: str = "default", verbose="auto", log=print) -> dict:
    """Trains the supernet of `config` under `strategy`, resuming from `workdir` if it holds a run."""
    import keras
    import tensorflow as tf

    from scalenas_tf.data import pipeline
    from scalenas_tf.training import graph_options
    from scalenas_tf.training.loop import train_loop

    experiment = Experiment.from_config(config, require=("data", "train"))
    train, data, model = experiment.train, experiment.data, experiment.model
    for field in ("teacher_weights", "teacher_checkpoint"):
        path = getattr(train, field)
        if path and not os.path.isfile(path):
            raise ValueError(f"config.train.{field} not found: {path}")
    if train.teacher_checkpoint:  # a bad teacher_arch fails before any heavy work
        experiment.family.resolve_arch(experiment.space, train.teacher_arch or None)
    experiment.build_optimizer()  # fail on a bad field before any heavy work
    experiment.build_sampler()
    work = workdir_lib.Workdir(workdir)
    _check_backup(work)
    dist = distribute.get_strategy(strategy)
    os.makedirs(work.root, exist_ok=True)
    workdir_lib.atomic_write_text(work.config, experiment.config_json)

    input_size = model.input_size
    train_ds = pipeline.make_dataset(
        model.task,
        "train",
        data.batch_size,
        input_size,
        source=data.source,
        seed=experiment.seed,
        num_examples=data.train_examples,
        source_kwargs=data.source_kwargs,
    )
    val_ds = pipeline.make_dataset(
        model.task,
        "validation",
        data.batch_size,
        input_size,
        source=data.source,
        seed=experiment.seed,
        num_examples=data.validation_examples,
        source_kwargs=data.source_kwargs,
    )

    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(train.precision)
    try:
        with graph_options.graph_optimizations(train.graph_optimizations):
            keras.utils.set_random_seed(experiment.seed)
            with dist.scope():
                supernet = experiment.build_supernet()
                supernet.build((None, None, None, 3))
                teacher = prepare_teacher(experiment, supernet, input_size, log=log)
                trainer = experiment.build_trainer(supernet, teacher)
                trainer.compile(optimizer=experiment.build_optimizer())

            steps, per_epoch = train.steps, train.steps_per_epoch
            if strategy == "multi_worker":
                summary = train_loop(
                    trainer,
                    train_ds,
                    steps,
                    work.loop_checkpoints_dir,
                    dist,
                    checkpoint_every=per_epoch,
                    log=log,
                )
            else:
                callbacks = [
                    # Kept after the run, so that restarting a finished job does not train it again.
                    keras.callbacks.BackupAndRestore(work.backup_dir, delete_checkpoint=False),
                    keras.callbacks.ModelCheckpoint(
                        os.path.join(work.checkpoints_dir, "trainer.weights.h5"), save_weights_only=True
                    ),
                    keras.callbacks.TensorBoard(work.tensorboard_dir, update_freq="epoch"),
                ]
                try:
                    history = trainer.fit(
                        train_ds,
                        epochs=-(-steps // per_epoch),
                        steps_per_epoch=per_epoch,
                        validation_data=val_ds,
                        callbacks=callbacks,
                        verbose=verbose,
                    )
                except (OSError, KeyError, tf.errors.OpError) as e:
                    if not os.path.isdir(work.backup_dir):
                        raise
                    raise ValueError(
                        f"Cannot resume from the backup in {work.backup_dir} ({type(e).__name__}: {e}). "
                        f"If it is damaged (e.g. cut short by a kill), delete {work.backup_dir} to start training over"
                    ) from None
                summary = {k: float(v[-1]) for k, v in history.history.items()}
                summary["steps"] = int(trainer.optimizer.iterations.numpy())
            if distribute.is_chief(dist):
                with workdir_lib.atomic_path(work.weights) as tmp:
                    supernet.save_weights(tmp)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    summary["workdir"] = workdir
    workdir_lib.atomic_write_json(work.train_summary, summary, indent=2)
    return summary


def _check_backup(work: workdir_lib.Workdir) -> None:
    """Refuses a damaged BackupAndRestore state up front, naming the file and what to delete."""
    metadata = os.path.join(work.backup_dir, "training_metadata.json")
    if os.path.exists(metadata):
        try:
            workdir_lib.read_json_object(metadata, "training backup")
        except workdir_lib.WorkdirError as e:
            raise ValueError(
                f"Cannot resume: {e}. If the backup is damaged (e.g. cut short by a kill), delete {work.backup_dir} "
                "to start training over"
            ) from None
