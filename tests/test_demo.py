"""The demo pipeline (make demo) at reduced size: built-in data from the registries, pretraining on
views that share only the object, its probes, verified conversion, the supervised baseline,
fine-tunes from each initialisation, report with tables and plots."""
import re

import pytest

from tests.conftest import REPO, run_tool


def test_demo_pipeline_reduced(tmp_path):
    out = run_tool("tools/demo.py", "--output", str(tmp_path / "demo"),
                   "--data-dir", str(REPO / ".cache" / "demo_data_test_v3"), "--n-pretrain", "64",
                   "--n-train", "8", "--n-test", "6", "--n-objects", "64", "20",
                   "--instances", "128", "2", "--pretrain-iters", "2",
                   "--supervised-iters", "2", "--finetune-iters", "2", "--seeds", "2",
                   timeout=1500).stdout
    report = (tmp_path / "demo" / "report.md").read_text()
    # What the views share is said plainly, and the headline table has every backbone with its
    # kNN and both APs over the 2 seeds.
    assert "views share: object: the object only" in report
    for label in ("random init", "views share: object", "supervised"):
        assert re.search(rf"^\| {label} \| 2 \| [0-9.]+ ± [0-9.]+% \| [0-9.]+ ± [0-9.]+ "
                         rf"\| [0-9.]+ ± [0-9.]+ \|$", report, re.MULTILINE), label
    for metric in ("kNN", "box AP", "mask AP"):
        assert re.search(rf"^- views share: object, {metric}: [+-][0-9.]+ against random init "
                         rf"\((not )?more than the spread", report, re.MULTILINE)
    for name in ("finetune_views_share_object_seed2", "finetune_random_init_seed1",
                 "finetune_supervised_seed2"):
        assert (tmp_path / "demo" / name / "metrics_eval.json").is_file()
    assert "demo_test / bbox" in report and "demo_test / segm" in report
    assert "supervised top-1 on" in out
    # The fresh-key probe of the pretrained model is in the report, with its verdict.
    assert "## Has pretraining learned to tell instances apart?" in report
    assert re.search(r"^init(\s+(-?[0-9.]+|nan)){6}$", report, re.MULTILINE)
    assert "Not yet." in report or "Yes: " in report
    for png in ("ap.png", "pretraining.png"):
        assert (tmp_path / "demo" / png).read_bytes()[:4] == b"\x89PNG"
    assert "verified:" in out


def test_the_learned_verdict_reads_a_probe_of_a_model_without_a_queue():
    from tools.demo import learned_note

    probe = ("checkpoint  queue_acc fresh_acc queue_loss fresh_loss chance_loss query_cosine\n"
             "out/model_final.pth  nan  0.0215  nan  5.6928  6.2383  0.6384\n"
             "(512 probe images: chance fresh_acc 0.0020; query_cosine 1.0 is collapse)\n")
    note = learned_note(probe)
    assert "Yes: against fresh keys of the other probe instances the positive is found for " \
        "2.1%" in note
    assert "out/model_final.pth" in note


def test_the_demo_refuses_zero_seeds(capsys):
    from tools.demo import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--seeds", "0"])
    assert exit_info.value.code == 2
    assert "--seeds 0: need at least one fine-tune" in capsys.readouterr().err


def test_the_verdict_compares_the_gain_with_the_spread_of_both_sides():
    from detection.compare import RUN_COUNT
    from tools.demo import summary

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
    from tools.demo import summary

    table = {("demo_test", "bbox"): {"random init": {"AP": [20.0], RUN_COUNT: [1.0]},
                                     "views share: object": {"AP": [25.0], RUN_COUNT: [1.0]}}}
    _, verdicts = summary(table, {}, ["random init", "views share: object"], "random init")
    assert verdicts == ["- views share: object, box AP: +5.0 against random init (one run each: "
                        "no spread to compare with; use --seeds 3)"]
