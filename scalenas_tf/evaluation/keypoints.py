"""COCO keypoint evaluation of top-down heatmaps: decoding, flip test, image coordinates, OKS AP.

The steps of HRNet's validation (lib/core/function.py, lib/core/inference.py):
  1. `flip_heatmaps`: the flip test averages the heatmaps of a crop and of its mirror image, the latter
     mirrored back with left and right joints swapped and shifted one pixel right (HRNet's
     `SHIFT_HEATMAP`, which undoes the half-pixel offset of mirroring a stride-4 map).
  2. `decode_heatmaps`: each map's argmax, moved a quarter pixel towards the higher neighbour on each
     axis (when it is not on the border), with the map's maximum as the joint's confidence.
  3. `to_image`: heatmap pixels to crop pixels (pixel `(i, j)` covers crop pixels `4i..4i+3`, so it
     decodes to `4i + 1.5`, the pipeline's target convention) and through the crop's affine transform
     to image pixels.
  4. `instance_score`: HRNet's rescoring, the box score times the mean confidence of the joints above
     `CONFIDENCE_THRESHOLD` (0.2).
  5. `coco_keypoint_ap`: pycocotools' COCOeval (iouType "keypoints") on the results: AP, AP50, AP75,
     APm, APl, AR, AR50, AR75, ARm, ARl.

With ground-truth boxes every box is one person, so HRNet's OKS non-maximum suppression removes
nothing and is not applied here.
"""

from __future__ import annotations

import numpy as np

from scalenas_tf.data.pipeline import HEATMAP_STRIDE

CONFIDENCE_THRESHOLD = 0.2
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def flip_heatmaps(heatmaps, flipped_heatmaps, flip_pairs, shift=True):
    """The flip-test average of a crop's heatmaps and those of its mirrored crop.

    Args:
        heatmaps: `(B, h, w, K)` of the crops.
        flipped_heatmaps: `(B, h, w, K)` the model gave for the left-right mirrored crops.
        flip_pairs: `(left, right)` joint index pairs.
        shift: bool, shift the mirrored-back maps one pixel right (HRNet's default).

    Returns:
        float32 `(B, h, w, K)`: `(heatmaps + back) / 2`.
    """
    back = np.asarray(flipped_heatmaps, np.float32)[:, :, ::-1, :].copy()
    order = list(range(back.shape[-1]))
    for left, right in flip_pairs:
        order[left], order[right] = right, left
    back = back[..., order]
    if shift:
        back[:, :, 1:, :] = back[:, :, :-1, :].copy()
    return (np.asarray(heatmaps, np.float32) + back) / 2.0


def decode_heatmaps(heatmaps):
    """HRNet's heatmap decoding: argmax plus a quarter-pixel step towards the higher neighbour.

    Args:
        heatmaps: `(B, h, w, K)`.

    Returns:
        `(coords, confidence)`: float32 `(B, K, 2)` `(x, y)` in heatmap pixels and float32 `(B, K)` the
        maps' maxima. A map whose maximum is <= 0 decodes to `(0, 0)` (HRNet's mask).
    """
    maps = np.transpose(np.asarray(heatmaps, np.float32), (0, 3, 1, 2))  # (B, K, h, w)
    batch, joints, height, width = maps.shape
    flat = maps.reshape(batch, joints, -1)
    index = np.argmax(flat, axis=-1)
    confidence = np.take_along_axis(flat, index[..., None], axis=-1)[..., 0]
    y, x = np.divmod(index, width)
    coords = np.stack([x, y], axis=-1).astype(np.float32)
    for b in range(batch):
        for k in range(joints):
            px, py = int(x[b, k]), int(y[b, k])
            if 1 < px < width - 1 and 1 < py < height - 1:
                m = maps[b, k]
                coords[b, k, 0] += 0.25 * np.sign(m[py, px + 1] - m[py, px - 1])
                coords[b, k, 1] += 0.25 * np.sign(m[py + 1, px] - m[py - 1, px])
    coords *= (confidence > 0)[..., None]
    return coords, confidence


def to_image(coords, transforms):
    """Heatmap pixels `(B, K, 2)` `(x, y)` to image pixels, through each crop's `(3, 3)` transform
    (crop pixels to image pixels, `augment.top_down_crop`'s `"transform"`)."""
    crop = np.asarray(coords, np.float64) * HEATMAP_STRIDE + (HEATMAP_STRIDE - 1) / 2.0
    transforms = np.asarray(transforms, np.float64)
    return np.einsum("bij,bkj->bki", transforms[:, :2, :2], crop) + transforms[:, None, :2, 2]


def instance_score(confidence, box_score=1.0):
    """HRNet's instance score: `box_score` x the mean confidence of the joints above the threshold."""
    confidence = np.asarray(confidence, np.float64)
    above = confidence > CONFIDENCE_THRESHOLD
    mean = np.where(above, confidence, 0.0).sum(-1) / np.maximum(above.sum(-1), 1)
    return np.asarray(box_score) * mean


def coco_results(image_ids, keypoints, confidence, scores):
    """COCO keypoint results: `[{"image_id", "category_id": 1, "keypoints": [x, y, c] * K, "score"}]`."""
    results = []
    for image_id, points, conf, score in zip(image_ids, keypoints, confidence, scores):
        triples = np.concatenate([np.asarray(points, np.float64), np.asarray(conf, np.float64)[:, None]], axis=1)
        results.append(
            {
                "image_id": int(image_id),
                "category_id": 1,
                "keypoints": [float(v) for v in triples.reshape(-1)],
                "score": float(score),
            }
        )
    return results


def evaluate_coco(predict, batches, ground_truth, flip_pairs=None):
    """COCO keypoint AP of a heatmap model on top-down crops, HRNet's validation end to end.

    Args:
        predict: `images -> heatmaps` (a Keras model or any callable), `(B, H, W, 3)` normalized
            images to `(B, ceil(H / 4), ceil(W / 4), K)`.
        batches: iterable of `(images, targets)` with `targets["transform"]` and `targets["image_id"]`
            (and optionally `targets["annotation_id"]`: then a ground-truth dict is restricted to those
            persons), e.g. `pipeline.make_dataset("pose", "validation", ..., source="coco_keypoints",
            pose_fields=("transform", "image_id", "annotation_id"))`.
        ground_truth: COCO-format dict or path (`coco_keypoint_ap`).
        flip_pairs: None for no flip test, else the `(left, right)` joint pairs (`FLIP_PAIRS` of
            `data.coco_keypoints`): each crop is also predicted mirrored and `flip_heatmaps` averages.

    Returns:
        dict: the `COCO_STAT_NAMES` plus `"instances"` (the number of crops scored).
    """
    image_ids, annotation_ids, points, confidences, scores = [], [], [], [], []
    for images, targets in batches:
        heatmaps = np.asarray(predict(images), np.float32)
        if flip_pairs is not None:
            mirrored = np.asarray(predict(np.asarray(images)[:, :, ::-1]), np.float32)
            heatmaps = flip_heatmaps(heatmaps, mirrored, flip_pairs)
        coords, confidence = decode_heatmaps(heatmaps)
        points.extend(to_image(coords, np.asarray(targets["transform"])))
        confidences.extend(confidence)
        scores.extend(instance_score(confidence))
        image_ids.extend(np.asarray(targets["image_id"]).tolist())
        if "annotation_id" in targets:
            annotation_ids.extend(np.asarray(targets["annotation_id"]).tolist())
    if annotation_ids and isinstance(ground_truth, dict):
        # Score the persons that were cropped: a subset's last image may have persons left out.
        kept = set(annotation_ids)
        ground_truth = {**ground_truth, "annotations": [a for a in ground_truth["annotations"] if a["id"] in kept]}
    results = coco_results(image_ids, points, confidences, scores)
    return {**coco_keypoint_ap(ground_truth, results, image_ids=image_ids), "instances": len(results)}


def coco_keypoint_ap(ground_truth, results, image_ids=None):
    """OKS AP and AR through pycocotools' COCOeval.

    Args:
        ground_truth: a COCO-format dict (`images`, `annotations`, `categories`) or the path of a
            `person_keypoints_*.json`.
        results: `coco_results(...)`.
        image_ids: evaluate on these images only (e.g. the subset a search scores on); None: every
            image of the ground truth.

    Returns:
        dict of `COCO_STAT_NAMES` to floats.

    Raises:
        ImportError: pycocotools is not installed, saying how to install it.
        ValueError: no results.
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise ImportError("COCO keypoint AP needs pycocotools: pip install pycocotools") from None
    import contextlib
    import io

    if not results:
        raise ValueError("`results` is empty: no predictions to evaluate")
    with contextlib.redirect_stdout(io.StringIO()):
        if isinstance(ground_truth, dict):
            coco = COCO()
            coco.dataset = ground_truth
            coco.createIndex()
        else:
            coco = COCO(str(ground_truth))
        detections = coco.loadRes(results)
        evaluation = COCOeval(coco, detections, "keypoints")
        evaluation.params.useSegm = None
        if image_ids is not None:
            evaluation.params.imgIds = sorted({int(i) for i in image_ids})
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: float(value) for name, value in zip(COCO_STAT_NAMES, evaluation.stats)}
