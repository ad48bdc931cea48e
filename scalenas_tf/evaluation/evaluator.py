"""`SubnetEvaluator`: arch -> BN recalibration -> task metric on fixed validation batches.

Every arch sees the same calibration batches and the same validation batches (held in memory), so
metrics are comparable and deterministic; one traced function computes the metric of every arch (the
arch is a tensor argument), and results are cached by the arch's hash.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import tensorflow as tf

from scalenas_tf.evaluation import metrics
from scalenas_tf.training.bn_calibration import BatchNormCalibrator


def take_batches(dataset, num_batches: int, name: str = "dataset") -> list:
    """The first `num_batches` `(images, targets)` batches of `dataset`, as tensors in memory."""
    if int(num_batches) < 1:
        raise ValueError(f"`num_batches` for {name} must be >= 1. Received: {num_batches}")
    batches = []
    for batch in dataset:
        batches.append(batch)
        if len(batches) == int(num_batches):
            break
    if not batches:
        raise ValueError(f"{name} yielded no batches")
    return batches


class SubnetEvaluator:
    """Scores archs of one trained supernet.

    Args:
        supernet: a `Supernet` of any family with trained weights. Its BN statistics are recalibrated in
            place for each arch (the statistics of layers an arch does not run are left as they are).
        calibration_batches: list of `(images, targets)` (training data) for BN recalibration.
        validation_batches: list of `(images, targets)` for the metric.
        recalibrate: bool. False skips BN recalibration (for ablations; metrics then use the
            supernet's shared statistics, which are right for no single arch).
        keypoint_ground_truth: for pose, a COCO-format ground truth (dict or path): the metric is then
            COCO keypoint AP (`evaluation.keypoints.evaluate_coco`, HRNet's validation) instead of PCK,
            and the validation targets must carry `transform` and `image_id`.
        flip_pairs: with `keypoint_ground_truth`, the joints' left/right pairs for the flip test (the
            mirrored crops are scored too and averaged); None skips it.

    Example:
    >>> evaluator = SubnetEvaluator(supernet, take_batches(train, 4), take_batches(val, 8))
    >>> evaluator(space.largest())["metric"]
    0.41
    """

    def __init__(
        self,
        supernet,
        calibration_batches,
        validation_batches,
        recalibrate=True,
        keypoint_ground_truth=None,
        flip_pairs=None,
    ):
        self.supernet = supernet
        self.task = supernet.task
        self.num_classes = supernet.num_classes
        if keypoint_ground_truth is not None and self.task != "pose":
            raise ValueError(f"`keypoint_ground_truth` scores pose models. Received: task={self.task!r}")
        self.keypoint_ground_truth = keypoint_ground_truth
        self.flip_pairs = None if flip_pairs is None else tuple(tuple(p) for p in flip_pairs)
        self.metric_name = "coco_ap" if keypoint_ground_truth is not None else metrics.METRIC_NAMES[self.task]
        self.calibration_batches = list(calibration_batches)
        self.validation_batches = list(validation_batches)
        if not self.validation_batches:
            raise ValueError("SubnetEvaluator needs at least one validation batch")
        if recalibrate and not self.calibration_batches:
            raise ValueError("SubnetEvaluator needs at least one calibration batch to recalibrate BN")
        self.recalibrate = recalibrate
        self._calibrator = BatchNormCalibrator(supernet) if recalibrate else None
        self._cache: dict[str, dict[str, Any]] = {}
        # No autograph, as Keras traces `train_step`: the supernets branch with explicit `tf.cond`, so
        # converting every function the trace calls is Python work for nothing.
        self._statistic = tf.function(self._batch_statistic, reduce_retracing=True, autograph=False)
        self._predict = tf.function(self._outputs, reduce_retracing=True, autograph=False)

    def _outputs(self, images, vector):
        return self.supernet(images, arch=vector, training=False)

    def _batch_statistic(self, images, targets, vector):
        outputs = self.supernet(images, arch=vector, training=False)
        return metrics.batch_statistic(self.task, self.num_classes, targets, outputs)

    @property
    def statistic_function(self):
        """The traced metric function `(images, targets, arch_vector) -> statistic` (one trace for every arch)."""
        return self._statistic

    @property
    def trace_count(self) -> int:
        """Traces of the metric function so far (1 after any number of archs with same-shape batches)."""
        return int(self._statistic.experimental_get_tracing_count())

    def __call__(self, arch) -> dict[str, Any]:
        """`{"metric", "metric_name", "details", "seconds"}` for `arch` (cached by `arch.hash()`); `details`
        holds every metric of the task (`metrics.metric_details`, e.g. top-1 and top-5)."""
        key = arch.hash()
        if key in self._cache:
            return dict(self._cache[key])
        start = time.perf_counter()
        if self._calibrator is not None:
            self._calibrator(arch, self.calibration_batches, len(self.calibration_batches))
        vector = tf.constant(self.supernet.space.to_vector(arch), tf.int32)
        if self.keypoint_ground_truth is not None:
            from scalenas_tf.evaluation import keypoints

            stats = keypoints.evaluate_coco(
                lambda images: self._predict(images, vector).numpy(),
                self.validation_batches,
                self.keypoint_ground_truth,
                flip_pairs=self.flip_pairs,
            )
            metric, details = stats["AP"], stats
        else:
            total = None
            for images, targets in self.validation_batches:
                statistic = self._statistic(images, targets, vector).numpy()
                total = statistic if total is None else total + statistic
            metric, details = metrics.metric_from_statistic(self.task, total), metrics.metric_details(self.task, total)
        result = {
            "metric": metric,
            "metric_name": self.metric_name,
            "details": details,
            "seconds": round(time.perf_counter() - start, 4),
        }
        self._cache[key] = result
        return dict(result)

    def constant_baseline(self) -> dict[str, Any]:
        """The metric of an image-blind predictor: the most frequent calibration (training) class for
        seg and cls, the heatmap centre for pose. What a trained subnet must beat."""
        if self.keypoint_ground_truth is not None:
            from scalenas_tf.evaluation import keypoints

            def centre_peaks(images):
                shape = self.validation_batches[0][1]["heatmaps"].shape
                maps = np.zeros((len(images), *shape[1:]), np.float32)
                maps[:, (shape[1] - 1) // 2, (shape[2] - 1) // 2, :] = 1.0
                return maps

            stats = keypoints.evaluate_coco(centre_peaks, self.validation_batches, self.keypoint_ground_truth)
            return {"metric": stats["AP"], "metric_name": self.metric_name, "constant": "heatmap centre"}
        if self.task == "pose":
            heatmaps = self.validation_batches[0][1]["heatmaps"]
            constant = ((heatmaps.shape[1] - 1) / 2.0, (heatmaps.shape[2] - 1) / 2.0)
        else:
            source = self.calibration_batches or self.validation_batches
            labels = np.concatenate([np.asarray(t).reshape(-1) for _, t in source])
            labels = labels[labels != metrics.IGNORE_LABEL]
            constant = int(np.bincount(labels, minlength=self.num_classes).argmax())
        total = sum(
            metrics.constant_statistic(self.task, self.num_classes, t, constant) for _, t in self.validation_batches
        )
        return {
            "metric": metrics.metric_from_statistic(self.task, total),
            "metric_name": self.metric_name,
            "constant": constant,
        }


def make_evaluator(experiment, supernet) -> SubnetEvaluator:
    """A `SubnetEvaluator` on the experiment's calibration (train split) and validation batches."""
    from scalenas_tf.data import pipeline

    search, data, model = experiment.require("search"), experiment.require("data"), experiment.model
    calibration = pipeline.make_dataset(
        model.task,
        "train",
        search.calibration_batch_size,
        model.input_size,
        source=data.source,
        seed=experiment.seed,
        shuffle=False,
        repeat=False,
        drop_remainder=True,
        num_examples=search.calibration_batches * search.calibration_batch_size,
        source_kwargs=data.source_kwargs,
    )
    source = pipeline.SOURCES[data.source]
    coco = model.task == "pose" and source.ground_truth is not None
    validation = pipeline.make_dataset(
        model.task,
        "validation",
        search.batch_size,
        model.input_size,
        source=data.source,
        seed=experiment.seed,
        num_examples=search.validation_examples,
        source_kwargs=data.source_kwargs,
        pose_fields=source.pose_fields if coco else (),
    )
    return SubnetEvaluator(
        supernet,
        take_batches(calibration, search.calibration_batches, "calibration data"),
        take_batches(validation, -(-search.validation_examples // search.batch_size), "validation data"),
        recalibrate=search.recalibrate,
        keypoint_ground_truth=source.ground_truth("validation", **data.source_kwargs) if coco else None,
        flip_pairs=source.flip_pairs if coco else None,
    )
