"""Task metrics from per-batch sufficient statistics, so that many batches add up exactly.

Each task has a statistic computed in graph per batch (`batch_statistic`) whose sum over batches gives
the metric (`metric_from_statistic`):
  seg:  mIoU from the pixel confusion matrix `[target, prediction]` (pixels labelled `IGNORE_LABEL`
        skipped; logits resized bilinearly to the label size, as the loss does). The mean runs over the
        classes that occur in the targets or the predictions (Keras `MeanIoU`'s convention).
  cls:  top-1 accuracy from (correct, total, correct in the top 5); `metric_details` adds top-5.
  pose: PCK@`PCK_ALPHA` from (correct, visible): a visible keypoint is correct when the argmax of its
        predicted heatmap lies within `PCK_ALPHA` x the heatmap's longer side of the argmax of its
        target heatmap.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from scalenas_tf.tasks import IGNORE_LABEL

METRIC_NAMES = {"seg": "miou", "cls": "top1", "pose": "pck"}
PCK_ALPHA = 0.1


def batch_statistic(task, num_classes, targets, outputs):
    """The additive statistic of one batch (a float64 tensor)."""
    outputs = tf.cast(outputs, tf.float32)
    if task == "seg":
        logits = tf.image.resize(outputs, tf.shape(targets)[1:3], method="bilinear")
        predicted = tf.reshape(tf.argmax(logits, axis=-1, output_type=tf.int32), [-1])
        labels = tf.reshape(tf.cast(targets, tf.int32), [-1])
        keep = tf.not_equal(labels, IGNORE_LABEL)
        matrix = tf.math.confusion_matrix(
            tf.boolean_mask(labels, keep), tf.boolean_mask(predicted, keep), num_classes=num_classes, dtype=tf.float64
        )
        return matrix
    if task == "cls":
        labels = tf.cast(tf.reshape(targets, [-1]), tf.int32)
        correct = tf.reduce_sum(
            tf.cast(tf.equal(tf.argmax(outputs, axis=-1, output_type=tf.int32), labels), tf.float64)
        )
        top5 = tf.math.in_top_k(labels, tf.reshape(outputs, [-1, num_classes]), k=min(5, num_classes))
        return tf.stack([correct, tf.cast(tf.size(labels), tf.float64), tf.reduce_sum(tf.cast(top5, tf.float64))])
    heatmaps, weight = targets["heatmaps"], tf.cast(targets["target_weight"], tf.float64)
    distance = tf.norm(_argmax_2d(outputs) - _argmax_2d(heatmaps), axis=-1)
    limit = PCK_ALPHA * float(max(heatmaps.shape[1], heatmaps.shape[2]))
    correct = tf.cast(distance <= limit, tf.float64) * weight
    return tf.stack([tf.reduce_sum(correct), tf.reduce_sum(weight)])


def _argmax_2d(heatmaps):
    """(b, k, 2) float (y, x) of each map's maximum."""
    shape = tf.shape(heatmaps)
    flat = tf.reshape(tf.transpose(heatmaps, [0, 3, 1, 2]), [shape[0], shape[3], -1])
    index = tf.argmax(flat, axis=-1, output_type=tf.int32)
    return tf.cast(tf.stack([index // shape[2], index % shape[2]], axis=-1), tf.float32)


def metric_from_statistic(task, statistic) -> float:
    statistic = np.asarray(statistic, dtype=np.float64)
    if task == "seg":
        true_positive = np.diag(statistic)
        union = statistic.sum(axis=0) + statistic.sum(axis=1) - true_positive
        present = union > 0
        return float(np.mean(true_positive[present] / union[present])) if present.any() else 0.0
    correct, total = statistic[:2]
    return float(correct / total) if total > 0 else 0.0


def metric_details(task, statistic) -> dict[str, float]:
    """Every metric the statistic gives: `{"miou", "pixel_accuracy"}` (seg), `{"top1", "top5"}` (cls),
    `{"pck"}` (pose)."""
    statistic = np.asarray(statistic, dtype=np.float64)
    details = {METRIC_NAMES[task]: metric_from_statistic(task, statistic)}
    if task == "seg":
        total = statistic.sum()
        details["pixel_accuracy"] = float(np.trace(statistic) / total) if total > 0 else 0.0
    elif task == "cls":
        details["top5"] = float(statistic[2] / statistic[1]) if statistic[1] > 0 else 0.0
    return details


def constant_statistic(task, num_classes, targets, constant):
    """The statistic of a predictor that ignores the image and outputs `constant` (a class for seg and
    cls, a heatmap position `(y, x)` for pose), as numpy."""
    if task == "seg":
        labels = np.asarray(targets).reshape(-1)
        labels = labels[labels != IGNORE_LABEL]
        matrix = np.zeros((num_classes, num_classes))
        np.add.at(matrix, (labels, np.full_like(labels, constant)), 1.0)
        return matrix
    if task == "cls":
        labels = np.asarray(targets).reshape(-1)
        correct = np.sum(labels == constant)
        return np.array([correct, labels.size, correct], dtype=np.float64)  # a constant has one guess
    heatmaps = np.asarray(targets["heatmaps"])
    weight = np.asarray(targets["target_weight"], dtype=np.float64)
    truth = _argmax_2d(tf.constant(heatmaps)).numpy()
    distance = np.linalg.norm(truth - np.asarray(constant, dtype=np.float32), axis=-1)
    limit = PCK_ALPHA * float(max(heatmaps.shape[1], heatmaps.shape[2]))
    return np.array([np.sum((distance <= limit) * weight), np.sum(weight)])
