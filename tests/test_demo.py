"""The demo pipeline (make demo) at reduced size: built-in data from the registries, pretraining on
views that share only the object, its probes, verified conversion, the supervised baseline,
fine-tunes from each initialisation, report with tables and plots."""

import json
import math
import re

import pytest

from tests.conftest import REPO, run_tool


LABELS = ("random init", "views share: object", "supervised")


@pytest.mark.integration
def test_demo_pipeline_reduced(tmp_path):
    run_tool(
        "tools/demo.py",
        "--output",
        str(tmp_path / "demo"),
        "--data-dir",
        str(REPO / ".cache" / "demo_data_test_v3"),
        "--n-pretrain",
        "64",
        "--n-train",
        "8",
        "--n-test",
        "6",
        "--n-objects",
        "64",
        "20",
        "--instances",
        "128",
        "2",
        "--pretrain-iters",
        "2",
        "--supervised-iters",
        "2",
        "--finetune-iters",
        "2",
        "--seeds",
        "2",
        timeout=1500,
    )
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    # Every backbone has its kNN top-1 with a standard error over the 20 held-out objects, and
    # both APs from each of the 2 seeds; the two pretrained ones were exported, all 100 tensors
    # of the ResNet-18 checked in Detectron2's model.
    for label in LABELS:
        knn = results["knn"][label]["0"]  # pretraining seed 0
        assert 0 <= knn["top1"] <= 100
        assert len(knn["predictions"]) == len(knn["labels"]) == 20
        assert knn["stderr"] == pytest.approx(
            100 * math.sqrt(knn["top1"] / 100 * (1 - knn["top1"] / 100) / 20)
        )
        for task in ("bbox", "segm"):
            assert len(results["detection"][f"demo_test/{task}"][label]["AP"]) == 2
    assert results["verified_tensors"] == {"views share: object": 100, "supervised": 100}
    assert 0 <= results["supervised_top1"] <= 100
    probe = results["fresh_keys"]
    assert [row["checkpoint"] for row in probe["rows"]] == [
        "init",
        str(tmp_path / "demo" / "pretrain_object" / "model_final.pth"),
    ]
    assert probe["probe_images"] == 128 and probe["rows"][0]["queue_acc"] is None  # no queue

    report = (tmp_path / "demo" / "report.md").read_text()
    # What the views share is said plainly, and the headline table has every backbone with its
    # kNN and both APs over the 2 seeds.
    assert "views share: object: the object only" in report
    for label in LABELS:
        assert re.search(
            rf"^\| {label} \| 2 \| [0-9.]+ ± [0-9.]+ \(s.e.\)% \| [0-9.]+ ± "
            rf"[0-9.]+ \| [0-9.]+ ± [0-9.]+ \|$",
            report,
            re.MULTILINE,
        ), label
    # Each verdict is a paired test's: kNN over the images, AP over images and fine-tunes.
    for metric, seeds in (("kNN", 1), ("box AP", 2), ("mask AP", 2)):
        assert re.search(
            rf"^- views share: object, {metric} against random init: [+-][0-9.]+ "
            rf"\S+ \(95% CI [+-][0-9.]+ to [+-][0-9.]+, p = [0-9.e-]+, {seeds} "
            rf"seeds?\): (higher|lower|not significant at this budget)$",
            report,
            re.MULTILINE,
        ), metric
    assert set(results["tests"]["views share: object"]) == {"kNN", "box AP", "mask AP"}
    for name in (
        "finetune_views_share_object_seed2",
        "finetune_random_init_seed1",
        "finetune_supervised_seed2",
    ):
        assert (tmp_path / "demo" / name / "metrics_eval.json").is_file()
    assert "demo_test / bbox" in report and "demo_test / segm" in report
    # The fresh-key probe of the pretrained model is in the report, with its verdict.
    assert "## Has pretraining learned to tell instances apart?" in report
    assert re.search(r"^init(\s+(-?[0-9.]+|nan)){6}$", report, re.MULTILINE)
    assert "Not yet." in report or "Yes: " in report
    for png in ("ap.png", "pretraining.png"):
        assert (tmp_path / "demo" / png).read_bytes()[:4] == b"\x89PNG"


def test_the_learned_verdict_reads_a_probe_of_a_model_without_a_queue():
    from pretrain.commands.demo_report import learned_note

    nan = float("nan")
    probe = {
        "probe_images": 512,
        "chance_fresh_acc": 1 / 512,
        "rows": [
            {
                "checkpoint": "out/model_final.pth",
                "queue_acc": nan,
                "fresh_acc": 0.0215,
                "queue_loss": nan,
                "fresh_loss": 5.6928,
                "chance_loss": 6.2383,
                "query_cosine": 0.6384,
            }
        ],
    }
    note = learned_note(probe)
    assert (
        "Yes: against fresh keys of the other probe instances the positive is found for "
        "2.1%" in note
    )
    assert "out/model_final.pth" in note


def test_the_demo_refuses_zero_seeds(capsys):
    from pretrain.commands.demo import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--seeds", "0"])
    assert exit_info.value.code == 2
    assert "--seeds 0: need at least one fine-tune" in capsys.readouterr().err


def knn_runs(accuracy: float, images: int, seeds: int, rng_seed: int) -> dict:
    """Per-image kNN results of a backbone over pretraining seeds: each image right with
    probability `accuracy` (a shared difficulty per image, a seed effect of SD 3 points)."""
    import numpy as np

    rng = np.random.default_rng(rng_seed)
    difficulty = np.random.default_rng(0).uniform(-0.2, 0.2, images)
    labels = [0] * images
    runs = {}
    for seed in range(seeds):
        p = accuracy + rng.normal(0, 0.03) + difficulty
        right = rng.uniform(size=images) < p
        runs[seed] = {
            "top1": 100 * right.mean(),
            "stderr": 1.0,
            "labels": labels,
            "predictions": [0 if r else 1 for r in right],
        }
    return runs


def test_a_knn_gain_below_its_noise_is_not_significant_and_one_above_it_is():
    """The demo's kNN verdict comes from the paired test: a 1-point gain over 3 pretraining
    seeds of 1,000 objects is called not significant, a 12-point gain higher."""
    from pretrain.commands.demo_stats import verdict_lines

    base = knn_runs(0.2, 1000, 3, 1)
    knn = {
        "random init": base,
        "small": knn_runs(0.21, 1000, 3, 2),
        "large": knn_runs(0.32, 1000, 3, 3),
    }
    lines, tests = verdict_lines(knn, [], ["random init", "small", "large"], "random init", "")
    assert tests["small"]["kNN"]["p"] >= 0.05 and tests["large"]["kNN"]["p"] < 0.05
    assert lines[0].startswith("- small, kNN against random init: ")
    assert lines[0].endswith("3 seeds): not significant at this budget")
    assert [line for line in lines if line.startswith("- large, kNN")][0].endswith(
        "3 seeds): higher"
    )


def write_run(folder, detections) -> dict:
    (folder / "inference").mkdir(parents=True)
    (folder / "inference" / "coco_instances_results.json").write_text(json.dumps(detections))
    return folder


def test_an_ap_gain_is_tested_over_fine_tunes_and_held_out_images(shared_data, tmp_path):
    """Box AP of each fine-tune (per-image detections, as COCOEvaluator writes them) against the
    random-init fine-tune of the same seed, bootstrapped over seeds and images: detections as
    good as the baseline's are not significant; a detector that finds every object is higher."""
    from pretrain.commands.demo_stats import ap_test
    from tests.detection.test_ap_bootstrap import noisy_detections

    gt = json.loads((shared_data / "fruits_nuts" / "trainval.json").read_text())
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    perfect = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 0.9,
        }
        for a in gt["annotations"]
    ]
    runs = []
    for seed in (1, 2, 3):
        for label, detections in (
            ("random init", noisy_detections(gt, seed)),
            ("alike", noisy_detections(gt, 10 + seed)),
            ("perfect", perfect),
        ):
            folder = write_run(tmp_path / f"{label}_{seed}", detections)
            runs.append({"label": label, "finetune_seed": seed, "folder": str(folder)})
    alike = ap_test(runs, "alike", "random init", str(tmp_path / "gt.json"), "bbox")
    assert alike["seeds"] == 3 and alike["p"] >= 0.05
    better = ap_test(runs, "perfect", "random init", str(tmp_path / "gt.json"), "bbox")
    assert better["p"] < 0.05 and better["ci"][0] > 0
    assert ap_test(runs, "perfect", "random init", "", "bbox") is None  # no ground truth: no test
