"""`SupernetTrainer`: a keras.Model whose `train_step` trains sampled subnets with distillation.

One compiled step serves every subnet: the sampler draws arch vectors in graph from
`optimizer.iterations`, the supernet branches with `tf.cond`, and sparse updates leave the choices
the step did not run untouched. Works with `compile`/`fit`/`evaluate`, Keras callbacks, mixed
precision and `tf.distribute` (every replica trains the same subnet unless `per_replica_subnets`).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import tensorflow as tf

from scalenas_tf.models.supernet import Supernet
from scalenas_tf.tasks import IGNORE_LABEL
from scalenas_tf.training import gradient_tracing
from scalenas_tf.training import losses
from scalenas_tf.training import sparse_update
from scalenas_tf.training.sampler import ArchSampler
from scalenas_tf.training.sampler import FixedSampler

INPLACE = "inplace"


class SupernetTrainer(keras.Model):
    """Trains any `Supernet` (models/supernet.py): each step, `loss = task_loss + distill_weight * MSE(student,
    teacher)`.

    Args:
        supernet: a `Supernet` of any family (the weights being trained).
        sampler: `ArchSampler`; its `num_subnets` subnets per step have their losses summed
            (one update). Default: the largest arch every step.
        teacher: `None` (no distillation), a frozen `keras.Model` with the supernet's output shape
            (e.g. the full configuration, `extract_subnet(supernet, space.largest())`),
            or `"inplace"`: the largest subnet runs in the same step with the task loss and its
            detached output is the teacher of the sampled subnets (OFA/AttentiveNAS).
        distill_weight: float. alpha (ScaleNAS paper 1.0, released code 0.5).
        task_loss: callable `(targets, outputs) -> scalar`, default the task's loss from `losses`.
        sparse_updates: bool. True (default): weights and optimizer slots of choices a step did not
            run stay bit-identical (no momentum, no decay). False: the dense update of the PyTorch
            1.x reference code, whose zeroed gradients still drive momentum and decay.
        per_replica_subnets: bool. Under a strategy with several replicas, each replica draws its
            own subnet (TuNAS-style); a choice is updated if any replica ran it.
        eval_arch: the arch `evaluate` and `predict` run (`None`: the largest).
        subnet_loop: bool or None. Run the step's subnets in a `tf.while_loop`, accumulating their
            gradients (same sum; one supernet copy in the graph). `None` (default): when the sampler
            draws more than 4 subnets per step (e.g. `StrictFairSampler`). Not with `"inplace"`.
        stacked_slots: bool. True (default): where every variable is updated every step (`"inplace"` or
            `sparse_updates=False`) and no strategy is in scope at `compile`, Adam's and SGD's slots of
            same-shape variables are stacked into one variable per slot (`sparse_update.SlotStacks`: the same
            values, far fewer ops). False: one slot per variable, as checkpoints written before 2026-12-04 hold
            them (loading such a checkpoint into stacked slots fails with a message that says so).

    Training logs: `loss`, `task_loss`, `distill_loss` (epoch means of the step's summed subnet
    losses) and `loss_spread`, the standard deviation of the step loss over the epoch's steps.

    Checkpoint it with weights (`save_weights`, `ModelCheckpoint(save_weights_only=True)`,
    `BackupAndRestore`); what outlives training is the supernet's weights.

    Example:
    >>> trainer = SupernetTrainer(supernet, sampler=GroupedSampler(space), teacher="inplace")
    >>> trainer.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    >>> trainer.fit(dataset, epochs=1, steps_per_epoch=100)
    """

    def __init__(
        self,
        supernet,
        sampler=None,
        teacher=None,
        distill_weight=0.5,
        task_loss=None,
        sparse_updates=True,
        per_replica_subnets=False,
        eval_arch=None,
        subnet_loop=None,
        stacked_slots=True,
        **kwargs,
    ):
        kwargs.setdefault("name", "supernet_trainer")
        super().__init__(**kwargs)
        if not isinstance(supernet, Supernet):
            raise TypeError(
                f"`supernet` must be a Supernet (scalenas_tf.models.supernet). Received: {type(supernet).__name__}"
            )
        if sampler is not None and not isinstance(sampler, ArchSampler):
            raise TypeError(f"`sampler` must be an ArchSampler. Received: {type(sampler).__name__}")
        if isinstance(teacher, str) and teacher != INPLACE:
            raise ValueError(f"`teacher` must be None, a keras.Model or {INPLACE!r}. Received: teacher={teacher!r}")
        if not isinstance(teacher, (type(None), str, keras.Model)):
            raise TypeError(f"`teacher` must be None, a keras.Model or {INPLACE!r}. Received: {type(teacher).__name__}")
        if float(distill_weight) < 0:
            raise ValueError(f"`distill_weight` must be >= 0. Received: distill_weight={distill_weight}")
        space = supernet.space
        self.supernet = supernet
        self.sampler = sampler if sampler is not None else FixedSampler(space, space.largest())
        self.inplace = teacher == INPLACE
        self.teacher = None if teacher is None or self.inplace else teacher
        if self.teacher is not None:
            self.teacher.trainable = False
        self.distill_weight = float(distill_weight)
        self.task_loss = task_loss if task_loss is not None else losses.task_loss(supernet.task)
        self.sparse_updates = bool(sparse_updates)
        self.per_replica_subnets = bool(per_replica_subnets)
        self.eval_arch = eval_arch if eval_arch is not None else space.largest()
        if subnet_loop is None:
            subnet_loop = self.sampler.num_subnets > 4 and not self.inplace
        if subnet_loop and self.inplace:
            raise ValueError("`subnet_loop=True` does not support teacher='inplace'")
        self.subnet_loop = bool(subnet_loop)
        self.stacked_slots = bool(stacked_slots)
        object.__setattr__(self, "_slot_stacks", None)  # `compile`: `sparse_update.build_optimizer`'s stacks
        object.__setattr__(self, "_gradient_sums", None)  # `compile`, for `_looped_gradients`
        self._largest = tf.constant(space.to_vector(space.largest()))
        self._eval_vector = tf.constant(space.to_vector(self.eval_arch))

        self.train_step_traces = 0  # Python side effect: counts traces of train_step (or eager runs)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.task_loss_tracker = keras.metrics.Mean(name="task_loss")
        self.distill_loss_tracker = keras.metrics.Mean(name="distill_loss")
        # Mean of the squared step loss, for `loss_spread` (the std of the step loss over the epoch).
        self.loss_square_tracker = keras.metrics.Mean(name="loss_square")
        self.task_metrics = _task_metrics(supernet.task, supernet.num_classes)

    # === Keras plumbing ===

    def build(self, input_shape=None):
        # Build every layer once with the largest arch: under a strategy, unbuilt layers make Keras
        # rebuild them on every call (DESIGN.md).
        if not self.supernet.built:
            self.supernet.build(input_shape)
        if self.teacher is not None and not self.teacher.built:
            self.teacher.build(input_shape)
        self.built = True

    def compile(self, optimizer="sgd", **kwargs):
        """Like `keras.Model.compile`; also builds the optimizer so the step traces once."""
        if "loss" in kwargs:
            raise ValueError("SupernetTrainer computes its own loss; pass `task_loss` to the constructor instead.")
        # XLA off unless asked for: Keras's "auto" turns it on for GPUs, where it drops the supernet's
        # in-graph arch assertions and compiles the gating conds only after care (DESIGN.md).
        kwargs.setdefault("jit_compile", False)
        super().compile(optimizer=optimizer, **kwargs)
        if not self.built:
            self.build((None, None, None, 3))
        every_step = self.inplace or not self.sparse_updates  # no gates and no channel masks
        stacks = sparse_update.build_optimizer(
            self.optimizer, self.trainable_variables, stack=self.stacked_slots and every_step
        )
        object.__setattr__(self, "_slot_stacks", stacks)
        if self.subnet_loop and not tf.distribute.has_strategy():
            # `_looped_gradients`'s sums, created here, before the step is traced (a variable created in a trace
            # makes `tf.function` trace again), and held where Keras does not track them (not in checkpoints).
            sums = tuple(
                tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name=f"gradient_sum_{k}")
                for k, v in enumerate(self.supernet.trainable_variables)
            )
            object.__setattr__(self, "_gradient_sums", _Untracked(sums))

    def load_weights(self, filepath, *args, **kwargs):
        """Like `keras.Model.load_weights`, but a file whose optimizer state does not fit fails instead of being
        skipped with a warning (Keras's behaviour), which would resume with fresh slots and step count."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            super().load_weights(filepath, *args, **kwargs)
        for warning in caught:
            message = str(warning.message)
            built = self.optimizer is not None and self.optimizer.built  # else Keras's warning says to build it
            if built and "Skipping variable loading for optimizer" in message:
                raise self.slot_layout_error(filepath, message.strip())
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)

    def slot_layout_error(self, path, detail):
        """The ValueError for a checkpoint at `path` whose optimizer state does not fit (`detail`: how)."""
        layout = "stacked" if self._slot_stacks is not None else "one slot per variable"
        return ValueError(
            f"{path}: its optimizer state does not fit this trainer's optimizer ({detail}). This trainer's "
            f"optimizer slots are {layout} (`stacked_slots={self.stacked_slots}`). A checkpoint written before "
            "2026-12-04 or with stacked_slots=False holds one slot per variable: load it with "
            "`SupernetTrainer(..., stacked_slots=False)` (config: --config.train.stacked_optimizer_slots=False), "
            "or with True if it was written stacked; otherwise it was written with another optimizer"
        )

    def make_train_function(self, force=False):
        """Keras's train function, except that a step is dispatched straight to its traced graph.

        Calling a `tf.function` looks its trace up by a key that holds every variable the trace captures,
        hashed anew on each call (TF 2.21): ~1.3 ms per 2,500 captures. A supernet's step captures all its
        weights, BN statistics and optimizer slots (`configs/shapes_seg.py`: ~2,500, 2.9 ms of a 50 ms step
        of its smallest subnet; that subnet's static model pays 0.8 ms). With one step per call
        (`steps_per_execution=1`, neither eager nor XLA, no distribution strategy) this keeps each input
        signature's `ConcreteFunction` and calls it: the same graph, the same values, one trace. Other settings
        (a strategy's replicas, whose outputs Keras reduces; XLA, which Keras applies to the step but not to
        the iterator's `get_next`) get Keras's function unchanged.
        """
        return self._make_function_of("train", force)

    def make_test_function(self, force=False):
        """Keras's test function, each batch dispatched as `make_train_function` does."""
        return self._make_function_of("test", force)

    def _make_function_of(self, kind, force):
        name = f"{kind}_function"
        if getattr(self, name) is None or force:
            getattr(super(), f"make_{kind}_function")(force=force)
            if self._dispatch_directly():
                setattr(self, name, _single_step_function(self, getattr(self, f"{kind}_step")))
        return getattr(self, name)

    def _dispatch_directly(self):
        strategy = self.distribute_strategy
        default_strategy = strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy()
        return default_strategy and not (self.run_eagerly or self.jit_compile) and self.steps_per_execution == 1

    @property
    def metrics(self):
        return (
            [self.loss_tracker, self.task_loss_tracker, self.distill_loss_tracker]
            + self.task_metrics
            + [self.loss_square_tracker]
        )

    def call(self, images, training=None):
        return self.supernet(images, arch=self._eval_vector, training=training)

    # === The step ===

    def sample(self):
        """The step's arch vectors `(num_subnets, vector_size)`, identical on every replica by default."""
        step = self.optimizer.iterations
        if self.per_replica_subnets:
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            step = tf.cast(step, tf.int64) * 1_000_003 + tf.cast(replica, tf.int64)
        vectors, _ = self.sampler(step)
        return vectors

    def train_step(self, data):
        self.train_step_traces += 1
        # The same values, computed by a graph built with less Python and with fewer ops (`gradient_tracing`).
        with gradient_tracing.indexed_gradient_walk(), gradient_tracing.direct_cond_intermediates():
            return self._train_step(data)

    def _train_step(self, data):
        images, targets = _unpack(data)
        vectors = self.sample()
        teacher_out = None
        if self.teacher is not None:
            teacher_out = tf.stop_gradient(self.teacher(images, training=False))
        variables = self.supernet.trainable_variables
        if self.subnet_loop:
            total, task_sum, distill_sum, grads = self._looped_gradients(
                images, targets, vectors, teacher_out, variables
            )
        else:
            with tf.GradientTape() as tape:
                total, task_sum, distill_sum = 0.0, 0.0, 0.0
                if self.inplace:
                    out = self.supernet(images, arch=self._largest, training=True)
                    task = self.task_loss(targets, out)
                    total, task_sum = total + task, task_sum + task
                    teacher_out = tf.stop_gradient(out)
                for i in range(self.sampler.num_subnets):
                    total, task_sum, distill_sum = self._add_subnet_loss(
                        images, targets, vectors[i], teacher_out, total, task_sum, distill_sum
                    )
                scaled = self._scaled(total)
            grads = tape.gradient(scaled, variables)
        sparse_update.apply_gradients(
            self.optimizer,
            grads,
            variables,
            self._gated_layers(vectors),
            sparse=self.sparse_updates,
            masks=self._channel_masks(vectors),
            slot_stacks=self._slot_stacks,
        )
        self.loss_tracker.update_state(total)
        self.task_loss_tracker.update_state(task_sum)
        self.distill_loss_tracker.update_state(distill_sum)
        self.loss_square_tracker.update_state(tf.square(total))
        logs = {m.name: m.result() for m in self.metrics[:3]}
        # One sampled path per step (SPOS), so this is the loss's spread across the paths trained
        # this epoch (plus batch-to-batch noise).
        logs["loss_spread"] = tf.sqrt(tf.maximum(self.loss_square_tracker.result() - tf.square(logs["loss"]), 0.0))
        return logs

    def _add_subnet_loss(self, images, targets, vector, teacher_out, total, task_sum, distill_sum):
        out = self.supernet(images, arch=vector, training=True)
        task = self.task_loss(targets, out)
        total, task_sum = total + task, task_sum + task
        if teacher_out is not None and self.distill_weight > 0:
            distill = losses.distillation_loss(out, teacher_out)
            total, distill_sum = total + self.distill_weight * distill, distill_sum + distill
        return total, task_sum, distill_sum

    def _scaled(self, total):
        # Each replica's loss is its local mean; dividing once by the replica count makes the
        # summed (all-reduced) gradient that of the global-batch mean.
        return self.optimizer.scale_loss(total / tf.distribute.get_strategy().num_replicas_in_sync)

    def _looped_gradients(self, images, targets, vectors, teacher_out, variables):
        """The summed gradient of the step's subnets, one subnet per `tf.while_loop` iteration.

        The same sum as one tape over all subnets, but the step's graph holds one copy of the
        supernet instead of `num_subnets` (FairNAS's 13 paths would otherwise take 13x the tracing
        time) and only one path's activations are alive at a time. Without a strategy the sums are
        kept in variables (made by `compile` when no strategy is in scope) that each iteration adds its
        gradients to, so the loop carries a counter and three scalars; under a strategy (a mirrored
        variable cannot hold a per-replica sum) it carries the sums themselves, one loop variable per
        trainable variable. Both add the same gradients in the same order: the same bits.
        """
        zero = tf.constant(0.0)
        accumulators = (
            None if tf.distribute.has_strategy() or self._gradient_sums is None else self._gradient_sums.values
        )

        def body(i, total, task_sum, distill_sum, *carried):
            with tf.GradientTape() as tape:
                loss, task, distill = self._add_subnet_loss(
                    images, targets, tf.gather(vectors, i), teacher_out, zero, zero, zero
                )
                scaled = self._scaled(loss)
            grads = tape.gradient(scaled, variables)
            if accumulators is None:
                carried = [a if g is None else a + tf.cast(g, a.dtype) for a, g in zip(carried[0], grads)]
                carried = (carried,)
            else:
                for a, g in zip(accumulators, grads):
                    if g is not None:  # on the handle: `assign_add` would read the sum back too
                        tf.raw_ops.AssignAddVariableOp(resource=a.handle, value=tf.cast(g, a.dtype))
            return (i + 1, total + loss, task_sum + task, distill_sum + distill, *carried)

        if accumulators is None:
            start = ([tf.zeros(v.shape, v.dtype) for v in variables],)
        else:
            zeros = {}  # one constant per shape
            for a in accumulators:
                key = (tuple(a.shape), a.dtype)
                if key not in zeros:
                    zeros[key] = tf.zeros(a.shape, a.dtype)
                tf.raw_ops.AssignVariableOp(resource=a.handle, value=zeros[key])
            start = ()
        _, total, task_sum, distill_sum, *carried = tf.while_loop(
            lambda i, *_: i < self.sampler.num_subnets,
            body,
            (tf.constant(0), zero, zero, zero, *start),
            parallel_iterations=1,
        )
        if accumulators is None:
            return total, task_sum, distill_sum, carried[0]
        grads = [tf.raw_ops.ReadVariableOp(resource=a.handle, dtype=a.dtype) for a in accumulators]
        return total, task_sum, distill_sum, grads

    def _gated_layers(self, vectors):
        """`(layer, on)` where `on` is true if any subnet of this step (on any replica) ran `layer`."""
        if self.inplace or not self.sparse_updates:
            return []  # in-place: the largest subnet runs every choice; dense: no gates needed
        per_subnet = [self.supernet.gated_layers(vectors[i]) for i in range(self.sampler.num_subnets)]
        layers = [layer for layer, _ in per_subnet[0]]
        ons = tf.stack([tf.stack([on for _, on in gated]) for gated in per_subnet])
        ons = tf.reduce_any(ons, axis=0)
        if self.per_replica_subnets:
            context = tf.distribute.get_replica_context()
            if context is not None and context.num_replicas_in_sync > 1:
                ons = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(ons, tf.int32)) > 0
        return [(layer, ons[i]) for i, layer in enumerate(layers)]

    def _channel_masks(self, vectors):
        """`(variable, mask)`: the entries any subnet of this step (on any replica) read (elastic widths)."""
        if self.inplace or not self.sparse_updates:
            return []  # in-place: the largest subnet reads every channel; dense: no masks needed
        per_subnet = [self.supernet.channel_masks(vectors[i]) for i in range(self.sampler.num_subnets)]
        if not per_subnet[0]:
            return []
        combined = []
        for k, (variable, mask) in enumerate(per_subnet[0]):
            for other in per_subnet[1:]:
                mask = tf.logical_or(mask, other[k][1])
            if self.per_replica_subnets:
                context = tf.distribute.get_replica_context()
                if context is not None and context.num_replicas_in_sync > 1:
                    mask = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(mask, tf.int32)) > 0
            combined.append((variable, mask))
        return combined

    def test_step(self, data):
        images, targets = _unpack(data)
        out = self.supernet(images, arch=self._eval_vector, training=False)
        task = self.task_loss(targets, out)
        self.task_loss_tracker.update_state(task)
        self.loss_tracker.update_state(task)
        _update_task_metrics(self.supernet.task, self.task_metrics, targets, out)
        return {m.name: m.result() for m in [self.loss_tracker, self.task_loss_tracker] + self.task_metrics}

    def predict_step(self, data):
        images, _ = _unpack(data)
        return self.supernet(images, arch=self._eval_vector, training=False)


def _single_step_function(model, step_function):
    """Keras's train or test function (TF backend) for one step per call and no strategy, each call through
    `_Dispatch`."""
    strategy = model.distribute_strategy

    def one_step_on_data(data):
        return strategy.run(step_function, args=(data,))  # (no strategy: nothing for Keras to reduce)

    def one_step_on_iterator(iterator):
        return one_step_on_data(iterator.get_next())  # the end of the data: `OutOfRangeError`, as Keras's

    def compiled(fn):  # as Keras compiles its step: no AutoGraph (and no XLA: `_dispatch_directly`)
        return _Dispatch(tf.function(fn, reduce_retracing=True, autograph=False))

    on_data, on_iterator = compiled(one_step_on_data), compiled(one_step_on_iterator)

    def function(iterator):
        if isinstance(iterator, (tf.data.Iterator, tf.distribute.DistributedIterator)):
            return on_iterator(iterator)
        outputs = None
        for data in iterator:  # `train_on_batch`, `test_on_batch`: one batch
            outputs = on_data(data)
        return outputs

    return function


class _Dispatch:
    """Calls `function` (a `tf.function` of one argument) through the `ConcreteFunction` traced for the
    argument's type specs, skipping `tf.function`'s per-call lookup (see `make_train_function`). A new
    signature goes through `function` itself, which traces or relaxes as it always does."""

    def __init__(self, function):
        self._function = function
        self._concrete = {}

    def __call__(self, argument):
        key = _signature(argument)
        concrete = self._concrete.get(key) if key is not None else None
        if concrete is not None:
            return concrete(argument)
        outputs = self._function(argument)
        if key is not None:
            self._concrete[key] = self._function.get_concrete_function(argument)
        return outputs


def _signature(argument):
    """A hashable key of `argument`'s structure and type specs, or None (a leaf that is not a tensor, an array,
    a composite tensor, None or a Python scalar)."""
    leaves = []
    for leaf in tf.nest.flatten(argument):
        if isinstance(leaf, (tf.Tensor, np.ndarray, tf.__internal__.CompositeTensor)):
            leaves.append(tf.type_spec_from_value(leaf))
        elif leaf is None or isinstance(leaf, (bool, int, float, str)):
            leaves.append((type(leaf), leaf))
        else:
            return None
    return str(tf.nest.map_structure(lambda _: 0, argument)), tuple(leaves)


class _Untracked:
    """Holds variables out of sight of Keras's attribute tracking (and so of its weights and checkpoints)."""

    def __init__(self, values):
        self.values = values


def _unpack(data):
    if isinstance(data, (tuple, list)):
        return data[0], (data[1] if len(data) > 1 else None)
    return data, None


def _task_metrics(task, num_classes):
    if task == "seg":
        return [
            keras.metrics.MeanIoU(num_classes, name="miou", ignore_class=IGNORE_LABEL, sparse_y_pred=False),
            keras.metrics.SparseCategoricalAccuracy(name="pixel_accuracy"),
        ]
    if task == "cls":
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    return []


def _update_task_metrics(task, metrics, targets, out):
    out = tf.cast(out, tf.float32)
    if task == "seg":
        logits = losses.resize_to_labels(out, targets)
        valid = tf.cast(tf.not_equal(targets, IGNORE_LABEL), tf.float32)
        metrics[0].update_state(targets, logits)
        metrics[1].update_state(tf.where(valid > 0, targets, 0), logits, sample_weight=valid)
    elif task == "cls":
        metrics[0].update_state(targets, out)
