"""Task metrics from summed batch statistics, and SubnetEvaluator on a tiny supernet."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from scalenas_tf.data.pipeline import make_dataset
from scalenas_tf.evaluation import metrics
from scalenas_tf.evaluation.evaluator import SubnetEvaluator
from scalenas_tf.evaluation.evaluator import take_batches
from scalenas_tf.families.scalenas.space import ScaleNASSpace
from scalenas_tf.families.scalenas.supernet import ScaleNASSupernet
from scalenas_tf.tasks import IGNORE_LABEL

SPACE = ScaleNASSpace(
    width=4, depth_choices=(1, 2), num_modules=(1,), num_branches=(2,), stem_channels=8, layer1_blocks=1
)


def test_miou_from_summed_confusion_matrices_equals_keras_mean_iou():
    rng = np.random.default_rng(0)
    keras_miou = keras.metrics.MeanIoU(5, ignore_class=IGNORE_LABEL, sparse_y_pred=False)
    total = 0
    for _ in range(3):
        labels = rng.integers(0, 4, size=(2, 8, 8)).astype(np.int32)  # class 4 never occurs
        labels[0, 0, :3] = IGNORE_LABEL
        logits = rng.normal(size=(2, 8, 8, 5)).astype(np.float32)
        logits[..., 4] -= 10.0  # ... and is never predicted: left out of the mean, as Keras does
        total = total + metrics.batch_statistic("seg", 5, tf.constant(labels), tf.constant(logits)).numpy()
        keras_miou.update_state(labels, logits)
    assert metrics.metric_from_statistic("seg", total) == pytest.approx(float(keras_miou.result()), abs=1e-6)


def test_seg_logits_are_resized_to_the_labels():
    labels = np.zeros((1, 8, 8), np.int32)
    labels[0, 4:, :] = 1
    logits = np.zeros((1, 2, 2, 2), np.float32)
    logits[0, 0, :, 0] = 5.0  # the upper half says class 0 ...
    logits[0, 1, :, 1] = 5.0  # ... the lower half class 1: bilinear upsampling splits them at row 4
    stat = metrics.batch_statistic("seg", 2, tf.constant(labels), tf.constant(logits)).numpy()
    np.testing.assert_array_equal(stat, [[32, 0], [0, 32]])
    assert metrics.metric_from_statistic("seg", stat) == 1.0


def test_top1_and_pck():
    stat = metrics.batch_statistic("cls", 3, tf.constant([0, 1, 2, 2]), tf.one_hot([0, 1, 1, 2], 3)).numpy()
    assert metrics.metric_from_statistic("cls", stat) == 0.75
    heat = np.zeros((1, 16, 16, 2), np.float32)
    heat[0, 3, 4, 0] = heat[0, 10, 10, 1] = 1.0
    targets = {"heatmaps": tf.constant(heat), "target_weight": tf.constant([[1.0, 1.0]])}
    pred = np.zeros_like(heat)
    pred[0, 4, 4, 0] = 1.0  # 1 pixel off: within 0.1 x 16
    pred[0, 0, 0, 1] = 1.0  # far off
    stat = metrics.batch_statistic("pose", 2, targets, tf.constant(pred)).numpy()
    assert metrics.metric_from_statistic("pose", stat) == 0.5
    # An invisible keypoint does not count.
    targets["target_weight"] = tf.constant([[1.0, 0.0]])
    stat = metrics.batch_statistic("pose", 2, targets, tf.constant(pred)).numpy()
    assert metrics.metric_from_statistic("pose", stat) == 1.0


def test_constant_baseline_statistic():
    labels = np.array([[0, 0, 0, 1]], np.int32)
    stat = metrics.constant_statistic("seg", 2, labels, 0)
    # Class 0: 3 hits / 4 union; class 1: 0 / 1.
    assert metrics.metric_from_statistic("seg", stat) == pytest.approx((3 / 4 + 0) / 2)


@pytest.fixture(scope="module")
def evaluator_setup():
    keras.utils.set_random_seed(0)
    supernet = ScaleNASSupernet(SPACE, task="seg", num_classes=5)
    supernet.build((None, None, None, 3))
    train = make_dataset("seg", "train", 8, (16, 16), num_examples=16, shuffle=False, repeat=False)
    val = make_dataset("seg", "validation", 8, (16, 16), num_examples=16)
    return supernet, take_batches(train, 2), take_batches(val, 2)


def _random_archs(n, seed=0):
    rng = np.random.default_rng(seed)
    return [SPACE.sample(rng, fusion_prob=0.5) for _ in range(n)]


def test_evaluator_traces_once_caches_and_is_order_independent(evaluator_setup):
    supernet, calibration, validation = evaluator_setup
    archs = _random_archs(6) + [SPACE.largest(), SPACE.smallest()]
    first = SubnetEvaluator(supernet, calibration, validation)
    forward = {a.hash(): first(a)["metric"] for a in archs}
    assert first.trace_count == 1
    assert first(archs[0])["metric"] == forward[archs[0].hash()]  # cached
    # A fresh evaluator in reverse order gives identical metrics: each arch's BN statistics are
    # recomputed from the same batches, whatever ran before.
    second = SubnetEvaluator(supernet, calibration, validation)
    for arch in reversed(archs):
        assert second(arch)["metric"] == forward[arch.hash()]
    assert all(0.0 <= m <= 1.0 for m in forward.values())


def test_evaluator_metric_equals_the_extracted_model_after_recalibration(evaluator_setup):
    from scalenas_tf.models.extraction import extract_subnet

    supernet, calibration, validation = evaluator_setup
    evaluator = SubnetEvaluator(supernet, calibration, validation)
    arch = _random_archs(1, seed=5)[0]
    result = evaluator(arch)
    static = extract_subnet(supernet, arch, (16, 16))
    total = sum(metrics.batch_statistic("seg", 5, t, static(x, training=False)).numpy() for x, t in validation)
    assert metrics.metric_from_statistic("seg", total) == pytest.approx(result["metric"], abs=1e-6)
    baseline = evaluator.constant_baseline()
    assert baseline["constant"] == 0 and 0.0 < baseline["metric"] < 1.0


def test_take_batches_errors():
    with pytest.raises(ValueError, match="num_batches"):
        take_batches([], 0)
    with pytest.raises(ValueError, match="no batches"):
        take_batches([], 2, "calibration data")


def test_top5_and_details_match_keras_metrics():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 12)).astype(np.float32)
    labels = rng.integers(0, 12, size=40)
    stat = metrics.batch_statistic("cls", 12, tf.constant(labels), tf.constant(logits)).numpy()
    top1 = keras.metrics.SparseCategoricalAccuracy()
    top1.update_state(labels, logits)
    top5 = keras.metrics.SparseTopKCategoricalAccuracy(k=5)
    top5.update_state(labels, logits)
    details = metrics.metric_details("cls", stat)
    assert details["top1"] == pytest.approx(float(top1.result()), abs=1e-6)
    assert details["top5"] == pytest.approx(float(top5.result()), abs=1e-6)
    assert 0 < details["top1"] < details["top5"] < 1
    # Seg: pixel accuracy from the same confusion matrix.
    seg = metrics.batch_statistic("seg", 2, tf.constant([[[0, 1], [1, 255]]]), tf.one_hot([[[0, 0], [1, 1]]], 2))
    assert metrics.metric_details("seg", seg.numpy())["pixel_accuracy"] == pytest.approx(2 / 3)
