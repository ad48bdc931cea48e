"""The contract every family's supernet honours: what the trainer, sparse updates and BN recalibration use."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from scalenas_tf.arch import ArchError
from scalenas_tf.arch import EncodedArch
from scalenas_tf.layers import common


class Supernet(keras.Model):
    """Base of the weight-sharing supernets: `call(images, arch=None, training=None)` runs any subnet.

    The arch is an int32 vector (`space.to_vector(arch)`), so inside a `tf.function` one trace serves
    every subnet, and only the layers the arch chooses run (`tf.cond` / `tf.switch_case` inside the
    layers); an arch known while tracing (`static_arch`) branches in Python and builds no conds.
    Subclasses set `space`, `task` and `num_classes` in `__init__`, and implement:

    - `call(images, arch=None, training=None)`: the head's output for `arch`.
    - `gated_layers(arch)`: `(layer, on)` for every layer that only some archs run, `on` a scalar
      bool tensor; layers not listed run for every arch. Sparse updates and BN recalibration rely on
      it, in graph, for any arch tensor.
    - `check_arch(vector)`: the vector, with an in-graph assertion that it lies inside the space
      (the message names the module or layer and the bad value).
    - optionally `channel_masks(arch)`: `(variable, mask)` for weights an arch uses only in part
      (elastic width: the leading channels of a max-capacity weight), `mask` a bool tensor
      broadcastable to the variable, false where the arch does not read it (and wherever its layer
      is gated off). Sparse updates leave the false entries, and their optimizer slots, untouched;
      BN recalibration leaves the false moving statistics untouched. Default: none.

    `arch_tensor(arch)` turns `None` (the largest arch), an encoded arch of the space, or an int
    array/tensor into the checked int32 vector.
    """

    space = None

    def arch_tensor(self, arch=None):
        """The checked int32 arch vector for `arch` (None, an arch of the space, or an int array/tensor)."""
        if arch is None:
            return tf.constant(self.space.to_vector(self.space.largest()))
        if isinstance(arch, EncodedArch):
            return tf.constant(self.space.to_vector(arch))
        if isinstance(arch, (dict, str)) or (
            isinstance(arch, (list, tuple)) and not all(isinstance(v, (int, np.integer)) for v in arch)
        ):
            raise ArchError(
                f"`arch` must be None, a {type(self.space.largest()).__name__} or an int vector. "
                f"Received: {type(arch).__name__}"
            )
        try:
            if tf.is_tensor(arch) and arch.dtype.is_integer and arch.dtype != tf.int32:
                # Keras turns an int64 numpy arch into an int64 tensor before `call`; saturating keeps
                # an out-of-range value out of range (then rejected) instead of wrapping it.
                arch = tf.saturate_cast(arch, tf.int32)
            vector = tf.convert_to_tensor(arch, dtype=tf.int32)
        except (TypeError, ValueError) as e:
            raise ArchError(
                f"`arch` must be an int vector of shape ({self.space.vector_size},). Received: {e}"
            ) from None
        if vector.shape.rank != 1 or (vector.shape[0] is not None and vector.shape[0] != self.space.vector_size):
            raise ArchError(
                f"An arch vector has shape ({self.space.vector_size},) for this space. Received: shape={vector.shape}"
            )
        return self.check_arch(vector)

    def static_arch(self, arch=None):
        """The arch vector as a numpy int32 array when it is known while tracing, else None.

        Known: `None` (the largest), an arch of the space, an int list or array, an eager or constant tensor (e.g.
        the in-place teacher's largest arch). A known arch is validated here (`ArchError` naming the module or
        layer and value), and the layers then branch on it in Python, so it traces as a plain graph without
        `tf.cond`. An arch only known when the step runs (a sampled or fed tensor) gives None: use `arch_tensor`.
        """
        if arch is None or isinstance(arch, EncodedArch):
            return np.asarray(self.space.to_vector(arch if arch is not None else self.space.largest()), np.int32)
        if isinstance(arch, (dict, str)):
            return None  # `arch_tensor` explains
        try:
            value = common.static_value(arch)
        except (TypeError, ValueError):
            return None
        if value is None or value.shape != (self.space.vector_size,) or not np.issubdtype(value.dtype, np.integer):
            return None  # unknown, or malformed: `arch_tensor` explains
        self.space.from_vector(value)
        return value.astype(np.int32)

    def check_arch(self, vector):
        """`vector`, asserted to lie inside the space (subclasses add the checks)."""
        return vector

    def gated_layers(self, arch=None):
        raise NotImplementedError(f"{type(self).__name__} must implement gated_layers(arch)")

    def channel_masks(self, arch=None):
        """`(variable, bool mask)` for weights `arch` uses in part; none unless a family slices weights."""
        return []
