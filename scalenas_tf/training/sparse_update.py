"""Sparse updates: choices a step did not run keep their weights and optimizer slots bit-exactly.

Inside a traced step an unused `tf.cond` branch gets a zero gradient, not `None`, and momentum,
Adam moments and weight decay still move its weights. PyTorch >= 2.0 skips parameters whose
gradient is `None`; TuNAS masks regularization of unused choices for the same reason: decaying
rarely sampled choices biases the search against them.

No optimizer API skips variables per step by a tensor predicate, so this module does it in two ways:

- Fast path, for Keras's own optimizers (SGD, Adam, AdamW, RMSprop, ...) without gradient
  accumulation, EMA or loss scaling: it replays `Optimizer.apply` for the TF backend (unscale,
  clip, all-reduce, weight decay, update, iteration count) with one conditional op per gated
  layer around that layer's decay and update, so unused choices are skipped, not computed. It uses
  the optimizer's per-variable hooks (`_clip_gradients`, `_use_weight_decay`,
  `_all_reduce_sum_gradients`), which Keras's own TF code path calls the same way. The update of
  float32 variables by SGD, Adam and AdamW (without amsgrad) is Keras's arithmetic written on the
  variables' resource handles, with the per-step constants built once (`_update_steps`): ungated variables
  that share a shape are updated stacked (`_update_stacked`), and a gated layer's update is one functional
  `If` op whose branch is a function traced once for every gated layer of the same layout
  (`_gated_update`); any other optimizer's runs through its own `update_step` in a `tf.cond`. With one
  replica and that arithmetic, the conditional ops stay functional `If` ops
  (`graph_options.functional_control_flow`), not lowered into the train function's graph.
- Fallback, for any other optimizer (e.g. `LossScaleOptimizer`): snapshot the gated variables and
  their slots, let the optimizer apply its update, then restore the snapshot where the gate is off.
Under a `tf.distribute` strategy both update per device in cross-replica context.
"""

from __future__ import annotations

import functools
import weakref
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.ops import control_flow_util_v2
from tensorflow.python.ops import gen_functional_ops

from scalenas_tf.training import graph_options


def _tf_variable(v):
    """The `tf.Variable` under a Keras variable (what `strategy.extended.update` takes)."""
    return v.value if isinstance(v, keras.Variable) else v


def slot_map(optimizer, variables):
    """`{id(variable): [slot variables]}`, matched by Keras's slot naming (`{path with _}_{slot}`).

    Keras names a slot after its reference variable's path; the longest matching prefix wins, so
    `conv_kernel_1_momentum` belongs to `conv/kernel_1`, not to `conv/kernel`. Slots that `build_optimizer`
    stacked are not per variable: `SlotStacks.slots_of` gives those.
    """
    by_prefix = {v.path.replace("/", "_") + "_": v for v in variables}
    slots = {id(v): [] for v in variables}
    for slot in optimizer.variables:
        name = slot.name
        for i in range(len(name) - 1, 0, -1):
            if name[i] == "_" and name[: i + 1] in by_prefix:
                ref = by_prefix[name[: i + 1]]
                if tuple(slot.shape) == tuple(ref.shape):
                    slots[id(ref)].append(slot)
                break
    return slots


class SlotGroup(NamedTuple):
    """Variables of one shape whose optimizer slots are stacked: `slots[k][j]` is slot `k` of `variables[j]`."""

    variables: tuple
    slots: tuple
    decays: bool


class SlotStacks:
    """The optimizer slots `build_optimizer` stacked: one variable per slot for each group of same-shape variables.

    Keras's optimizers keep one slot variable per trainable variable and slot, so updating a supernet of 1,986
    variables with Adam reads and assigns 3,972 moment variables one by one each step, and the step's graph
    captures each of them (the full ScaleNAS space: 25.6k top-level graph ops, 7.3k of them the captured
    handles). Stacked, a group of same-shape variables reads and assigns each slot once, with the arithmetic
    `_update_stacked` already ran on their stacked values: the same bits (tested against Keras's `apply`).
    Used where every variable is updated every step (an in-place teacher or dense updates: no gates and no
    channel masks reach a variable), without a distribution strategy.

    Measured on 2 CPU cores (2026-12-04), the full ScaleNAS space (`configs/shapes_seg.py`, modules (1, 4, 3),
    batch 4, in-place teacher): optimizer variables 3,973 -> 147, top-level train graph ops 25.6k -> 14.1k,
    first step 35.7/33.6 -> 30.2/28.5 s, peak RSS 2.42 -> 2.10 GB, and in one process, stepped alternately
    with the same weights, 60 steps: median 401.5 -> 376.2 ms (paired difference -25.0 ms), weights bit-equal.
    `configs/shapes_seg.py` W8: -7.8 ms of 184 ms; W32: -9.6 ms of 502 ms.

    The stacked slots are the optimizer's own variables (`optimizer.add_variable`, after the optimizer was built
    for the other variables), so the optimizer's checkpoints hold them; a checkpoint written with one slot per
    variable does not fit (the trainer says so on load: `stacked_slots=False` resumes it).
    """

    def __init__(self, groups):
        self.groups = tuple(groups)

    def slots_of(self, variable):
        """The slot values of a stacked `variable` (one tensor per slot), or None if its slots are not stacked."""
        for group in self.groups:
            for j, member in enumerate(group.variables):
                if member is variable:
                    return [slot[j] for slot in group.slots]
        return None

    def check_applicable(self, optimizer, variables, gated_layers, masks):
        """Raises a ValueError if this step's update cannot use the stacked slots."""
        if tf.distribute.has_strategy():
            raise ValueError(
                "Optimizer slots stacked by `build_optimizer` are updated without a distribution strategy only; "
                "build the optimizer under the strategy's scope (it then keeps one slot per variable)"
            )
        if not _fast_path_ok(optimizer, variables):
            raise ValueError(
                f"Optimizer {optimizer.name!r} no longer takes the fast update path its slots were stacked for "
                "(gradient accumulation, EMA, a wrapper or a variable constraint): build it with stack=False"
            )
        stacked = {id(v) for group in self.groups for v in group.variables}
        gated = [v.path for layer, _ in gated_layers for v in layer.trainable_variables if id(v) in stacked]
        gated += [v.path for v, _ in masks if id(v) in stacked]
        if gated:
            raise ValueError(
                f"Variables with stacked optimizer slots must be updated every step, but this step gates or masks "
                f"{len(gated)} of them (e.g. {gated[0]}): build the optimizer with stack=False for sparse updates"
            )


_SLOT_STACKS = weakref.WeakKeyDictionary()  # optimizer -> its SlotStacks (a built optimizer is not built again)
_SLOT_NAMES = {"adam": ("momentum", "velocity"), "sgd_momentum": ("momentum",)}


def build_optimizer(optimizer, variables, stack=True):
    """Builds `optimizer` for `variables`; with `stack`, same-shape variables share stacked slots (`SlotStacks`).

    Stacks where the update is this module's arithmetic (Adam/AdamW without amsgrad, SGD with momentum), on
    float32 variables of at most `_STACKED_MAX_ELEMENTS` entries that share their shape and weight decay with
    another, without a distribution strategy. Returns the `SlotStacks` to pass to `apply_gradients`, or None (no
    group, or not stacked). An optimizer built before keeps its variables (and its stacks, if any).
    """
    if optimizer.built:
        return _SLOT_STACKS.get(optimizer)
    kind = _slot_kind(optimizer)
    if not stack or kind is None or tf.distribute.has_strategy() or not _fast_path_ok(optimizer, variables):
        optimizer.build(variables)
        return None

    def decays(v):
        return optimizer.weight_decay is not None and bool(optimizer._use_weight_decay(v))

    by_layout = {}
    for v in variables:
        if v.dtype == "float32" and _small(v):
            by_layout.setdefault((tuple(v.shape), decays(v)), []).append(v)
    members = [(layout, group) for layout, group in by_layout.items() if len(group) > 1]
    stacked = {id(v) for _, group in members for v in group}
    optimizer.build([v for v in variables if id(v) not in stacked])
    groups = []
    for k, ((shape, decay), group) in enumerate(members):
        slots = tuple(
            optimizer.add_variable((len(group), *shape), dtype="float32", name=f"stacked_{k}_{name}")
            for name in _SLOT_NAMES[kind]
        )
        groups.append(SlotGroup(tuple(group), slots, decay))
    if not groups:
        return None
    _SLOT_STACKS[optimizer] = stacks = SlotStacks(groups)
    return stacks


def _slot_kind(optimizer):
    """`"adam"` or `"sgd_momentum"` where the update's slots can be stacked, else None."""
    if _is_plain_adam(optimizer):
        return "adam"
    if type(optimizer) is keras.optimizers.SGD and optimizer.momentum != 0:
        return "sgd_momentum"
    return None


def _small(variable):
    """Whether `variable` is small enough to be updated stacked (`_STACKED_MAX_ELEMENTS`)."""
    return 0 < int(np.prod(variable.shape)) <= _STACKED_MAX_ELEMENTS


def apply_gradients(optimizer, grads, variables, gated_layers, sparse=True, masks=(), slot_stacks=None):
    """Applies `grads` with `optimizer`; with `sparse`, variables of layers whose gate is off stay put.

    Args:
        optimizer: a built `keras.optimizers.Optimizer` (slots must exist before the snapshot).
        grads, variables: lists of the same length (the trainable variables).
        gated_layers: list of `(layer, on)`: `on` a scalar bool tensor, true if this step ran `layer`.
        sparse: bool. `False` is the dense update of the PyTorch 1.x reference code.
        masks: `(variable, mask)` for variables this step used in part (elastic width): entries where
            the bool `mask` (broadcastable to the variable) is false keep their value and optimizer
            slots bit-exactly (snapshotted before the update, restored after it).
        slot_stacks: the `SlotStacks` that `build_optimizer` made for `optimizer`, or None. Its variables are
            updated every step (no gates, no masks), without a distribution strategy.
    """
    if slot_stacks is not None:
        slot_stacks.check_applicable(optimizer, variables, gated_layers if sparse else [], masks if sparse else ())
    # The update's conds stay functional (`graph_options.functional_control_flow`: SCARLET cpu's first call of
    # the train function 70 -> 49 s) where that cannot change a bit: with one replica (with several, one cond
    # updates a mirrored variable's copy on each device, which only a lowered cond can place) and when the update
    # is this module's own arithmetic. Grappler's arithmetic optimizer reassociates `var * decay * lr` into
    # `var * (decay * lr)` in a lowered graph but not inside a function, so Keras's own `update_step` would round
    # differently in a functional cond.
    functional = tf.distribute.get_strategy().num_replicas_in_sync == 1 and _own_update(optimizer)
    with graph_options.functional_control_flow(functional=functional):
        _apply_gradients(optimizer, grads, variables, gated_layers, sparse, masks, functional, slot_stacks)


def _own_update(optimizer):
    """Whether the fast path updates with this module's arithmetic (`_update_steps`), not the optimizer's."""
    return _is_plain_adam(optimizer) or type(optimizer) is keras.optimizers.SGD


def _apply_gradients(optimizer, grads, variables, gated_layers, sparse, masks, functional, slot_stacks):
    if not sparse:
        gated_layers, masks = [], ()
    if any(g is None for g in grads):  # a variable the loss does not reach: Keras skips it too
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        grads, variables = [g for g, _ in pairs], [v for _, v in pairs]
    fast = _fast_path_ok(optimizer, variables)
    if masks and not (fast and _masks_inline(optimizer, variables)):
        masked = _masked_targets(optimizer, variables, masks)
        olds = [tf.identity(_tf_variable(v).read_value()) for v, _ in masked]
        with tf.control_dependencies(olds):
            _apply(optimizer, grads, variables, gated_layers, fast, {}, functional, slot_stacks)
        _restore_where_off([_tf_variable(v) for v, _ in masked], olds, [m for _, m in masked])
    else:
        masks = {id(v): m for v, m in masks}
        _apply(optimizer, grads, variables, gated_layers, fast, masks, functional, slot_stacks)


def _masks_inline(optimizer, variables):
    """Whether the fast path applies channel masks inside the update (Adam/AdamW on float32 weights)."""
    return _is_plain_adam(optimizer) and all(v.dtype == "float32" for v in variables)


def _masked_targets(optimizer, variables, masks):
    """`(variable or slot, mask)` for every masked trainable variable and each of its optimizer slots."""
    trainable = {id(v) for v in variables}
    chosen = [(v, m) for v, m in masks if id(v) in trainable]
    slots = slot_map(optimizer, [v for v, _ in chosen])
    return [(target, m) for v, m in chosen for target in [v] + slots[id(v)]]


def _apply(optimizer, grads, variables, gated_layers, fast, masks, functional, slot_stacks):
    if fast:
        _apply_fast(optimizer, grads, variables, gated_layers, masks, functional, slot_stacks)
    elif not gated_layers:
        optimizer.apply(grads, variables)
    else:
        _apply_with_restore(optimizer, grads, variables, gated_layers)


def _fast_path_ok(optimizer, variables):
    plain = type(optimizer).__module__.startswith("keras.") and not hasattr(optimizer, "inner_optimizer")
    return (
        plain
        and not optimizer.gradient_accumulation_steps
        and not optimizer.use_ema
        and all(v.constraint is None and not v.overwrite_with_gradient for v in variables)
    )


def _apply_fast(optimizer, grads, variables, gated_layers, masks, functional, slot_stacks):
    index = {id(v): i for i, v in enumerate(variables)}
    float_masks = [None if id(v) not in masks else tf.cast(masks[id(v)], v.dtype) for v in variables]
    gated_ids, groups = set(), []
    for layer, on in gated_layers:
        ids = [index[id(v)] for v in layer.trainable_variables if id(v) in index]
        gated_ids.update(ids)
        groups.append((ids, on))
    groups.insert(0, ([i for i in range(len(variables)) if i not in gated_ids], None))

    with keras.name_scope(optimizer.name, caller=optimizer):
        if optimizer.loss_scale_factor is not None:
            grads = [g / optimizer.loss_scale_factor for g in grads]
        grads = optimizer._clip_gradients(grads)
        tf_vars = [_tf_variable(v) for v in variables]
        if tf.distribute.has_strategy():  # the default strategy's all-reduce is one identity op per gradient
            grads_and_vars = optimizer._all_reduce_sum_gradients(list(zip(grads, tf_vars)))
            grads = [g for g, _ in grads_and_vars]
        learning_rate = optimizer.learning_rate
        ons = [on for _, on in groups[1:]]

        def decays(var):
            return optimizer.weight_decay is not None and optimizer._use_weight_decay(var)

        @functools.cache
        def decay_factor():  # as `decay_and_step` writes Keras's `var * decay * lr` (see there)
            return tf.cast(optimizer.weight_decay, tf.float32) * tf.cast(learning_rate, tf.float32)

        update_step, gated_update, stacked_step, slots_step = _update_steps(optimizer, learning_rate, decay_factor)

        def update(strategy, grads, ons, float_masks):
            def decay_and_step(var, grad, lr, mask=None, *, step):
                if decays(var):
                    # Keras writes `var * decay * lr`; grappler computes it as below in any lowered graph (as
                    # Keras's own update runs), but not inside a functional cond: so written as it runs.
                    decay = var * (tf.cast(optimizer.weight_decay, var.dtype) * tf.cast(lr, var.dtype))
                    var.assign_sub(decay if mask is None else mask * decay)
                return step(grad, var, lr) if mask is None else step(grad, var, lr, mask)

            def update_group(ids, step):
                for i in ids:
                    args = (grads[i], learning_rate)
                    if float_masks[i] is not None:
                        args += (strategy.experimental_local_results(float_masks[i])[0],)
                    strategy.extended.update(tf_vars[i], decay_and_step, args=args, kwargs={"step": step}, group=False)
                return tf.constant(True)

            ungated = groups[0][0]
            if stacked_step is not None and not tf.distribute.has_strategy():
                ungated = _update_stacked(
                    (stacked_step, slots_step), ungated, grads, tf_vars, float_masks, decays, decay_factor, slot_stacks
                )
            update_group(ungated, update_step)
            for (ids, _), on in zip(groups[1:], ons):
                on = strategy.experimental_local_results(on)[0]
                if functional and all(_plain_float32(grads[i], tf_vars[i]) for i in ids):
                    layer_masks = [float_masks[i] for i in ids]
                    layer_masks = [m if m is None else strategy.experimental_local_results(m)[0] for m in layer_masks]
                    gated_update(on, [tf_vars[i] for i in ids], [grads[i] for i in ids], layer_masks, decays)
                else:
                    tf.cond(on, lambda ids=ids: update_group(ids, update_step), lambda: tf.constant(False))

        _merge(update, grads, ons, float_masks)
    optimizer.iterations.assign_add(1)


# Stacking copies each group's gradients and slots in and its results out: ~6 more passes over the values, paid
# for by ~10 fewer kernels per variable only while a variable is small. `configs/shapes_seg.py:w32` (in-place
# teacher), interleaved over 8 subnets, stepped 3% slower with every variable stacked (4,102 -> 4,225 ms). With
# stacked slots (`SlotStacks`: no copies of the slots) it still does not pay: W32, 60 steps alternated in one
# process, every variable stacked vs this limit: median 520.7 vs 509.6 ms (paired +8.4 ms; 2026-12-04).
_STACKED_MAX_ELEMENTS = 16384


def _update_stacked(stacked_steps, ids, grads, tf_vars, float_masks, decays, decay_factor, slot_stacks=None):
    """Updates the variables of `ids` that share a shape (and weight decay) with another, stacked; returns the
    rest (masked, not float32, large, or alone in their shape), to be updated one by one.

    With the in-place teacher every variable is updated every step (1,986 in the full ScaleNAS space), and
    written out an Adam update is 20 graph ops per variable, built op by op in Python and run as as many
    small kernels each step. Stacked, the arithmetic is one op per step for a whole group; what stays per
    variable is reading its slots and assigning the results (9 ops per Adam variable, counted by the tests).
    The full space's train graph went from 116.9k to 95.7k ops. Element-wise arithmetic on stacked values
    gives each element the bits it gets alone (tested against Keras's `apply`). With `slot_stacks`
    (`build_optimizer`), a group's slots are already one variable each, read and assigned once per group: what
    stays per variable is its own assign (`SlotStacks`).
    """
    stacked_step, slots_step = stacked_steps
    if slot_stacks is not None:
        ids = _update_slot_stacks(slots_step, ids, grads, tf_vars, decay_factor, slot_stacks)
    groups, rest = {}, []
    for i in ids:
        if _small(tf_vars[i]) and float_masks[i] is None and _plain_float32(grads[i], tf_vars[i]):
            groups.setdefault((tuple(tf_vars[i].shape), decays(tf_vars[i])), []).append(i)
        else:
            rest.append(i)
    for (_, decay), members in groups.items():
        if len(members) < 2:
            rest.extend(members)
            continue
        variables = [tf_vars[i] for i in members]
        if decay:
            _decay_stacked([v.handle for v in variables], decay_factor)
        stacked_step([grads[i] for i in members], variables)
    return sorted(rest)


def _decay_stacked(handles, decay_factor):
    decrement = tf.raw_ops.Mul(x=_stacked_reads(handles), y=decay_factor())
    _assign_each(tf.raw_ops.AssignSubVariableOp, handles, decrement)


def _update_slot_stacks(slots_step, ids, grads, tf_vars, decay_factor, slot_stacks):
    """Updates each group of `slot_stacks` with its stacked slots; returns the `ids` not in a group.

    A member without a gradient (the loss does not reach it) is left alone, as Keras's `apply` leaves it: its
    rows of the stacked slots keep their values (`present`), and it gets no decay and no assign.
    """
    position = {id(v): i for i, v in enumerate(tf_vars)}
    done = set()
    for group in slot_stacks.groups:
        indices = [position.get(id(_tf_variable(v))) for v in group.variables]
        if all(i is None for i in indices):
            continue
        done.update(i for i in indices if i is not None)
        shape = tuple(group.variables[0].shape)
        gradients = [
            tf.zeros(shape) if i is None else tf.cast(tf.convert_to_tensor(grads[i]), tf.float32) for i in indices
        ]
        handles = [None if i is None else tf_vars[i].handle for i in indices]
        present = None
        if any(i is None for i in indices):
            flags = [i is not None for i in indices]
            present = tf.reshape(tf.constant(flags), [len(flags)] + [1] * len(shape))
        if group.decays:
            _decay_stacked([h for h in handles if h is not None], decay_factor)
        slots_step(gradients, handles, [_tf_variable(slot).handle for slot in group.slots], present)
    return [i for i in ids if i not in done]


def _update_steps(optimizer, learning_rate, decay_factor):
    """`(per_variable, gated, stacked)`: the optimizer's `update_step`, traced with less Python and fewer ops.

    `per_variable(grad, var, lr[, mask])` updates one variable with the arithmetic written out.
    `gated(on, vars, grads, masks, decays)` (float32 variables and gradients only) updates a gated layer's
    variables if the scalar bool `on`, with one functional `If` op (`_gated_update`). `stacked(grads, vars)`
    (None for other optimizers) updates several float32 variables of one shape with one op per step of the
    arithmetic on their stacked values, then a read per slot and an assign per variable and slot
    (`_update_stacked`). `decay_factor()`: the weight decay's `decay * lr`, built on first use.

    Keras's `Adam.update_step` recomputes the step count, both beta powers and the step size for every variable
    (~15 scalar graph ops each), and Keras's `Adam` and `SGD` convert each slot variable and Python constant to a
    tensor per use (a variable read through the Keras and `tf.Variable` conversion layers). A supernet's step
    updates hundreds to thousands of variables (shapes_seg: 681, ~5 of its ~25 s trace). Here the per-step scalars
    and constants are computed once and each variable is read and assigned through its resource handle (~3 s);
    the arithmetic on each variable is Keras's, op for op, so the weights and slots follow the same trajectory
    bit for bit (tested; weight decay, applied before this step, is written as grappler rewrites Keras's).
    Other optimizers, Adam with `amsgrad`, and variables that are not float32 use the optimizer's own
    `update_step`.
    """
    if _is_plain_adam(optimizer):
        return _adam_step(optimizer, learning_rate, decay_factor)
    if type(optimizer) is keras.optimizers.SGD:
        return _sgd_step(optimizer, learning_rate, decay_factor)
    return optimizer.update_step, None, None, None


def _plain_float32(gradient, variable):
    """A dense float32 gradient of a float32 variable (the handle path); else the optimizer's own update."""
    return isinstance(gradient, tf.Tensor) and gradient.dtype == tf.float32 and variable.dtype == tf.float32


def _read(handle):
    return tf.raw_ops.ReadVariableOp(resource=handle, dtype=tf.float32)


def _adam_arithmetic(gradient, m, v, alpha, one_minus_beta_1, one_minus_beta_2, epsilon, mask=None):
    """Keras's Adam step on values, op for op: `(m increment, v increment, variable decrement)`.

    Keras adds the increments to the moments, then divides with the new moments; `m + dm` here is the add
    `assign_add` runs, so the bits are Keras's. `mask` (0/1 floats): entries at 0 keep weight and moments
    exactly (x + 0 * d == x); at 1 the update is Keras's bit for bit (1 * d == d). Works on one variable's
    values or on the stacked values of several (`_update_stacked`): element-wise, so the same bits.
    """
    raw = tf.raw_ops

    def masked(delta):
        return delta if mask is None else raw.Mul(x=mask, y=delta)

    dm = masked(raw.Mul(x=raw.Sub(x=gradient, y=m), y=one_minus_beta_1))
    dv = masked(raw.Mul(x=raw.Sub(x=raw.Square(x=gradient), y=v), y=one_minus_beta_2))
    m, v = raw.AddV2(x=m, y=dm), raw.AddV2(x=v, y=dv)
    return dm, dv, masked(raw.RealDiv(x=raw.Mul(x=m, y=alpha), y=raw.AddV2(x=raw.Sqrt(x=v), y=epsilon)))


def _sgd_arithmetic(gradient, m, lr, momentum, nesterov=False):
    """Keras's SGD step with momentum on values, op for op: `(new momentum, variable increment)`."""
    raw = tf.raw_ops
    scaled_gradient = raw.Mul(x=gradient, y=lr)  # Keras computes it twice for Nesterov: the same bits
    m = raw.Sub(x=raw.Mul(x=m, y=momentum), y=scaled_gradient)
    return m, (raw.Sub(x=raw.Mul(x=m, y=momentum), y=scaled_gradient) if nesterov else m)


def _adam_update(variable, m, v, gradient, alpha, one_minus_beta_1, one_minus_beta_2, epsilon, mask=None):
    """Keras's Adam update of one variable, on resource handles (`_adam_arithmetic`)."""
    raw = tf.raw_ops
    dm, dv, step = _adam_arithmetic(
        gradient, _read(m), _read(v), alpha, one_minus_beta_1, one_minus_beta_2, epsilon, mask
    )
    raw.AssignAddVariableOp(resource=m, value=dm)
    raw.AssignAddVariableOp(resource=v, value=dv)
    raw.AssignSubVariableOp(resource=variable, value=step)


def _sgd_plain_update(variable, gradient, lr):
    """Keras's SGD update without momentum of one variable, on its resource handle."""
    tf.raw_ops.AssignSubVariableOp(resource=variable, value=tf.raw_ops.Mul(x=gradient, y=lr))


def _sgd_update(variable, m, gradient, lr, momentum, nesterov=False):
    """Keras's SGD update with momentum of one variable, on resource handles (`_sgd_arithmetic`)."""
    new_m, increment = _sgd_arithmetic(gradient, _read(m), lr, momentum, nesterov)
    tf.raw_ops.AssignVariableOp(resource=m, value=new_m)
    tf.raw_ops.AssignAddVariableOp(resource=variable, value=increment)


def _gated_update(kind, constants, slots, decay_factor):
    """`update(on, variables, grads, masks, decays)`: a gated layer's update as one functional `If` op.

    The `If`'s branches are functions of the variables' and slots' resource handles, the gradients, the masks
    and the per-step constants (`_layout_branches`), traced once per layout: per variable, whether it is
    decayed and masked. Every gated layer of that layout calls the same two functions, so a layer adds one op
    and its inputs to the graph, not a `tf.cond` with two branch graphs of its own (which `cond_v2` builds
    capture by capture, and TF instantiates per layer on the first call that takes it). The branch's
    arithmetic is `_adam_update` / `_sgd_update` op for op: Keras's bits (tested).

    `configs/scarlet.py:cpu` (SPOS, ~2,500 gated variables in 242 gated layers), each form traced once in one
    process and then stepped interleaved over 16 subnets, in two runs with the order swapped (2026-12-03, load
    0.9-1.1): trace 58.1 -> 38.7 s and 40.7 -> 35.7 s, first call 39.3 -> 31.7 s and 35.0 -> 30.4 s, median
    step 158 -> 132 ms and 138 -> 123 ms, the same loss.
    """

    def update(on, variables, grads, masks, decays):
        flags = tuple((bool(decays(v)), m is not None) for v, m in zip(variables, masks))
        then_branch, else_branch = _layout_branches(kind, flags)
        inputs = []
        for variable, grad, mask in zip(variables, grads, masks):
            inputs += [variable.handle, *slots(variable), grad] + ([] if mask is None else [mask])
        inputs += list(constants) + ([decay_factor()] if any(d for d, _ in flags) else [])
        graph = tf.compat.v1.get_default_graph()
        then_branch.add_to_graph(graph)
        else_branch.add_to_graph(graph)
        (done,) = gen_functional_ops._if(on, inputs, [tf.bool], then_branch.name, else_branch.name, output_shapes=[[]])
        control_flow_util_v2.maybe_set_lowering_attr(done.op)  # functional inside `functional_control_flow`

    return update


_NUM_SLOTS = {"adam": 2, "sgd_momentum": 1, "sgd_nesterov": 1, "sgd_plain": 0}
_NUM_CONSTANTS = {"adam": 4, "sgd_momentum": 2, "sgd_nesterov": 2, "sgd_plain": 1}
_HANDLE = tf.TensorSpec([], tf.resource)
_TENSOR = tf.TensorSpec(None, tf.float32)
_SCALAR = tf.TensorSpec([], tf.float32)


@functools.cache
def _layout_branches(kind, flags):
    """The `(then, else)` concrete functions of `_gated_update` for `kind` and `flags` (per variable:
    `(decayed, masked)`), traced once for any shapes. Inputs, per variable: its handle, its slots' handles,
    its gradient and its mask if masked; then the kind's constants and, if any variable is decayed, the
    weight decay's factor."""
    num_slots, num_constants = _NUM_SLOTS[kind], _NUM_CONSTANTS[kind]
    decayed = any(d for d, _ in flags)
    if kind != "adam" and any(m for _, m in flags):
        raise ValueError(f"masked updates are written for Adam only, not for {kind!r}")
    specs = []
    for _, masked in flags:
        specs += [_HANDLE] * (1 + num_slots) + [_TENSOR] * (2 if masked else 1)
    specs += [_SCALAR] * (num_constants + decayed)

    def then(*inputs):
        constants = inputs[len(inputs) - num_constants - decayed :]
        decay_factor = constants[-1] if decayed else None
        constants = constants[:num_constants]
        k = 0
        for decay, masked in flags:
            handle, slots, grad = inputs[k], inputs[k + 1 : k + 1 + num_slots], inputs[k + 1 + num_slots]
            mask = inputs[k + 2 + num_slots] if masked else None
            k += 2 + num_slots + masked
            if decay:  # as `decay_and_step` in `_apply_fast`
                decrement = tf.raw_ops.Mul(x=_read(handle), y=decay_factor)
                tf.raw_ops.AssignSubVariableOp(
                    resource=handle, value=decrement if mask is None else tf.raw_ops.Mul(x=mask, y=decrement)
                )
            if kind == "adam":
                _adam_update(handle, *slots, grad, *constants, mask)
            elif kind == "sgd_plain":
                _sgd_plain_update(handle, grad, *constants)
            else:
                _sgd_update(handle, *slots, grad, *constants, nesterov=kind == "sgd_nesterov")
        return tf.constant(True)

    def otherwise(*inputs):
        return tf.constant(False)

    return tuple(
        tf.function(fn, input_signature=specs, autograph=False).get_concrete_function() for fn in (then, otherwise)
    )


def _adam_step(optimizer, learning_rate, decay_factor):
    ops = keras.ops
    lr = ops.cast(learning_rate, "float32")
    local_step = ops.cast(optimizer.iterations + 1, "float32")
    beta_1_power = ops.power(ops.cast(optimizer.beta_1, "float32"), local_step)
    beta_2_power = ops.power(ops.cast(optimizer.beta_2, "float32"), local_step)
    alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
    # Keras multiplies by the Python floats `1 - beta` and adds `epsilon`: the same float32 constants.
    constants = (
        alpha,
        tf.constant(1 - optimizer.beta_1, tf.float32),
        tf.constant(1 - optimizer.beta_2, tf.float32),
        tf.constant(optimizer.epsilon, tf.float32),
    )

    def moments(variable):
        index = optimizer._get_variable_index(variable)
        return _tf_variable(optimizer._momentums[index]).handle, _tf_variable(optimizer._velocities[index]).handle

    def step(gradient, variable, learning_rate, mask=None):
        if not _plain_float32(gradient, variable):
            return optimizer.update_step(gradient, variable, learning_rate)
        _adam_update(variable.handle, *moments(variable), gradient, *constants, mask)

    def stacked_step(gradients, variables):
        ms, vs = zip(*[moments(v) for v in variables])
        dm, dv, step = _adam_arithmetic(tf.stack(gradients), _stacked_reads(ms), _stacked_reads(vs), *constants)
        _assign_each(tf.raw_ops.AssignAddVariableOp, ms, dm)
        _assign_each(tf.raw_ops.AssignAddVariableOp, vs, dv)
        _assign_each(tf.raw_ops.AssignSubVariableOp, [v.handle for v in variables], step)

    def slots_step(gradients, handles, slots, present):
        m, v = _read(slots[0]), _read(slots[1])
        dm, dv, step = _adam_arithmetic(tf.stack(gradients), m, v, *constants)
        _add_where(slots[0], m, dm, present)
        _add_where(slots[1], v, dv, present)
        _assign_each(tf.raw_ops.AssignSubVariableOp, handles, step)

    return step, _gated_update("adam", constants, moments, decay_factor), stacked_step, slots_step


def _sgd_step(optimizer, learning_rate, decay_factor):
    lr = tf.cast(learning_rate, tf.float32)
    momentum = tf.cast(optimizer.momentum, tf.float32)

    def momentum_of(variable):
        return _tf_variable(optimizer.momentums[optimizer._get_variable_index(variable)]).handle

    def step(gradient, variable, learning_rate):
        if not _plain_float32(gradient, variable):
            return optimizer.update_step(gradient, variable, learning_rate)
        if optimizer.momentum == 0:
            return _sgd_plain_update(variable.handle, gradient, lr)
        _sgd_update(variable.handle, momentum_of(variable), gradient, lr, momentum, optimizer.nesterov)

    def stacked_step(gradients, variables):
        handles = [v.handle for v in variables]
        if optimizer.momentum == 0:
            _assign_each(tf.raw_ops.AssignSubVariableOp, handles, tf.raw_ops.Mul(x=tf.stack(gradients), y=lr))
            return
        ms = [momentum_of(v) for v in variables]
        new_m, increment = _sgd_arithmetic(tf.stack(gradients), _stacked_reads(ms), lr, momentum, optimizer.nesterov)
        _assign_each(tf.raw_ops.AssignVariableOp, ms, new_m)
        _assign_each(tf.raw_ops.AssignAddVariableOp, handles, increment)

    def slots_step(gradients, handles, slots, present):  # with momentum only: plain SGD has no slots
        m = _read(slots[0])
        new_m, increment = _sgd_arithmetic(tf.stack(gradients), m, lr, momentum, optimizer.nesterov)
        tf.raw_ops.AssignVariableOp(resource=slots[0], value=new_m if present is None else tf.where(present, new_m, m))
        _assign_each(tf.raw_ops.AssignAddVariableOp, handles, increment)

    if optimizer.momentum == 0:
        gated = _gated_update("sgd_plain", (lr,), lambda variable: (), decay_factor)
    else:
        kind = "sgd_nesterov" if optimizer.nesterov else "sgd_momentum"
        gated = _gated_update(kind, (lr, momentum), lambda variable: (momentum_of(variable),), decay_factor)
    return step, gated, stacked_step, slots_step


def _stacked_reads(handles):
    return tf.stack([_read(h) for h in handles])


def _assign_each(assign, handles, stacked):
    """`assign(handle, row)` for each handle and row of `stacked` (a None handle: that row is not assigned)."""
    for handle, value in zip(handles, tf.unstack(stacked, num=len(handles))):
        if handle is not None:
            assign(resource=handle, value=value)


def _add_where(handle, old, delta, present):
    """Adds `delta` to the variable of `handle` (whose value is `old`), only in the rows where `present`."""
    if present is None:
        tf.raw_ops.AssignAddVariableOp(resource=handle, value=delta)
    else:  # `old + delta` is the add `AssignAddVariableOp` runs: the same bits
        tf.raw_ops.AssignVariableOp(resource=handle, value=tf.where(present, tf.raw_ops.AddV2(x=old, y=delta), old))


def _is_plain_adam(optimizer):
    return type(optimizer) in (keras.optimizers.Adam, keras.optimizers.AdamW) and not optimizer.amsgrad


def _merge(fn, *args):
    """Runs `fn(strategy, *args)` in cross-replica context, from replica or cross-replica context."""
    context = tf.distribute.get_replica_context()
    if context is None:
        return fn(tf.distribute.get_strategy(), *args)
    return context.merge_call(fn, args=args)


def _apply_with_restore(optimizer, grads, variables, gated_layers):
    trainable = {id(v) for v in variables}
    slots = slot_map(optimizer, variables)
    guarded, gates = [], []
    for layer, on in gated_layers:
        for v in layer.trainable_variables:
            if id(v) in trainable:
                for target in [v] + slots[id(v)]:
                    guarded.append(_tf_variable(target))
                    gates.append(on)
    olds = [tf.identity(v.read_value()) for v in guarded]
    with tf.control_dependencies(olds):
        optimizer.apply(grads, variables)
    _restore_where_off(guarded, olds, gates)


def _restore_where_off(variables, olds, gates):
    def restore(strategy, olds, gates):
        for var, old, on in zip(variables, olds, gates):
            strategy.extended.update(var, _keep_if, args=(old, on), group=False)

    _merge(restore, olds, gates)


def _keep_if(var, old, on):
    return var.assign(tf.where(on, var.read_value(), old))
