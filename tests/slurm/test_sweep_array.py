"""tools/sweep.py --slurm on a real local SLURM cluster (tests/slurm/conftest.py): the points run
as the tasks of one job array and the table is collected from their results."""

import json

import pytest

from tests.conftest import run_tool
from tests.pretrain.test_sweep import NAMES, sweep_args
from tests.slurm.test_submit import task_log, wait_for

pytestmark = pytest.mark.integration  # a real SLURM cluster


@pytest.mark.slow
def test_points_run_as_one_job_array_and_are_collected(slurm_cluster, cifar10, tmp_path):
    output, jobs = tmp_path / "out", tmp_path / "jobs"
    run_tool(
        "tools/sweep.py",
        *sweep_args(cifar10, output),
        "--slurm",
        "--cpus-per-task",
        "1",
        "--timeout-min",
        "10",
        "--job-dir",
        str(jobs),
    )
    record = json.loads((output / "submission.json").read_text())
    assert record["points"] == ["random_init", *NAMES]
    array = {job_id.split("_")[0] for job_id in record["job_ids"]}
    assert len(array) == 1 and len(record["job_ids"]) == 3  # one array, one task per point
    wait_for(array.pop(), timeout=900)
    for job_id, name in zip(record["job_ids"], record["points"]):
        assert (output / name / "result.json").exists(), task_log(jobs, job_id, stream="err")
    table = run_tool("tools/sweep.py", *sweep_args(cifar10, output), "--collect").stdout
    assert "| random init |" in table and "Not finished" not in table
    rows = json.loads((output / "results.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["random_init", *NAMES]
