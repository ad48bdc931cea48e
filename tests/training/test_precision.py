"""Mixed precision: the trainer trains under mixed_bfloat16 (the GPU policy mixed_float16 is marked gpu).

Measured on this project's CI CPU (AMD EPYC, no AMX / avx512_bf16): a shapes_seg train step took
454-477 ms in mixed_bfloat16 vs 111-147 ms in float32, so float32 stays the CPU default.
"""

import keras
import numpy as np
import pytest

from scalenas_tf.data import pipeline
from scalenas_tf.families.scalenas.samplers import GroupedSampler
from scalenas_tf.families.scalenas.supernet import ScaleNASSupernet
from scalenas_tf.training.trainer import SupernetTrainer
from tests.training.test_trainer import NUM_CLASSES
from tests.training.test_trainer import SIZE
from tests.training.test_trainer import SPACE


@pytest.fixture
def policy(request):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy(previous)


def _fit(steps=3):
    net = ScaleNASSupernet(SPACE, task="seg", num_classes=NUM_CLASSES)
    trainer = SupernetTrainer(net, sampler=GroupedSampler(SPACE, seed=0), teacher="inplace")
    trainer.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    data = pipeline.make_dataset("seg", "train", 4, SIZE, num_examples=16)
    history = trainer.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    return net, trainer, history


@pytest.mark.parametrize(
    "policy", ["mixed_bfloat16", pytest.param("mixed_float16", marks=pytest.mark.gpu)], indirect=True
)
def test_mixed_precision_trains_with_float32_weights(policy):
    net, trainer, history = _fit()
    assert np.isfinite(history.history["loss"]).all()
    assert all(v.dtype == "float32" for v in net.trainable_variables)
    out = net(np.zeros((1, *SIZE, 3), "float32"), arch=SPACE.smallest())
    assert keras.backend.standardize_dtype(out.dtype) == policy.split("_")[1]
    assert trainer.train_step_traces == 1
