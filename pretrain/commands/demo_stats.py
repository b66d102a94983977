"""The demo's verdicts, each from a paired test against random init (evaluation/paired_tests.py):

  kNN      pretraining seed p against random init drawn from seed p, per-image predictions on the
           labelled held-out objects: a paired bootstrap over seeds and images;
  box/mask AP  each fine-tune of a pretrained backbone (pretraining seed p, fine-tune seed f)
           against the fine-tune of random init with the same fine-tune seed f (the same head
           initialisation and data order), AP recomputed on bootstrap draws of seeds and held-out
           images (detection/ap_bootstrap.py).

A gain is called a gain only where the test is significant at 5%; otherwise the report says it is
not significant at this budget.
"""

from __future__ import annotations

import os
import re

import numpy as np

from pretrain.evaluation.paired_tests import (
    correct_per_image,
    paired_bootstrap,
    paired_bootstrap_metric,
    verdict,
)

RESULTS_JSON = os.path.join("inference", "coco_instances_results.json")  # COCOEvaluator's
AP_TASKS = {"box AP": "bbox", "mask AP": "segm"}
AP_RESAMPLES = 1000


def knn_test(knn: dict, label: str, baseline: str) -> dict | None:
    """Paired bootstrap of `label`'s kNN against `baseline`'s over the seeds both have; knn is
    {label: {seed: knn result with predictions and labels}}."""
    seeds = sorted(set(knn.get(label, {})) & set(knn.get(baseline, {})))
    if not seeds:
        return None
    return paired_bootstrap(
        np.stack([correct_per_image(knn[label][s]) for s in seeds]),
        np.stack([correct_per_image(knn[baseline][s]) for s in seeds]),
    )


def coco_json_of(spec: str) -> str:
    """The ground-truth json of a COCO dataset spec ("format=coco json=PATH images=..."), or ""."""
    fields = dict(re.findall(r"(\w+)=(\S+)", spec))
    return fields.get("json", "") if fields.get("format") == "coco" else ""


def ap_test(runs: list[dict], label: str, baseline: str, gt_json: str, task: str) -> dict | None:
    """Paired bootstrap of `label`'s AP against `baseline`'s (`task` bbox or segm) over the
    fine-tunes: each of label's runs paired with the baseline's run of its fine-tune seed. runs:
    [{"label", "finetune_seed", "folder"}]; None where a run left no per-image detections."""
    from detection.ap_bootstrap import WeightedCocoAP

    base = {r["finetune_seed"]: r for r in runs if r["label"] == baseline}
    pairs = [
        (r, base[r["finetune_seed"]])
        for r in runs
        if r["label"] == label and r["finetune_seed"] in base
    ]
    paths = [os.path.join(r["folder"], RESULTS_JSON) for pair in pairs for r in pair]
    if not pairs or not gt_json or not all(os.path.isfile(p) for p in paths):
        return None
    metric = {path: WeightedCocoAP(gt_json, path, task) for path in set(paths)}
    side_a = [metric[os.path.join(a["folder"], RESULTS_JSON)] for a, _ in pairs]
    side_b = [metric[os.path.join(b["folder"], RESULTS_JSON)] for _, b in pairs]
    return paired_bootstrap_metric(
        side_a, side_b, images=len(side_a[0].image_ids), resamples=AP_RESAMPLES
    )


def verdict_lines(
    knn: dict, runs: list[dict], labels: list[str], baseline: str, gt_json: str
) -> tuple[list[str], dict]:
    """One line per compared backbone and metric, from its test; and the tests themselves
    ({label: {metric: test or None}}) for results.json."""
    lines, tests = [], {}
    for label in labels:
        if label == baseline:
            continue
        tests[label] = {"kNN": knn_test(knn, label, baseline)}
        for name, task in AP_TASKS.items():
            tests[label][name] = ap_test(runs, label, baseline, gt_json, task)
        for name, test in tests[label].items():
            if test is None:
                if name != "kNN" or label in knn:
                    lines.append(
                        f"- {label}, {name}: no paired test (no per-image results for both sides)"
                    )
                continue
            unit = " points" if name == "kNN" else " AP"
            lines.append(f"- {label}, {name} against {baseline}: {verdict(test, unit)}")
    return lines, tests
