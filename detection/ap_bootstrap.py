"""COCO AP of one evaluated run, recomputed for any weighting of its test images: what a bootstrap
over test images needs (pretrain/evaluation/paired_tests.paired_bootstrap_metric).

pycocotools matches detections to ground truth image by image (COCOeval.evaluate); AP then pools
the matches of all images per category and IoU threshold (COCOeval.accumulate). A bootstrap draw
holds image i w_i times, so its AP pools each image's matches w_i times: the same sorted
detections with tp / fp counts and ground-truth totals weighted by w_i. With every weight 1 this
is COCOeval's own AP (the test holds it to that, and to COCOeval on a json with duplicated and
dropped images). Area "all" and 100 detections per image, as the AP Detectron2 reports.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np


class ApBootstrapError(ValueError):
    """The run's files cannot be evaluated (missing results, images outside the ground truth)."""


class WeightedCocoAP:
    """AP (%, COCO's mean over categories and IoU thresholds 0.5:0.95) of one run's detections as
    a function of per-image weights, in the order of `image_ids`."""

    def __init__(self, gt_json: str, results_json: str, iou_type: str = "bbox"):
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            gt = COCO(gt_json)
            with open(results_json) as f:
                detections = json.load(f)
            if not isinstance(detections, list):
                raise ApBootstrapError(f"{results_json}: expected a list of detections")
            unknown = {d["image_id"] for d in detections} - set(gt.getImgIds())
            if unknown:
                raise ApBootstrapError(
                    f"{results_json}: detections of image ids not in "
                    f"{gt_json}, e.g. {sorted(unknown)[:3]}"
                )
            if not detections:  # nothing found: AP 0 wherever there is ground truth
                self._no_detections(gt)
                return
            evaluator = COCOeval(gt, gt.loadRes(detections), iou_type)
            evaluator.evaluate()
        params = evaluator.params
        self.image_ids = list(params.imgIds)
        self.recall_thresholds = np.asarray(params.recThrs)
        max_det = params.maxDets[-1]
        areas, images = len(params.areaRng), len(self.image_ids)
        all_area = [tuple(a) for a in params.areaRng].index((0**2, 1e5**2))
        self.categories = []  # per category: image index, matched, ignored (sorted), gt per image
        for k in range(len(params.catIds)):
            entries = [
                (i, evaluator.evalImgs[k * areas * images + all_area * images + i])
                for i in range(images)
            ]
            entries = [(i, e) for i, e in entries if e is not None]
            if not entries:
                continue
            scores = np.concatenate([e["dtScores"][:max_det] for _, e in entries])
            owner = np.concatenate([np.full(len(e["dtScores"][:max_det]), i) for i, e in entries])
            matched = np.concatenate([e["dtMatches"][:, :max_det] for _, e in entries], axis=1)
            ignored = np.concatenate([e["dtIgnore"][:, :max_det] for _, e in entries], axis=1)
            order = np.argsort(-scores, kind="mergesort")  # COCOeval.accumulate's order
            gt_count = np.zeros(images)
            for i, e in entries:
                gt_count[i] = np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)
            self.categories.append(
                {
                    "owner": owner[order].astype(int),
                    "tp": np.logical_and(matched[:, order], ~ignored[:, order].astype(bool)),
                    "fp": np.logical_and(
                        ~matched[:, order].astype(bool), ~ignored[:, order].astype(bool)
                    ),
                    "gt": gt_count,
                }
            )

    def _no_detections(self, gt) -> None:
        from pycocotools.cocoeval import Params

        self.image_ids = sorted(gt.getImgIds())
        params = Params()
        self.recall_thresholds = np.asarray(params.recThrs)
        thresholds = len(params.iouThrs)
        self.categories = []
        for cat in sorted(gt.getCatIds()):
            gt_count = np.array(
                [
                    sum(
                        1
                        for a in gt.loadAnns(gt.getAnnIds(imgIds=[i], catIds=[cat]))
                        if not a.get("iscrowd", 0)
                    )
                    for i in self.image_ids
                ],
                float,
            )
            empty = np.zeros((thresholds, 0), dtype=bool)
            self.categories.append(
                {"owner": np.zeros(0, dtype=int), "tp": empty, "fp": empty, "gt": gt_count}
            )

    def __call__(self, weights: np.ndarray | None = None) -> float:
        """AP (%) with image i counted weights[i] times (None: each once); nan when no category
        has ground truth under these weights."""
        if weights is None:
            weights = np.ones(len(self.image_ids))
        per_category = []
        for cat in self.categories:
            positives = float(np.dot(weights, cat["gt"]))
            if positives == 0:
                continue  # COCOeval leaves such a category out of the mean
            w = weights[cat["owner"]]
            tp, fp = np.cumsum(cat["tp"] * w, axis=1), np.cumsum(cat["fp"] * w, axis=1)
            per_category.append(self._mean_interpolated_precision(tp, fp, positives))
        return 100 * float(np.mean(per_category)) if per_category else float("nan")

    def _mean_interpolated_precision(
        self, tp: np.ndarray, fp: np.ndarray, positives: float
    ) -> float:
        """COCOeval.accumulate's interpolated precision at its recall thresholds, averaged over
        them and the IoU thresholds (rows of tp / fp: cumulative counts per IoU threshold)."""
        if tp.shape[1] == 0:
            return 0.0
        recall = tp / positives
        precision = tp / (fp + tp + np.spacing(1))
        precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # best to the right
        total = 0.0
        for row_recall, row_precision in zip(recall, precision):
            found = np.searchsorted(row_recall, self.recall_thresholds, side="left")
            total += row_precision[found[found < len(row_precision)]].sum()
        return total / (len(recall) * len(self.recall_thresholds))
