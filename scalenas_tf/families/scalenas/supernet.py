"""The ScaleNAS supernet: a keras.Model whose `call(images, arch)` runs any subnet of the space."""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from scalenas_tf import tasks
from scalenas_tf.families.scalenas import heads
from scalenas_tf.families.scalenas.hr_module import HRModule
from scalenas_tf.families.scalenas.space import ScaleNASSpace
from scalenas_tf.families.scalenas.stem import Stem
from scalenas_tf.families.scalenas.transition import Transition
from scalenas_tf.models.supernet import Supernet


@keras.saving.register_keras_serializable(package="scalenas")
class ScaleNASSupernet(Supernet):
    """Weight-sharing supernet over a `ScaleNASSpace`, with a classification, segmentation or pose head.

    The architecture is an int tensor (`ScaleNASSpace.to_vector`), so inside a `tf.function` one
    trace serves every subnet; blocks and fusion edges sit in `tf.cond`, so only the chosen ones run.

    Args:
        space: `ScaleNASSpace` or the dict of its fields.
        task: `"cls"`, `"seg"` or `"pose"`.
        num_classes: int. Classes, or joints for pose.

    Call arguments:
        images: float tensor `(batch, h, w, 3)`.
        arch: `None` (the largest arch), a `ScaleNASArch`, or an int tensor of shape
            `(space.vector_size,)`.
        training: bool.

    Example:
    >>> space = ScaleNASSpace(width=8, num_modules=(1, 1, 1))
    >>> net = ScaleNASSupernet(space, task="seg", num_classes=19)
    >>> net(np.zeros((1, 64, 64, 3), "float32"), arch=space.smallest()).shape
    TensorShape([1, 16, 16, 19])

    Reference:
        Cheng et al., "ScaleNAS: One-Shot Learning of Scale-Aware Representations for Visual
        Recognition", AutoML-Conf 2022.
    """

    def __init__(self, space, task="seg", num_classes=19, **kwargs):
        kwargs.setdefault("name", "scalenas_supernet")
        super().__init__(**kwargs)
        if isinstance(space, dict):
            space = ScaleNASSpace(**space)
        if not isinstance(space, ScaleNASSpace):
            raise TypeError(
                f"`space` must be a ScaleNASSpace or a dict of its fields. Received: {type(space).__name__}"
            )
        tasks.validate_task(task, num_classes)
        self.space = space
        self.task = task
        self.num_classes = num_classes
        channels = space.branch_channels()

        # === Layers ===
        momentum = space.bn_momentum
        self.stem = Stem(space.stem_channels, space.layer1_blocks, momentum, name="stem")
        self.transitions, self.hr_modules = [], []
        prev = (self.stem.out_channels,)
        for stage, module, branches in space.module_layout():
            if module == 0:
                self.transitions.append(Transition(prev, channels[:branches], momentum, name=f"trans{stage}"))
                prev = channels[:branches]
            self.hr_modules.append(
                HRModule(
                    channels[:branches],
                    space.depth_choices,
                    space.fusion_upsampling,
                    momentum,
                    name=f"s{stage}m{module}",
                )
            )
        self.head = heads.make_head(task, channels, num_classes, bn_momentum=momentum)

        # Static slices of the arch vector, one per module.
        self._slices, offset = [], 0
        for _, _, branches in space.module_layout():
            size = space.module_vector_size(branches)
            self._slices.append((offset, offset + size))
            offset += size

    def build(self, input_shape=None):
        self.stem.build((None, None, None, 3))
        for t in self.transitions:
            t.build(None)
        for m in self.hr_modules:
            m.build(None)
        self.head.build(None)
        self.built = True

    def check_arch(self, vector):
        """`vector` with in-graph checks that it lies in the space: its length, each module's depths
        in `depth_choices`, fusion bits 0/1, self bits set below a branch's depth and no bit at or
        beyond it. Eagerly the full validation runs (`ArchError` naming the module and value)."""
        if tf.executing_eagerly():
            self.space.from_vector(vector.numpy())
            return vector
        size = self.space.vector_size
        checks = [
            tf.debugging.assert_equal(tf.size(vector), size, message=f"ScaleNAS arch vector: expected {size} entries")
        ]
        # The per-module checks slice and reshape the vector: only after the length check.
        with tf.control_dependencies(checks):
            vector = tf.identity(vector)
        choices = tf.constant(self.space.depth_choices, tf.int32)
        steps = self.space.max_steps
        for m, ((lo, hi), (_, _, b)) in enumerate(zip(self._slices, self.space.module_layout())):
            depths = vector[lo : lo + b]
            bits = tf.reshape(vector[lo + b : hi], (b, steps, b))
            active = tf.range(steps)[None, :, None] < depths[:, None, None]
            is_self = tf.eye(b, dtype=tf.bool)[:, None, :]
            ok = tf.reduce_all(tf.reduce_any(tf.equal(depths[:, None], choices[None, :]), axis=1))
            ok_bits = tf.reduce_all(
                tf.logical_and(
                    tf.logical_or(tf.equal(bits, 0), tf.equal(bits, 1)),
                    tf.logical_and(
                        tf.logical_or(active, tf.equal(bits, 0)),  # nothing at or beyond a branch's depth
                        tf.logical_or(tf.logical_not(tf.logical_and(active, is_self)), tf.equal(bits, 1)),
                    ),
                )
            )
            where = self.space.module_label(m)
            checks.append(
                tf.debugging.Assert(
                    ok, [f"ScaleNAS arch vector: {where} depths must be in {self.space.depth_choices}; got", depths]
                )
            )
            checks.append(
                tf.debugging.Assert(
                    ok_bits,
                    [
                        f"ScaleNAS arch vector: {where} fusion bits must be canonical 0/1 "
                        "(self bit 1 below a branch's depth, 0 at or beyond it); depths",
                        depths,
                        "bits",
                        bits,
                    ],
                    summarize=4 * b * steps * b,
                )
            )
        with tf.control_dependencies(checks):
            vector = tf.identity(vector)
        vector.set_shape((size,))  # an arch of unknown length (input_signature (None,)) has it now
        return vector

    def features(self, images, arch=None, training=None):
        """The multi-resolution features of the last module (a list, one tensor per branch)."""
        vector = self.static_arch(arch)  # a fixed arch: the modules branch in Python
        if vector is None:
            vector = self.arch_tensor(arch)
            with tf.control_dependencies([vector]):  # nothing (e.g. stem BN statistics) runs before the check
                images = tf.identity(images)
        x = self.stem(images, training=training)
        xs, t = [x], 0
        for (stage, module, _), hr_module, (lo, hi) in zip(self.space.module_layout(), self.hr_modules, self._slices):
            if module == 0:
                xs = self.transitions[t](xs, training=training)
                t += 1
            xs = hr_module(xs, vector[lo:hi], training=training)
        return xs

    def gated_layers(self, arch=None):
        """`(layer, on)` for every block and fusion edge that only some archs run.

        `on` is a scalar bool tensor (true when `arch` runs the layer); layers not listed run for
        every arch. Used by sparse updates and BN recalibration, in graph, for any arch tensor.
        """
        vector = self.arch_tensor(arch)
        gated = []
        for hr_module, (lo, hi) in zip(self.hr_modules, self._slices):
            gated.extend(hr_module.gated_layers(vector[lo:hi]))
        return gated

    def call(self, images, arch=None, training=None):
        return self.head(self.features(images, arch, training=training), training=training)

    def get_config(self):
        config = super().get_config()
        config.update({"space": dataclasses.asdict(self.space), "task": self.task, "num_classes": self.num_classes})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(**config)


def random_arch_vectors(space, num, seed=0, fusion_prob=0.5):
    """`num` random arch vectors (an int32 array `(num, vector_size)`), for tests and benchmarks."""
    rng = np.random.default_rng(seed)
    return np.stack([space.to_vector(space.sample(rng, fusion_prob)) for _ in range(num)])
