"""bench/pretrain_throughput.py runs both pipelines side by side and prints every figure (the
figures themselves are for people to read: tests never assert on speed)."""

import re

import pytest

from tests.conftest import run_tool

pytestmark = pytest.mark.integration  # each test runs a bench script as a process


def test_throughput_bench_reports_model_step_and_both_pipelines(shared_data):
    out = run_tool(
        "bench/pretrain_throughput.py",
        "--images",
        str(shared_data / "bccd" / "JPEGImages"),
        "--iters",
        "1",
        "MODEL.ARCH",
        "resnet18",
        "MODEL.HEAD_HIDDEN_DIM",
        "64",
        "MODEL.QUEUE_SIZE",
        "64",
        "SOLVER.BATCH_SIZE",
        "4",
        "DATA.CROP_SIZE",
        "64",
        "MODEL.JIGSAW.CELL",
        "32",
        "MODEL.JIGSAW.PATCH",
        "24",
        "DATA.NUM_WORKERS",
        "0",
    ).stdout
    for stage in ("model step", "cpu data", "cpu end to end", "gpu data", "gpu end to end"):
        match = re.search(rf"^{stage}\s+([0-9.]+)\s+([0-9.]+)x$", out, re.MULTILINE)
        assert match and float(match.group(1)) > 0, out
    assert "gpu / cpu pipeline end to end:" in out


@pytest.mark.slow  # 33 s
def test_pipeline_knn_bench_prints_a_row_per_pipeline(cifar10, tmp_path):
    out = run_tool(
        "bench/pipeline_knn.py",
        "--iters",
        "2",
        "--seeds",
        "0",
        "--knn-train",
        "64",
        "--knn-test",
        "32",
        "--output",
        str(tmp_path),
        "MODEL.ARCH",
        "resnet18",
        "MODEL.HEAD_HIDDEN_DIM",
        "64",
        "MODEL.QUEUE_SIZE",
        "64",
        "SOLVER.BATCH_SIZE",
        "8",
        "MODEL.JIGSAW.ENABLED",
        "False",
        "DATA.NUM_WORKERS",
        "0",
    ).stdout
    for pipeline in ("cpu", "gpu"):
        match = re.search(rf"^{pipeline}\s+([0-9.]+)\s+([0-9.]+)\s+0\.0$", out, re.MULTILINE)
        assert match and 0 <= float(match.group(1)) <= 100, out
        assert (tmp_path / f"{pipeline}_seed0" / "model_final.pth").is_file()


def test_split_bn_bench_prints_both_sides_and_the_ratio():
    out = run_tool("bench/split_bn.py", "--batch", "16", "--groups", "2", "--repeats", "1").stdout
    assert "one call ms" in out and "per group ms" in out
    assert len([line for line in out.splitlines() if line.strip().startswith("ResNet-18")]) == 1


def test_peer_bench_runs_both_sides_and_prints_the_ratios(cifar10, tmp_path):
    pytest.importorskip("lightly", reason="the optional peer library: make bench-peers")
    for split in ("train", "test"):  # 10 images of each of 2 classes: a tiny ImageFolder
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for image in sorted((cifar10 / split / cls).iterdir())[:10]:
                (tmp_path / split / cls / image.name).symlink_to(image)
    out = run_tool(
        "bench/peers.py", "--images", str(tmp_path / "train"), "--test-images",
        str(tmp_path / "test"), "--output", str(tmp_path / "out"), "--methods", "mocov2",
        "--seeds", "0", "--steps", "12", "--batch", "8", "--knn-train", "20", "--knn-test", "20",
    ).stdout  # fmt: skip
    ours = re.search(r"^mocov2\s+ours\s+([0-9.]+) ±", out, re.MULTILINE)
    peer = re.search(
        r"^mocov2\s+peer\s+([0-9.]+) ±.*\| ([0-9.]+)x, ([0-9.]+)x; kNN ours - peer [-+0-9.]+ "
        r"\[[-+0-9.]+, [-+0-9.]+\], p [0-9.]+$",
        out,
        re.M,
    )
    assert ours and peer and float(ours.group(1)) > 0 and float(peer.group(2)) > 0, out
    assert (tmp_path / "out" / "mocov2_seed0" / "peer" / "backbone.pth").is_file()


def test_er_curves_report_tables_each_variant_against_its_parent(tmp_path):
    """bench/er_curves.py's report from finished runs (each seed's metrics.jsonl beside its
    model_final.pth, so nothing trains): the table's mean ± SD and the paired t of BYOL-ER minus
    BYOL at the end, here +1.00 nats of entropy in both seeds."""
    import json

    for seed, shift in ((0, 0.0), (1, 0.5)):
        for method, extra in (("byol", 0.0), ("byol-er", 1.0)):
            run = tmp_path / f"seed{seed}" / method
            run.mkdir(parents=True)
            (run / "model_final.pth").write_bytes(b"")
            rows = [
                {
                    "iteration": it,
                    "er/entropy": -350.0 + shift + extra * (it > 0),
                    "er/reconstruction": -340.0 - it / 10,
                    "I_ER": -10.0 + shift + extra * (it > 0) + it / 10,
                }
                for it in (0, 10, 20, 30)
            ]
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = run_tool(
        "bench/er_curves.py", "--cifar", str(tmp_path), "--output", str(tmp_path),
        "--seeds", "0", "1", "--methods", "byol", "byol-er",
    ).stdout  # fmt: skip
    assert "| byol-er | sphere | -349.75 ± 0.35 | -348.75 ± 0.35 |" in out, out
    assert re.search(r"^\| byol-er - byol \| \+1\.00 \(95% CI \+1\.00 to \+1\.00, p 0\)", out, re.M)
    assert (tmp_path / "er_curves.png").stat().st_size > 0 and (tmp_path / "er.md").is_file()
