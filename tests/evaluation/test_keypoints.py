"""COCO keypoint evaluation against hand-computed values: decoding, flip test, coordinates, OKS AP."""

import numpy as np
import pytest

from scalenas_tf.evaluation import keypoints

pytest.importorskip("pycocotools")

# COCO's per-joint OKS sigmas (cocoeval.py).
SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
)
SIGMAS = SIGMAS / 10.0


def test_decode_moves_a_quarter_pixel_towards_the_higher_neighbour():
    maps = np.zeros((1, 10, 12, 3), np.float32)
    maps[0, 5, 7, 0] = 1.0
    maps[0, 5, 8, 0] = 0.5  # right higher than left: +0.25 in x
    maps[0, 4, 7, 0] = 0.3  # up higher than down: -0.25 in y
    maps[0, 0, 3, 1] = 0.8  # on the border: no shift
    coords, confidence = keypoints.decode_heatmaps(maps)
    np.testing.assert_allclose(coords[0], [[7.25, 4.75], [3.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(confidence[0], [1.0, 0.8, 0.0])


def test_flip_heatmaps_swaps_mirrors_and_shifts():
    width = 8
    maps = np.zeros((1, 4, width, 2), np.float32)
    flipped = np.zeros((1, 4, width, 2), np.float32)
    flipped[0, 2, 1, 0] = 1.0  # joint 0 in the mirrored crop at column 1
    out = keypoints.flip_heatmaps(maps, flipped, flip_pairs=((0, 1),))
    # Back to joint 1, column width - 1 - 1 = 6, shifted right to 7; averaged with zeros.
    assert out[0, 2, 7, 1] == 0.5 and out.sum() == 0.5
    out = keypoints.flip_heatmaps(maps, flipped, flip_pairs=((0, 1),), shift=False)
    assert out[0, 2, 6, 1] == 0.5


def test_to_image_through_the_crop_transform():
    coords = np.array([[[2.0, 3.0]]])
    identity = np.eye(3)[None]
    np.testing.assert_allclose(keypoints.to_image(coords, identity), [[[9.5, 13.5]]])
    scale_shift = np.array([[[2.0, 0.0, 10.0], [0.0, 2.0, -5.0], [0.0, 0.0, 1.0]]])
    np.testing.assert_allclose(keypoints.to_image(coords, scale_shift), [[[29.0, 22.0]]])


def test_instance_score():
    np.testing.assert_allclose(keypoints.instance_score([[0.1, 0.5, 0.9]], box_score=0.5), [0.35])
    np.testing.assert_allclose(keypoints.instance_score([[0.1, 0.0, 0.2]]), [0.0])


def _ground_truth(points, area):
    triples = np.concatenate([points, np.full((17, 1), 2.0)], axis=1)
    return {
        "images": [{"id": 1, "width": 640, "height": 480}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": area,
                "bbox": [100.0, 100.0, 100.0, 150.0],
                "num_keypoints": 17,
                "keypoints": triples.reshape(-1).tolist(),
            }
        ],
        "categories": [{"id": 1, "name": "person"}],
    }


def test_coco_ap_equals_the_hand_computed_oks():
    rng = np.random.default_rng(0)
    points = rng.uniform(110, 190, size=(17, 2))
    area = 5000.0  # medium: 32^2 < area < 96^2
    offset = 6.0
    predicted = points + [offset, 0.0]
    # OKS = mean_k exp(-d^2 / (2 * area * (2 sigma_k)^2)), COCO's definition.
    oks = np.mean(np.exp(-(offset**2) / (2.0 * area * (2.0 * SIGMAS) ** 2)))
    thresholds = np.linspace(0.5, 0.95, 10)
    expected = np.mean(oks >= thresholds)  # one person, one prediction: AP is 1 per matched threshold
    assert 0.1 < expected < 0.9 and np.min(np.abs(thresholds - oks)) > 0.01
    results = keypoints.coco_results([1], [predicted], [np.ones(17)], [0.9])
    stats = keypoints.coco_keypoint_ap(_ground_truth(points, area), results)
    assert stats["AP"] == pytest.approx(expected, abs=1e-9)
    assert stats["APm"] == pytest.approx(expected, abs=1e-9)
    assert stats["APl"] == -1.0  # no large person
    assert stats["AP50"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(expected, abs=1e-9)
    perfect = keypoints.coco_keypoint_ap(
        _ground_truth(points, area), keypoints.coco_results([1], [points], [np.ones(17)], [0.9])
    )
    assert perfect["AP"] == pytest.approx(1.0)


def test_coco_ap_refuses_no_results():
    with pytest.raises(ValueError, match="empty"):
        keypoints.coco_keypoint_ap(_ground_truth(np.zeros((17, 2)), 100.0), [])
