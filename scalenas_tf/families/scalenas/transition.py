"""HRNet's transition layer between stages: adapts existing branches and opens new lower-resolution ones."""

import keras

from scalenas_tf.layers import common


@keras.saving.register_keras_serializable(package="scalenas")
class Transition(keras.layers.Layer):
    """Maps `len(in_channels)` branches to `len(out_channels)` branches, as HRNet's `_make_transition_layer`.

    Branch i < len(in_channels): a 3x3 conv + BN + ReLU if the width changes, else identity.
    New branch i: (i + 1 - len(in_channels)) 3x3 stride-2 conv + BN + ReLU from the last input
    branch; the last conv maps to `out_channels[i]`, earlier ones keep the input width.

    Args:
        in_channels: tuple of ints. Input branch widths.
        out_channels: tuple of ints. Output branch widths (at least as many).
        bn_momentum: float. Keras momentum of the BN layers (PyTorch's is `1 - bn_momentum`).

    Call arguments:
        inputs: list of float tensors, one per input branch.
        training: bool.
    """

    def __init__(self, in_channels, out_channels, bn_momentum=common.BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        self.in_channels = tuple(int(c) for c in in_channels)
        self.out_channels = tuple(int(c) for c in out_channels)
        self.bn_momentum = bn_momentum
        if len(self.out_channels) < len(self.in_channels):
            raise ValueError(
                f"A transition cannot drop branches. Received: in_channels={in_channels}, out_channels={out_channels}"
            )
        self.paths = []  # per output branch: list of (conv, bn); empty for identity
        n_in = len(self.in_channels)
        for i, out in enumerate(self.out_channels):
            path = []
            if i < n_in:
                if self.in_channels[i] != out:
                    path.append(
                        (
                            common.conv2d(out, 3, name=f"{self.name}_b{i}_conv0"),
                            common.batch_norm(f"{self.name}_b{i}_bn0", bn_momentum),
                        )
                    )
            else:
                convs = i + 1 - n_in
                for t in range(convs):
                    width = out if t == convs - 1 else self.in_channels[-1]
                    path.append(
                        (
                            common.conv2d(width, 3, strides=2, name=f"{self.name}_b{i}_conv{t}"),
                            common.batch_norm(f"{self.name}_b{i}_bn{t}", bn_momentum),
                        )
                    )
            self.paths.append(path)

    def _source(self, i):
        return min(i, len(self.in_channels) - 1)

    def build(self, input_shape):
        for i, path in enumerate(self.paths):
            channels = self.in_channels[self._source(i)]
            for conv, bn in path:
                conv.build(common.channels_shape(channels))
                channels = conv.filters
                bn.build(common.channels_shape(channels))

    def call(self, inputs, training=None):
        outputs = []
        for i, path in enumerate(self.paths):
            x = inputs[self._source(i)]
            for conv, bn in path:
                x = keras.ops.relu(bn(common.call_padded(conv, x), training=training))
            outputs.append(x)
        return outputs

    def extract(self, xs):
        outputs = []
        for i, path in enumerate(self.paths):
            x = xs[self._source(i)]
            for t, (conv, bn) in enumerate(path):
                x = common.clone_layer(bn, common.clone_padded(conv, x))
                x = keras.layers.ReLU(name=f"{self.name}_b{i}_relu{t}")(x)
            outputs.append(x)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {"in_channels": self.in_channels, "out_channels": self.out_channels, "bn_momentum": self.bn_momentum}
        )
        return config
