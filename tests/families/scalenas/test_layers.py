"""Layer arguments, get_config round trips, and the per-layer extraction invariant."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from scalenas_tf.families.scalenas.basic_block import BasicBlock
from scalenas_tf.families.scalenas.bottleneck import Bottleneck
from scalenas_tf.families.scalenas.fusion import FusionEdge
from scalenas_tf.families.scalenas.fusion import upsample_nearest
from scalenas_tf.families.scalenas.heads import ClassificationHead
from scalenas_tf.families.scalenas.heads import PoseHead
from scalenas_tf.families.scalenas.heads import SegmentationHead
from scalenas_tf.families.scalenas.hr_module import HRModule
from scalenas_tf.families.scalenas.stem import Stem
from scalenas_tf.families.scalenas.transition import Transition

LAYERS = [
    lambda: BasicBlock(8, name="bb"),
    lambda: Bottleneck(8, 4, name="bn"),
    lambda: FusionEdge(2, 0, 32, 8, name="up"),
    lambda: FusionEdge(0, 2, 8, 32, name="down"),
    lambda: FusionEdge(2, 0, 32, 8, upsampling="bilinear", bn_momentum=0.99, name="up_bilinear"),
    lambda: HRModule((8, 16), (2, 3), name="m"),
    lambda: HRModule((8, 16), (2, 3), fusion_upsampling="bilinear", bn_momentum=0.99, name="m_bilinear"),
    lambda: Stem(8, 2, name="stem"),
    lambda: Transition((16,), (8, 16), name="t"),
    lambda: PoseHead((8, 16), 3, name="ph"),
    lambda: SegmentationHead((8, 16), 3, name="sh"),
    lambda: ClassificationHead((8, 16), 3, name="ch"),
]


@pytest.mark.parametrize("make", LAYERS)
def test_get_config_round_trip(make):
    layer = make()
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer)).get_config() == (
        layer.get_config()
    )


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="filters"):
        BasicBlock(0)
    with pytest.raises(ValueError, match="planes"):
        Bottleneck(8, -1)
    with pytest.raises(ValueError, match="source"):
        FusionEdge(1, 1, 8, 8)
    with pytest.raises(ValueError, match="depth_choices"):
        HRModule((8, 16), (3, 2))
    with pytest.raises(ValueError, match="branches"):
        Transition((8, 16), (8,))
    with pytest.raises(ValueError, match="branches"):
        ClassificationHead((8, 16, 32, 64, 128), 3)


@pytest.mark.parametrize("source,target", [(2, 0), (1, 0), (0, 1), (0, 2)])
def test_fusion_edge_maps_resolution_and_width(source, target):
    channels, sizes = (8, 16, 32), ((16, 24), (8, 12), (4, 6))
    edge = FusionEdge(source, target, channels[source], channels[target])
    x = np.random.default_rng(0).normal(size=(2, *sizes[source], channels[source])).astype("float32")
    y = edge(x, target_hw=sizes[target], training=False)
    assert tuple(y.shape) == (2, *sizes[target], channels[target])
    inputs = keras.Input((*sizes[source], channels[source]))
    static = keras.Model(inputs, edge.extract(inputs, sizes[target]))
    np.testing.assert_allclose(static(x, training=False), y, atol=1e-6)


def test_upsampling_crops_odd_sizes():
    """Branch sizes come from ceil(h / 2): upsampling a 4x4 map by 2 must fit a 7x7 target."""
    edge = FusionEdge(1, 0, 16, 8)
    y = edge(np.zeros((1, 4, 4, 16), "float32"), target_hw=(7, 7))
    assert tuple(y.shape) == (1, 7, 7, 8)


# === Fusion upsampling and BN momentum options ===


def torch_bilinear(x, out_hw):
    """PyTorch's `F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False)` on NHWC numpy,
    from its formula: src = (dst + 0.5) * in / out - 0.5, clamped at 0; lerp between floor(src) and
    the next pixel, the last pixel repeated at the edge."""

    def weights(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        frac = src - lo
        m = np.zeros((n_out, n_in))
        np.add.at(m, (np.arange(n_out), lo), 1.0 - frac)
        np.add.at(m, (np.arange(n_out), hi), frac)
        return m

    rows, cols = weights(x.shape[1], out_hw[0]), weights(x.shape[2], out_hw[1])
    return np.einsum("ih,nhwc,jw->nijc", rows, x.astype("float64"), cols)


def test_torch_bilinear_reference_by_hand():
    """The reference itself, on values worked out by hand: 3 -> 5 pixels (scale 0.6)."""
    x = np.array([0.0, 1.0, 2.0]).reshape(1, 1, 3, 1)
    np.testing.assert_allclose(torch_bilinear(x, (1, 5))[0, 0, :, 0], [0.0, 0.4, 1.0, 1.6, 2.0], atol=1e-12)
    x = np.array([0.0, 4.0]).reshape(1, 1, 2, 1)  # 2 -> 4 (factor 2): 0.25 / 0.75 taps, edges clamped
    np.testing.assert_allclose(torch_bilinear(x, (1, 4))[0, 0, :, 0], [0.0, 1.0, 3.0, 4.0], atol=1e-12)


def _identity_edge(source, target, channels, upsampling):
    """A low-to-high edge whose 1x1 conv and BN are the identity, so its output is the resampling alone."""
    edge = FusionEdge(source, target, channels, channels, upsampling=upsampling)
    edge.build((None, None, None, channels))
    edge.convs[0].kernel.assign(np.eye(channels, dtype="float32")[None, None])
    bn = edge.bns[0]
    bn.moving_variance.assign(np.full(channels, 1.0 - bn.epsilon, "float32"))
    return edge


@pytest.mark.parametrize(
    "source, target, in_hw, out_hw",
    [
        (1, 0, (3, 3), (5, 5)),  # odd target: 5 = ceil(5 / 2) * 2 - 1, scale 3/5 (not 1/2)
        (1, 0, (2, 3), (4, 6)),  # an exact factor 2
        (2, 0, (2, 2), (7, 7)),  # factor 4 over two ceil halvings: 7 -> 4 -> 2
        (1, 0, (4, 3), (7, 5)),  # odd and unequal sides
    ],
)
def test_bilinear_fusion_matches_pytorch_align_corners_false(source, target, in_hw, out_hw):
    """Supernet call (eager, and traced with unknown sizes) and the extracted layers resize to the
    target's exact size as PyTorch's bilinear `align_corners=False` does."""
    channels = 3
    edge = _identity_edge(source, target, channels, "bilinear")
    x = np.random.default_rng(0).normal(size=(2, *in_hw, channels)).astype("float32")
    want = torch_bilinear(x, out_hw)

    eager = edge(x, target_hw=out_hw, training=False).numpy()
    traced = tf.function(
        lambda a, hw: edge(a, target_hw=(hw[0], hw[1]), training=False),
        input_signature=[tf.TensorSpec((None, None, None, channels)), tf.TensorSpec((2,), tf.int32)],
    )(tf.constant(x), tf.constant(out_hw, tf.int32)).numpy()
    inputs = keras.Input((*in_hw, channels))
    static = keras.Model(inputs, edge.extract(inputs, out_hw))
    extracted = static(x, training=False).numpy()
    assert any(isinstance(layer, keras.layers.Resizing) for layer in static.layers)
    for got in (eager, traced, extracted):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_default_fusion_is_nearest_repeat_and_crop():
    """The default (no option given) is unchanged: nearest by 2**(k-j), cropped to the target; the
    extracted edge holds UpSampling2D(nearest) and no Resizing."""
    edge = _identity_edge(1, 0, 2, "nearest")
    default = FusionEdge(1, 0, 2, 2)
    assert default.upsampling == "nearest" and default.get_config()["upsampling"] == "nearest"
    assert default.bn_momentum == 0.9 and default.bns[0].momentum == 0.9
    x = np.random.default_rng(1).normal(size=(1, 3, 3, 2)).astype("float32")
    want = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)[:, :5, :5]
    np.testing.assert_allclose(edge(x, target_hw=(5, 5), training=False).numpy(), want, atol=1e-6)
    inputs = keras.Input((3, 3, 2))
    static = keras.Model(inputs, edge.extract(inputs, (5, 5)))
    np.testing.assert_allclose(static(x, training=False).numpy(), want, atol=1e-6)
    kinds = [type(layer).__name__ for layer in static.layers]
    assert "UpSampling2D" in kinds and "Cropping2D" in kinds and "Resizing" not in kinds
    assert static.get_layer(f"{edge.name}_up").interpolation == "nearest"


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_upsample_nearest_is_repeat_on_both_axes(factor):
    """The supernet's nearest upsampling (one tile of a 6-D view) gives exactly `repeat` on height and width,
    cropped, with static and with unknown sizes; its gradient sums each output block back onto its pixel."""
    x = tf.constant(np.random.default_rng(factor).normal(size=(2, 5, 3, 4)).astype("float32"))
    want = np.repeat(np.repeat(x.numpy(), factor, axis=1), factor, axis=2)
    np.testing.assert_array_equal(upsample_nearest(x, factor, (5 * factor, 3 * factor)), want)
    np.testing.assert_array_equal(upsample_nearest(x, factor, (5 * factor - 1, 3 * factor - 2)), want[:, :-1, :-2])

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 4])])
    def dynamic(t):
        return upsample_nearest(t, factor, (tf.shape(t)[1] * factor - 1, tf.shape(t)[2] * factor))

    np.testing.assert_array_equal(dynamic(x), want[:, :-1])
    weights = tf.constant(np.random.default_rng(0).normal(size=want.shape).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(upsample_nearest(x, factor, want.shape[1:3]) * weights)
    blocks = weights.numpy().reshape(2, 5, factor, 3, factor, 4).astype("float64").sum(axis=(2, 4))
    np.testing.assert_allclose(tape.gradient(loss, x), blocks, rtol=1e-5, atol=1e-5)


def test_upsample_nearest_builds_a_small_graph():
    """At static sizes it is 6 graph ops (two repeats built ~60, a fifth of the shapes_seg train graph)."""
    graph = (
        tf.function(lambda t: upsample_nearest(t, 4, (12, 8))).get_concrete_function(tf.TensorSpec([2, 3, 2, 5])).graph
    )
    ops = [op.type for op in graph.get_operations() if op.type not in ("Placeholder", "Identity", "NoOp")]
    assert sorted(ops) == ["Const", "Const", "Const", "Reshape", "Reshape", "Tile"]


def test_extracted_bilinear_edge_keeps_later_batch_norms_in_inference():
    """Resizing's call defaults to training=True, which Keras hands on to the layers after it; the
    extracted edge pins it, so `model(x)` without `training` runs the following BN in inference."""
    edge = _identity_edge(1, 0, 2, "bilinear")
    inputs = keras.Input((3, 3, 2))
    y = keras.layers.BatchNormalization(name="after_bn")(edge.extract(inputs, (5, 5)))
    static = keras.Model(inputs, y)
    x = np.random.default_rng(2).normal(3.0, 1.0, size=(2, 3, 3, 2)).astype("float32")
    np.testing.assert_array_equal(static(x).numpy(), static(x, training=False).numpy())
    assert np.abs(static(x, training=True).numpy() - static(x, training=False).numpy()).max() > 0.1


def test_bn_momentum_reaches_every_batch_norm_of_each_layer():
    layers = [
        BasicBlock(8, bn_momentum=0.99),
        Bottleneck(8, 4, bn_momentum=0.99),
        FusionEdge(0, 2, 8, 32, bn_momentum=0.99),
        HRModule((8, 16), (2, 3), bn_momentum=0.99),
        Stem(8, 2, bn_momentum=0.99),
        Transition((16,), (8, 16, 32), bn_momentum=0.99),
        SegmentationHead((8, 16), 3, bn_momentum=0.99),
        ClassificationHead((8, 16), 3, bn_momentum=0.99),
    ]
    for layer in layers:
        norms = [n for n in layer._flatten_layers(recursive=True) if isinstance(n, keras.layers.BatchNormalization)]
        assert norms, type(layer).__name__
        assert {n.momentum for n in norms} == {0.99}, type(layer).__name__


def test_bad_fusion_options_name_the_argument():
    with pytest.raises(ValueError, match=r"`upsampling` must be one of \['nearest', 'bilinear'\]"):
        FusionEdge(1, 0, 8, 8, upsampling="bicubic")
    with pytest.raises(ValueError, match="upsampling="):
        HRModule((8, 16), (2, 3), fusion_upsampling="area")
    for bad in (1.0, -0.1, "0.9", True, float("nan")):
        with pytest.raises(ValueError, match="bn_momentum="):
            BasicBlock(8, bn_momentum=bad)
