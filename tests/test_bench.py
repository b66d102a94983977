"""bench/pretrain_throughput.py runs both pipelines side by side and prints every figure (the
figures themselves are for people to read: tests never assert on speed)."""
import re

from tests.conftest import run_tool


def test_throughput_bench_reports_model_step_and_both_pipelines(shared_data):
    out = run_tool("bench/pretrain_throughput.py", "--images",
                   str(shared_data / "bccd" / "JPEGImages"), "--iters", "1",
                   "MODEL.ARCH", "resnet18", "MODEL.HEAD_HIDDEN_DIM", "64", "MODEL.QUEUE_SIZE",
                   "64", "SOLVER.BATCH_SIZE", "4", "DATA.CROP_SIZE", "64", "MODEL.JIGSAW.CELL",
                   "32", "MODEL.JIGSAW.PATCH", "24", "DATA.NUM_WORKERS", "0").stdout
    for stage in ("model step", "cpu data", "cpu end to end", "gpu data", "gpu end to end"):
        match = re.search(rf"^{stage}\s+([0-9.]+)\s+([0-9.]+)x$", out, re.MULTILINE)
        assert match and float(match.group(1)) > 0, out
    assert "gpu / cpu pipeline end to end:" in out
