"""Task losses and the distillation loss, as plain functions of (targets, outputs) in float32.

Each returns the mean over the local batch; the trainer scales for `tf.distribute` once.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from scalenas_tf.tasks import IGNORE_LABEL


def segmentation_loss(labels, logits, ignore_label=IGNORE_LABEL):
    """Pixel cross-entropy; logits `(b, h', w', c)` are resized bilinearly to the labels' `(b, h, w)`.

    Pixels labelled `ignore_label` do not count (HRNet's `CrossEntropy(ignore_index=255)`).
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    logits = resize_to_labels(logits, labels)
    valid = tf.not_equal(labels, ignore_label)
    safe = tf.where(valid, labels, tf.zeros_like(labels))
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
    valid = tf.cast(valid, tf.float32)
    return tf.reduce_sum(ce * valid) / tf.maximum(tf.reduce_sum(valid), 1.0)


def resize_to_labels(logits, labels):
    size = tf.shape(labels)[1:3]
    if logits.shape[1:3] == labels.shape[1:3] and logits.shape[1] is not None:
        return logits
    return tf.image.resize(logits, size, method="bilinear")


def pose_loss(targets, heatmaps):
    """HRNet's JointsMSELoss: `0.5 * mean((w * (pred - gt))^2)` with per-joint target weights.

    Args:
        targets: dict with `"heatmaps"` `(b, h, w, k)` and `"target_weight"` `(b, k)`.
        heatmaps: predicted `(b, h, w, k)`.
    """
    pred = tf.cast(heatmaps, tf.float32)
    weight = tf.cast(targets["target_weight"], tf.float32)[:, None, None, :]
    diff = (pred - tf.cast(targets["heatmaps"], tf.float32)) * weight
    return 0.5 * tf.reduce_mean(tf.square(diff))


def classification_loss(labels, logits, label_smoothing=0.1):
    """Softmax cross-entropy with label smoothing (0.1 as in the HRNet ImageNet recipe)."""
    logits = tf.cast(logits, tf.float32)
    one_hot = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(logits)[-1])
    return tf.reduce_mean(
        keras.losses.categorical_crossentropy(one_hot, logits, from_logits=True, label_smoothing=label_smoothing)
    )


def distillation_loss(student, teacher):
    """MSE between student and teacher outputs (logits or heatmaps); the teacher gets no gradient."""
    teacher = tf.stop_gradient(tf.cast(teacher, tf.float32))
    return tf.reduce_mean(tf.square(tf.cast(student, tf.float32) - teacher))


def task_loss(task, **kwargs):
    """The loss function of `task` (`"seg"`, `"pose"` or `"cls"`); kwargs bind its options."""
    losses = {"seg": segmentation_loss, "pose": pose_loss, "cls": classification_loss}
    if task not in losses:
        raise ValueError(f"Unknown task {task!r}. Expected one of {sorted(losses)}")
    fn = losses[task]
    return (lambda y, p: fn(y, p, **kwargs)) if kwargs else fn
