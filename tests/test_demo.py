"""The demo pipeline (make demo) at reduced size: built-in data from the registries, InfoMin
pretraining, its probes, verified conversion, the supervised baseline, fine-tunes from each
initialisation, report with tables and plots."""
import re

import pytest

from tests.conftest import REPO, run_tool


def test_demo_pipeline_reduced(tmp_path):
    out = run_tool("tools/demo.py", "--output", str(tmp_path / "demo"),
                   "--data-dir", str(REPO / ".cache" / "demo_data_test_v2"), "--n-pretrain", "64",
                   "--n-train", "8", "--n-test", "6", "--n-objects", "64", "20",
                   "--pretrain-iters", "2", "--supervised-iters", "2", "--finetune-iters", "2",
                   "--seeds", "2", timeout=1500).stdout
    report = (tmp_path / "demo" / "report.md").read_text()
    for row in ("| InfoMin-pretrained | 2 |", "| random init | 2 |", "| supervised | 2 |"):
        assert row in report and row in out  # mean +- std of 2 seeds
    for name in ("finetune_pretrained_seed2", "finetune_random_seed1", "finetune_supervised_seed2"):
        assert (tmp_path / "demo" / name / "metrics_eval.json").is_file()
    assert "demo_test / bbox" in report and "demo_test / segm" in report
    for label in ("InfoMin-pretrained", "supervised"):
        assert re.search(rf"demo_test / bbox: {label} - random init = [+-][0-9.]+ AP", report)
    # The object probe: kNN on held-out labelled objects for each backbone.
    assert "## Does the backbone know the objects?" in report
    for label in ("random init", "InfoMin-pretrained", "supervised"):
        assert re.search(rf"^\| {label} \| [0-9.]+% \|$", report, re.MULTILINE)
    assert "supervised top-1 on" in out
    assert "Yes: the pretrained backbone's features" in report or "No: the pretrained" in report
    # The fresh-key probe of the pretrained model is in the report, with its verdict.
    assert "## Has pretraining learned to tell images apart?" in report
    assert re.search(r"^init(\s+-?[0-9.]+){6}$", report, re.MULTILINE)
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
    assert "Yes: against fresh keys of the other probe images the positive is found for 2.1%" \
        in note
    assert "out/model_final.pth" in note


def test_the_demo_refuses_zero_seeds(capsys):
    from tools.demo import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--seeds", "0"])
    assert exit_info.value.code == 2
    assert "--seeds 0: need at least one fine-tune" in capsys.readouterr().err


def test_the_object_probe_says_whether_pretraining_beats_random_features(tmp_path):
    from tools.demo import objects_note

    for name in ("bag", "shirt"):
        (tmp_path / name).mkdir()
    note = objects_note({"random init": 20.3, "InfoMin-pretrained": 16.7}, str(tmp_path))
    assert "No: the pretrained backbone's features separate them no better than random init's " \
           "(16.7% against 20.3%)" in note
    assert "2 classes: chance 50%" in note and "| InfoMin-pretrained | 16.7% |" in note
    note = objects_note({"random init": 20.3, "InfoMin-pretrained": 25.0}, str(tmp_path))
    assert "Yes: the pretrained backbone's features separate them better than random init's, " \
           "by 4.7 points." in note
