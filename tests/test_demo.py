"""The demo pipeline (make demo) at reduced size: built-in data from the registries, InfoMin
pretraining, verified conversion, two fine-tunes, report with table and plots."""
import re

from tests.conftest import REPO, run_tool


def test_demo_pipeline_reduced(tmp_path):
    out = run_tool("tools/demo.py", "--output", str(tmp_path / "demo"),
                   "--data-dir", str(REPO / ".cache" / "demo_data_test"), "--n-pretrain", "64",
                   "--n-train", "8", "--n-test", "6", "--pretrain-iters", "2",
                   "--finetune-iters", "2", timeout=1500).stdout
    report = (tmp_path / "demo" / "report.md").read_text()
    for row in ("| InfoMin-pretrained | 1 |", "| random init | 1 |"):
        assert row in report and row in out
    assert "demo_test / bbox" in report and "demo_test / segm" in report
    assert re.search(r"demo_test / bbox: InfoMin-pretrained - random init = [+-][0-9.]+ AP", report)
    # The fresh-key probe of the pretrained model is in the report, with its verdict.
    assert "## Has pretraining learned to tell images apart?" in report
    assert re.search(r"^init(\s+-?[0-9.]+){6}$", report, re.MULTILINE)
    assert "Not yet." in report or "Yes: " in report
    for png in ("ap.png", "pretraining.png"):
        assert (tmp_path / "demo" / png).read_bytes()[:4] == b"\x89PNG"
    assert "verified:" in out
