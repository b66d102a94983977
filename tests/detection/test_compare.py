import json

import pytest

from tests.conftest import run_tool

pytestmark = pytest.mark.integration  # detection/compare.py as a process


def write_run(folder, ap, ap50):
    folder.mkdir(parents=True)
    (folder / "metrics_eval.json").write_text(
        json.dumps({"voc_2007_test": {"bbox": {"AP": ap, "AP50": ap50, "AP75": None}}})
    )


def test_mean_and_std_over_seeds_as_markdown_and_png(tmp_path):
    write_run(tmp_path / "a1", 57.0, 82.0)
    write_run(tmp_path / "a2", 58.0, 83.0)
    write_run(tmp_path / "b1", 53.5, 81.3)
    run_tool(
        "detection/compare.py",
        "--run",
        f"infomin={tmp_path / 'a1'}",
        "--run",
        f"infomin={tmp_path / 'a2'}",
        "--run",
        f"supervised={tmp_path / 'b1'}",
        "--output",
        str(tmp_path / "report" / "voc"),
    )
    table = (tmp_path / "report" / "voc.md").read_text()
    assert table.startswith("### voc_2007_test / bbox")
    assert "| infomin | 2 | 57.5 ± 0.7 | 82.5 ± 0.7 | n/a |" in table
    assert "| supervised | 1 | 53.5 | 81.3 | n/a |" in table
    assert (tmp_path / "report" / "voc.png").read_bytes()[:4] == b"\x89PNG"


def test_missing_metrics_is_a_clear_error(tmp_path):
    with pytest.raises(AssertionError, match="no metrics_eval.json"):
        run_tool("detection/compare.py", "--run", f"x={tmp_path}")
