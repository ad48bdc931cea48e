"""Layer arguments, get_config round trips, and the per-layer extraction invariant."""

import keras
import numpy as np
import pytest

from scalenas_tf.families.scalenas.basic_block import BasicBlock
from scalenas_tf.families.scalenas.bottleneck import Bottleneck
from scalenas_tf.families.scalenas.fusion import FusionEdge
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
    lambda: HRModule((8, 16), (2, 3), name="m"),
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
