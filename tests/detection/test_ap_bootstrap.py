"""detection/ap_bootstrap.py against pycocotools' own COCOeval on the real fruits_nuts annotations:
with every image once it is COCOeval's AP, and with integer weights it is COCOeval's AP of a json in
which those images are repeated (or dropped)."""

import contextlib
import io
import json

import numpy as np
import pytest

from detection.ap_bootstrap import WeightedCocoAP


def coco_ap(gt: dict, detections: list, iou_type: str, tmp_path) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path = tmp_path / "gt_ref.json"
    path.write_text(json.dumps(gt))
    with contextlib.redirect_stdout(io.StringIO()):
        ground = COCO(str(path))
        evaluator = COCOeval(ground, ground.loadRes(detections), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return 100 * evaluator.stats[0]


def noisy_detections(gt: dict, seed: int) -> list:
    """What a half-trained detector gives: most objects found with jittered boxes, some missed,
    some wrong class, false positives; random scores."""
    rng = np.random.default_rng(seed)
    detections = []
    for ann in gt["annotations"]:
        if rng.uniform() < 0.2:
            continue
        x, y, w, h = ann["bbox"]
        jitter = rng.normal(0, 0.15, size=4) * [w, h, w, h]
        category = ann["category_id"] if rng.uniform() < 0.85 else 1 + (ann["category_id"] % 3)
        detections.append(
            {
                "image_id": ann["image_id"],
                "category_id": category,
                "bbox": [
                    x + jitter[0],
                    y + jitter[1],
                    max(1.0, w + jitter[2]),
                    max(1.0, h + jitter[3]),
                ],
                "score": float(rng.uniform(0.05, 1.0)),
            }
        )
    for image in gt["images"]:
        for _ in range(3):
            detections.append(
                {
                    "image_id": image["id"],
                    "category_id": int(rng.integers(1, 4)),
                    "bbox": [float(rng.uniform(0, 600)), float(rng.uniform(0, 400)), 40.0, 40.0],
                    "score": float(rng.uniform(0.05, 0.6)),
                }
            )
    return detections


@pytest.fixture(scope="module")
def fruits(shared_data):
    return json.loads((shared_data / "fruits_nuts" / "trainval.json").read_text())


def test_every_image_once_is_cocoevals_ap(fruits, tmp_path):
    detections = noisy_detections(fruits, 0)
    (tmp_path / "gt.json").write_text(json.dumps(fruits))
    (tmp_path / "dt.json").write_text(json.dumps(detections))
    ap = WeightedCocoAP(str(tmp_path / "gt.json"), str(tmp_path / "dt.json"))
    expected = coco_ap(fruits, detections, "bbox", tmp_path)
    assert 5 < expected < 95
    assert ap() == pytest.approx(expected, abs=1e-9)


def test_integer_weights_are_cocoevals_ap_of_the_images_repeated_and_dropped(fruits, tmp_path):
    detections = noisy_detections(fruits, 1)
    (tmp_path / "gt.json").write_text(json.dumps(fruits))
    (tmp_path / "dt.json").write_text(json.dumps(detections))
    ap = WeightedCocoAP(str(tmp_path / "gt.json"), str(tmp_path / "dt.json"))
    weights = np.ones(len(ap.image_ids))
    weights[0], weights[3], weights[5] = 3, 0, 2
    # The same as a json holding image 0 three times, image 5 twice and no image 3.
    images, annotations, dets = [], [], []
    next_image, next_ann = 10_000, 10_000
    for image_id, weight in zip(map(int, ap.image_ids), weights):
        image = next(i for i in fruits["images"] if i["id"] == image_id)
        for copy in range(int(weight)):
            new_id = image_id if copy == 0 else next_image
            next_image += int(copy > 0)
            images.append({**image, "id": new_id})
            for ann in fruits["annotations"]:
                if ann["image_id"] == image_id:
                    annotations.append({**ann, "image_id": new_id, "id": next_ann})
                    next_ann += 1
            dets += [{**d, "image_id": new_id} for d in detections if d["image_id"] == image_id]
    repeated = {**fruits, "images": images, "annotations": annotations}
    assert ap(weights) == pytest.approx(coco_ap(repeated, dets, "bbox", tmp_path), abs=1e-9)


def test_masks_and_a_run_that_found_nothing(fruits, tmp_path):
    """segm: the polygons rasterised as masks are the detections; an empty result is AP 0."""
    from pycocotools import mask as mask_utils

    detections = []
    for ann in fruits["annotations"][::2]:
        image = next(i for i in fruits["images"] if i["id"] == ann["image_id"])
        rles = mask_utils.frPyObjects(ann["segmentation"], image["height"], image["width"])
        rle = mask_utils.merge(rles)
        rle["counts"] = rle["counts"].decode()
        detections.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "segmentation": rle,
                "score": 0.9,
            }
        )
    (tmp_path / "gt.json").write_text(json.dumps(fruits))
    (tmp_path / "dt.json").write_text(json.dumps(detections))
    ap = WeightedCocoAP(str(tmp_path / "gt.json"), str(tmp_path / "dt.json"), "segm")
    assert ap() == pytest.approx(coco_ap(fruits, detections, "segm", tmp_path), abs=1e-9)
    (tmp_path / "none.json").write_text("[]")
    assert WeightedCocoAP(str(tmp_path / "gt.json"), str(tmp_path / "none.json"))() == 0.0
