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
    run_tool("tools/demo.py", "--output", str(tmp_path / "demo"),
             "--data-dir", str(REPO / ".cache" / "demo_data_test_v3"), "--n-pretrain", "64",
             "--n-train", "8", "--n-test", "6", "--n-objects", "64", "20",
             "--instances", "128", "2", "--pretrain-iters", "2",
             "--supervised-iters", "2", "--finetune-iters", "2", "--seeds", "2", timeout=1500)
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    # Every backbone has its kNN top-1 with a standard error over the 20 held-out objects, and
    # both APs from each of the 2 seeds; the two pretrained ones were exported, all 100 tensors
    # of the ResNet-18 checked in Detectron2's model.
    for label in LABELS:
        knn = results["knn"][label]
        assert 0 <= knn["top1"] <= 100
        assert knn["stderr"] == pytest.approx(
            100 * math.sqrt(knn["top1"] / 100 * (1 - knn["top1"] / 100) / 20))
        for task in ("bbox", "segm"):
            assert len(results["detection"][f"demo_test/{task}"][label]["AP"]) == 2
    assert results["verified_tensors"] == {"views share: object": 100, "supervised": 100}
    assert 0 <= results["supervised_top1"] <= 100
    probe = results["fresh_keys"]
    assert [row["checkpoint"] for row in probe["rows"]] == [
        "init", str(tmp_path / "demo" / "pretrain_object" / "model_final.pth")]
    assert probe["probe_images"] == 128 and probe["rows"][0]["queue_acc"] is None  # no queue

    report = (tmp_path / "demo" / "report.md").read_text()
    # What the views share is said plainly, and the headline table has every backbone with its
    # kNN and both APs over the 2 seeds.
    assert "views share: object: the object only" in report
    for label in LABELS:
        assert re.search(rf"^\| {label} \| 2 \| [0-9.]+ ± [0-9.]+% \| [0-9.]+ ± [0-9.]+ "
                         rf"\| [0-9.]+ ± [0-9.]+ \|$", report, re.MULTILINE), label
    for metric in ("kNN", "box AP", "mask AP"):
        assert re.search(rf"^- views share: object, {metric}: [+-][0-9.]+ against random init "
                         rf"\((not )?more than the spread", report, re.MULTILINE)
    for name in ("finetune_views_share_object_seed2", "finetune_random_init_seed1",
                 "finetune_supervised_seed2"):
        assert (tmp_path / "demo" / name / "metrics_eval.json").is_file()
    assert "demo_test / bbox" in report and "demo_test / segm" in report
    # The fresh-key probe of the pretrained model is in the report, with its verdict.
    assert "## Has pretraining learned to tell instances apart?" in report
    assert re.search(r"^init(\s+(-?[0-9.]+|nan)){6}$", report, re.MULTILINE)
    assert "Not yet." in report or "Yes: " in report
    for png in ("ap.png", "pretraining.png"):
        assert (tmp_path / "demo" / png).read_bytes()[:4] == b"\x89PNG"


def test_the_learned_verdict_reads_a_probe_of_a_model_without_a_queue():
    from pretrain.commands.demo import learned_note

    nan = float("nan")
    probe = {"probe_images": 512, "chance_fresh_acc": 1 / 512,
             "rows": [{"checkpoint": "out/model_final.pth", "queue_acc": nan, "fresh_acc": 0.0215,
                       "queue_loss": nan, "fresh_loss": 5.6928, "chance_loss": 6.2383,
                       "query_cosine": 0.6384}]}
    note = learned_note(probe)
    assert "Yes: against fresh keys of the other probe instances the positive is found for " \
        "2.1%" in note
    assert "out/model_final.pth" in note


def test_the_demo_refuses_zero_seeds(capsys):
    from pretrain.commands.demo import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--seeds", "0"])
    assert exit_info.value.code == 2
    assert "--seeds 0: need at least one fine-tune" in capsys.readouterr().err


def test_the_verdict_compares_the_gain_with_the_spread_of_both_sides():
    from detection.compare import RUN_COUNT
    from pretrain.commands.demo import summary

    def runs(*aps):
        return {"AP": list(aps), RUN_COUNT: [1.0] * len(aps)}

    table = {("demo_test", "bbox"): {"random init": runs(20.0, 22.0, 21.0),
                                     "views share: object": runs(30.0, 31.0, 32.0)},
             ("demo_test", "segm"): {"random init": runs(20.0, 22.0, 21.0),
                                     "views share: object": runs(21.0, 23.0, 22.0)}}
    knn = {"random init": (20.0, 1.3), "views share: object": (31.0, 1.5)}
    text, verdicts = summary(table, knn, ["random init", "views share: object"], "random init")
    assert "| views share: object | 3 | 31.0 ± 1.5% | 31.0 ± 1.0 | 22.0 ± 1.0 |" in text
    assert verdicts == [
        "- views share: object, kNN: +11.0 against random init (more than the spread, 2.8)",
        "- views share: object, box AP: +10.0 against random init (more than the spread, 2.0)",
        "- views share: object, mask AP: +1.0 against random init (not more than the spread, "
        "2.0)"]


def test_one_fine_tune_per_backbone_gives_no_verdict_on_the_spread():
    from detection.compare import RUN_COUNT
    from pretrain.commands.demo import summary

    table = {("demo_test", "bbox"): {"random init": {"AP": [20.0], RUN_COUNT: [1.0]},
                                     "views share: object": {"AP": [25.0], RUN_COUNT: [1.0]}}}
    _, verdicts = summary(table, {}, ["random init", "views share: object"], "random init")
    assert verdicts == ["- views share: object, box AP: +5.0 against random init (one run each: "
                        "no spread to compare with; use --seeds 3)"]
