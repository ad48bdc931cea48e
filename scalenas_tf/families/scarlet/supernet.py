"""The SCARLET supernet: a keras.Model whose `call(images, arch)` runs any single path of the space."""

import dataclasses

import keras
import tensorflow as tf

from scalenas_tf import tasks
from scalenas_tf.families.scarlet.choice_layer import ChoiceLayer
from scalenas_tf.families.scarlet.space import ScarletSpace
from scalenas_tf.layers import common
from scalenas_tf.models.supernet import Supernet


@keras.saving.register_keras_serializable(package="scalenas")
class ScarletSupernet(Supernet):
    """Weight-sharing supernet over a `ScarletSpace`: stem, separable conv, one `ChoiceLayer` per
    searchable layer, head (1x1 conv, pool, dense).

    The arch is an int tensor `(num_layers,)` of indices into `space.choice_names`; each layer picks
    its op with a chain of two-way `tf.cond`s (`ChoiceLayer`), so one trace serves every path and only
    the chosen op runs.

    Args:
        space: `ScarletSpace` or the dict of its fields.
        task: `"cls"` (the only task of this space).
        num_classes: int.

    Call arguments:
        images: float tensor `(batch, h, w, 3)`.
        arch: `None` (the largest arch), a `ScarletArch`, or an int tensor `(space.vector_size,)`.
        training: bool.

    Example:
    >>> net = ScarletSupernet(ScarletSpace(), num_classes=1000)
    >>> net(np.zeros((1, 224, 224, 3), "float32"), arch=net.space.named("scarlet_a")).shape
    TensorShape([1, 1000])

    Reference:
        Chu et al., "SCARLET-NAS: Bridging the Gap between Stability and Scalability in Weight-sharing
        Neural Architecture Search", ICCV-W 2021.
    """

    def __init__(self, space, task="cls", num_classes=1000, **kwargs):
        kwargs.setdefault("name", "scarlet_supernet")
        super().__init__(**kwargs)
        if isinstance(space, dict):
            space = ScarletSpace(**space)
        if not isinstance(space, ScarletSpace):
            raise TypeError(f"`space` must be a ScarletSpace or a dict of its fields. Received: {type(space).__name__}")
        tasks.validate_task(task, num_classes)
        if task != "cls":
            raise ValueError(f"The SCARLET space is for classification: `task` must be 'cls'. Received: task={task!r}")
        self.space, self.task, self.num_classes = space, task, num_classes
        names = space.choice_names

        # === Layers ===
        self.stem_conv = common.conv2d(space.stem_channels, 3, strides=2, name="stem_conv")
        self.stem_bn = common.batch_norm("stem_bn")
        self.sep_dw = common.depthwise(3, 1, name="sep_dw")
        self.sep_dw_bn = common.batch_norm("sep_dw_bn")
        self.sep_pw = common.conv2d(space.first_channels, 1, name="sep_pw")
        self.sep_pw_bn = common.batch_norm("sep_pw_bn")
        self.choice_layers = [
            ChoiceLayer(
                space.in_channels(i),
                space.channels[i],
                space.strides[i],
                space.layer_choices(i),
                [names.index(c) for c in space.layer_choices(i)],
                space.activation,
                space.identity_op,
                name=f"l{i:02d}",
            )
            for i in range(space.num_layers)
        ]
        self.head_conv = common.conv2d(space.head_channels, 1, name="head_conv")
        self.head_bn = common.batch_norm("head_bn")
        self.classifier = keras.layers.Dense(num_classes, name="classifier")

    def build(self, input_shape=None):
        s = self.space
        self.stem_conv.build((None, None, None, 3))
        self.stem_bn.build(common.channels_shape(s.stem_channels))
        self.sep_dw.build(common.channels_shape(s.stem_channels))
        self.sep_dw_bn.build(common.channels_shape(s.stem_channels))
        self.sep_pw.build(common.channels_shape(s.stem_channels))
        self.sep_pw_bn.build(common.channels_shape(s.first_channels))
        for layer in self.choice_layers:
            layer.build(None)
        self.head_conv.build(common.channels_shape(s.channels[-1]))
        self.head_bn.build(common.channels_shape(s.head_channels))
        self.classifier.build((None, s.head_channels))
        self.built = True

    def check_arch(self, vector):
        """`vector` with an in-graph check that every layer's choice id is one the layer offers
        (e.g. no identity at a stride-2 layer unless the space offers it there). Eagerly the full
        validation runs (`ArchError` naming the layer and value)."""
        if tf.executing_eagerly():
            self.space.from_vector(vector.numpy())
            return vector
        space = self.space
        names = space.choice_names
        allowed = [[names.index(c) for c in space.layer_choices(i)] for i in range(space.num_layers)]
        width = max(len(a) for a in allowed)
        table = tf.constant([a + [-1] * (width - len(a)) for a in allowed], tf.int32)
        size_ok = tf.debugging.assert_equal(
            tf.size(vector), space.vector_size, message=f"SCARLET arch vector: expected {space.vector_size} entries"
        )
        with tf.control_dependencies([size_ok]):
            ok = tf.reduce_any(tf.equal(tf.reshape(vector, (-1, 1)), table), axis=1)
            bad = tf.where(tf.logical_not(ok))[:, 0]
            check = tf.debugging.Assert(
                tf.reduce_all(ok),
                [
                    f"SCARLET arch vector: a choice id a layer does not offer (ids index {list(names)}); bad layers",
                    bad,
                    "ids",
                    tf.gather(vector, bad),
                ],
                summarize=space.num_layers,
            )
        with tf.control_dependencies([check]):
            return tf.identity(vector)

    def stem(self, images, training=None):
        x = keras.ops.relu6(self.stem_bn(common.call_padded(self.stem_conv, images), training=training))
        x = keras.ops.relu6(self.sep_dw_bn(self.sep_dw(x), training=training))
        return self.sep_pw_bn(self.sep_pw(x), training=training)

    def features(self, images, arch=None, training=None):
        """The last searchable layer's output `(batch, h/32, w/32, channels[-1])`."""
        vector = self.static_arch(arch)  # a fixed arch: the modules branch in Python
        if vector is None:
            vector = self.arch_tensor(arch)
            with tf.control_dependencies([vector]):  # nothing (e.g. stem BN statistics) runs before the check
                images = tf.identity(images)
        x = self.stem(images, training=training)
        for i, layer in enumerate(self.choice_layers):
            x = layer(x, vector[i], training=training)
        return x

    def call(self, images, arch=None, training=None):
        x = self.features(images, arch, training=training)
        x = keras.ops.relu6(self.head_bn(self.head_conv(x), training=training))
        return self.classifier(keras.ops.mean(x, axis=(1, 2)))

    def gated_layers(self, arch=None):
        """`(op, on)` for every choice op with weights; `on` is a scalar bool tensor, true when `arch`
        runs it. Stem and head run for every arch and are not listed."""
        vector = self.arch_tensor(arch)
        gated = []
        for i, layer in enumerate(self.choice_layers):
            gated.extend(layer.gated_layers(vector[i]))
        return gated

    def get_config(self):
        config = super().get_config()
        config.update({"space": dataclasses.asdict(self.space), "task": self.task, "num_classes": self.num_classes})
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**dict(config))
