"""slurm/submit.py against a real local SLURM cluster (tests/slurm/conftest.py)."""

import json
import re
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import REPO, run_tool

# slurm/submit.py as a process, most tests on a real SLURM cluster
pytestmark = pytest.mark.integration

TINY_PRETRAIN = [
    "MODEL.ARCH",
    "resnet18",
    "MODEL.HEAD_HIDDEN_DIM",
    "64",
    "MODEL.QUEUE_SIZE",
    "32",
    "DATA.CROP_SIZE",
    "32",
    "DATA.NUM_WORKERS",
    "0",
    "SOLVER.BATCH_SIZE",
    "8",
    "LOG_PERIOD",
    "10",
]
PRETRAIN_CFG = "configs/pretrain/demo_R18_mocov2.yaml"


def submit(job_dir, *args):
    out = run_tool(
        "slurm/submit.py", *args[:1], "--cpus-per-task", "1", "--job-dir", str(job_dir), *args[1:]
    ).stdout
    return re.search(r"as job (\d+)", out).group(1)


def wait_for(job_id: str, timeout: float = 600, release_held: bool = False) -> None:
    """Until the job has left the queue. A requeued job is held by SLURM for a while before it may
    start again; with `release_held`, the test lets it start at once (cluster policy, not ours)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = subprocess.run(
            ["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True
        ).stdout.strip()
        if not state:
            return
        if release_held and state == "PENDING":
            subprocess.run(
                ["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True
            )
        time.sleep(2)
    raise AssertionError(f"job {job_id} still queued after {timeout} s")


def task_log(job_dir, job_id, task=0, stream="out"):
    return (job_dir / job_id / f"{job_id}_{task}_log.{stream}").read_text()


def final_state(output_dir):
    return torch.load(output_dir / "model_final.pth", map_location="cpu", weights_only=False)


def test_dry_run_prints_the_script_and_the_resolved_config(tmp_path):
    out = run_tool(
        "slurm/submit.py",
        "pretrain",
        "--config-file",
        PRETRAIN_CFG,
        "--nodes",
        "2",
        "--gpus-per-node",
        "8",
        "--partition",
        "gpu",
        "--dry-run",
        "--job-dir",
        str(tmp_path),
        "SOLVER.BATCH_SIZE",
        "512",
        "DATA.ROOT",
        str(tmp_path),
    ).stdout
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=8",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --partition=gpu",
        "#SBATCH --signal=USR2@120",
        "submitit.core._submit",
    ):
        assert line in out
    assert "BATCH_SIZE: 512" in out and "ARCH: resnet18" in out
    assert not any(tmp_path.iterdir())  # nothing submitted, nothing written


@pytest.mark.parametrize(
    "stage, settings, resolved",
    [
        # Existing folders (relative to the repository, where the job starts): --dry-run checks
        # them.
        (
            "supervised",
            ["MODEL.ARCH", "resnet18", "DATA.ROOT", "tests", "SOLVER.MAX_ITER", "10"],
            ["ARCH: resnet18", "MAX_ITER: 10"],
        ),
        (
            "knn",
            [
                "MODEL.ARCH",
                "resnet18",
                "DATA.ROOT",
                "tests",
                "DATA.VAL_ROOT",
                "docs",
                "KNN.K",
                "20",
            ],
            ["ARCH: resnet18", "ROOT: tests", "VAL_ROOT: docs", "K: 20"],
        ),
    ],
)
def test_single_task_stages_dry_run_without_a_config_file(tmp_path, stage, settings, resolved):
    out = run_tool(
        "slurm/submit.py", stage, "--dry-run", "--job-dir", str(tmp_path), *settings
    ).stdout
    for line in (
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --job-name={stage}",
        "#SBATCH --signal=USR2@120",
        "submitit.core._submit",
        *resolved,
    ):
        assert line in out
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "args, message",
    [
        (["supervised", "--tasks-per-node", "2"], "supervised runs as one task"),
        (["knn", "MODEL.ARCH", "resnet18"], "DATA.ROOT: required"),
        (
            ["nosuch"],
            "the first argument must be a stage: pretrain, lincls, knn, supervised, finetune, "
            "detection, learn_views, sweep",
        ),
    ],
)
def test_bad_submissions_are_one_line_errors(tmp_path, args, message):
    proc = subprocess.run(
        [sys.executable, "slurm/submit.py", *args[:1], "--dry-run", *args[1:]],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    lines = [
        line
        for line in proc.stderr.splitlines()
        if "Warning" not in line and not line.startswith("  warnings.warn")
    ]  # torch's deprecation notes
    assert proc.returncode == 2 and lines == [lines[0]] and lines[0].startswith("error: ")
    assert message in lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--partition", "nosuch"], "unknown partition 'nosuch'"),
        (["--gpus-per-node", "4"], "at most 0 GPUs"),
    ],
)
def test_impossible_requests_fail_at_submission(slurm_cluster, tmp_path, args, message):
    with pytest.raises(AssertionError, match=message):
        # An existing DATA.ROOT: submit.py checks the inputs before it asks the scheduler.
        submit(tmp_path, "pretrain", "--config-file", PRETRAIN_CFG, *args, "DATA.ROOT", "tests")


def test_missing_config_fails_before_submitting(tmp_path):
    with pytest.raises(AssertionError, match="no-such.yaml: no such file"):
        run_tool("slurm/submit.py", "detection", "--config-file", "no-such.yaml", "--dry-run")


def test_pretraining_job_runs_to_completion(slurm_cluster, cifar10, tmp_path):
    out = tmp_path / "out"
    job = submit(
        tmp_path / "jobs",
        "pretrain",
        "--config-file",
        PRETRAIN_CFG,
        "--timeout-min",
        "10",
        *TINY_PRETRAIN,
        "SOLVER.MAX_ITER",
        "4",
        "DATA.ROOT",
        str(cifar10 / "test"),
        "OUTPUT_DIR",
        str(out),
    )
    record = json.loads((tmp_path / "jobs" / job / "submission.json").read_text())
    assert record["stage"] == "pretrain" and record["job_id"] == job
    assert (tmp_path / "jobs" / job / "config.yaml").exists()
    wait_for(job)
    assert final_state(out)["iteration"] == 4, task_log(tmp_path / "jobs", job, stream="err")


def check_requeued_and_resumed(jobs, job, work, slurm_run, direct_run):
    log = task_log(jobs, job)
    assert "(restart 1)" in log, log[-3000:]
    resumed_at = [int(i) for i in re.findall(r"resumed from .* at iteration (\d+)", log)]
    assert resumed_at and resumed_at[0] > 0, log[-3000:]  # continued, not restarted from scratch
    # The same work without interruption ends in the same state.
    run_tool(
        "tools/pretrain.py", "--config-file", PRETRAIN_CFG, *work, "OUTPUT_DIR", str(direct_run)
    )
    requeued, direct = final_state(slurm_run), final_state(direct_run)
    assert requeued["iteration"] == direct["iteration"]
    for name, tensor in direct["model"].items():
        assert torch.equal(requeued["model"][name], tensor), name


def test_preempted_job_checkpoints_requeues_and_resumes(slurm_cluster, cifar10, tmp_path):
    """The signal SLURM sends before a time limit (USR2), sent now: the job checkpoints at the
    iteration boundary (no periodic checkpoint exists yet), requeues, resumes and ends in the
    state of an uninterrupted run."""
    # 60 iterations, signalled after 20: 40 left to react (seconds; the signal arrived within one
    # iteration on a loaded 2-core machine), and the run is repeated uninterrupted below, so
    # every iteration here costs twice.
    work = [
        *TINY_PRETRAIN,
        "SOLVER.MAX_ITER",
        "60",
        "SOLVER.CHECKPOINT_PERIOD",
        "100000",
        "DATA.ROOT",
        str(cifar10 / "test"),
    ]
    jobs, slurm_run = tmp_path / "jobs", tmp_path / "slurm_run"
    job = submit(
        jobs,
        "pretrain",
        "--config-file",
        PRETRAIN_CFG,
        "--timeout-min",
        "20",
        *work,
        "OUTPUT_DIR",
        str(slurm_run),
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        metrics = slurm_run / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.5)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    wait_for(job, timeout=900, release_held=True)
    check_requeued_and_resumed(jobs, job, work, slurm_run, tmp_path / "direct")


def test_preempted_supervised_job_requeues_and_resumes(slurm_cluster, cifar10, tmp_path):
    """The supervised stage through the same registry: signalled once a periodic checkpoint
    exists, it requeues, resumes from that checkpoint and ends with the weights of an
    uninterrupted run."""
    work = [
        "MODEL.ARCH",
        "resnet18",
        "DATA.CROP_SIZE",
        "32",
        "SOLVER.BATCH_SIZE",
        "8",
        "DATA.NUM_WORKERS",
        "0",
        "SOLVER.MAX_ITER",
        "150",
        "SOLVER.CHECKPOINT_PERIOD",
        "10",
        "LOG_PERIOD",
        "10",
        "DATA.ROOT",
        str(cifar10 / "test"),
    ]
    jobs, slurm_run = tmp_path / "jobs", tmp_path / "slurm_run"
    job = submit(jobs, "supervised", "--timeout-min", "20", *work, "OUTPUT_DIR", str(slurm_run))
    deadline = time.time() + 300
    while not (slurm_run / "checkpoint_00000020.pth").exists() and time.time() < deadline:
        time.sleep(0.5)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    wait_for(job, timeout=900, release_held=True)
    log = task_log(jobs, job)
    assert "[supervised] task 0/1" in log and "(restart 1)" in log, log[-3000:]
    resumed_at = [int(i) for i in re.findall(r"resumed from .* at iteration (\d+)", log)]
    assert resumed_at and 0 < resumed_at[0] < 150, log[-3000:]
    direct = tmp_path / "direct"
    run_tool("tools/supervised.py", *work, "OUTPUT_DIR", str(direct))
    requeued, whole = (
        torch.load(run / "model_final.pth", map_location="cpu") for run in (slurm_run, direct)
    )
    assert requeued.keys() == whole.keys()
    differ = [name for name, tensor in whole.items() if not torch.equal(requeued[name], tensor)]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"


def test_preempted_readout_and_view_learning_jobs_requeue_and_resume(
    slurm_cluster, cifar10, tmp_path
):
    """The linear readout and view learning through the same registry, side by side (one CPU
    each): each signalled once its first checkpoint exists, each requeues, resumes from the
    checkpoint its signal wrote and ends as an uninterrupted run of the same work ends."""
    data = str(cifar10 / "test")
    readout = [
        "MODEL.ARCH",
        "resnet18",
        "DATA.CROP_SIZE",
        "32",
        "SOLVER.BATCH_SIZE",
        "16",
        "DATA.NUM_WORKERS",
        "0",
        "DATA.LIMIT",
        "128",
        "DATA.VAL_LIMIT",
        "32",
        "SOLVER.EPOCHS",
        "20",
        "SOLVER.MILESTONES",
        "(10,)",
        "DATA.ROOT",
        data,
        "DATA.VAL_ROOT",
        data,
    ]
    views = [
        "--images",
        data,
        "--limit",
        "256",
        "--size",
        "16",
        "--blocks",
        "2",
        "--hidden",
        "8",
        "--width",
        "8",
        "--batch-size",
        "16",
        "--steps",
        "300",
        "--warmup",
        "10",
        "--save-every",
        "20",
    ]
    jobs, runs = tmp_path / "jobs", {"lincls": tmp_path / "lincls", "views": tmp_path / "views"}
    lincls_job = submit(
        jobs, "lincls", "--timeout-min", "20", *readout, "OUTPUT_DIR", str(runs["lincls"])
    )
    views_job = submit(
        jobs, "learn_views", "--timeout-min", "20", "--", *views, "--output-dir", str(runs["views"])
    )
    for job, run in ((lincls_job, runs["lincls"]), (views_job, runs["views"])):
        deadline = time.time() + 300
        while not (run / "last_checkpoint").exists() and time.time() < deadline:
            time.sleep(0.5)
        subprocess.run(["scancel", "--signal=USR2", job], check=True)
    for job in (lincls_job, views_job):
        wait_for(job, timeout=900, release_held=True)
    for job, stage, unit in (
        (lincls_job, "lincls", "iteration"),
        (views_job, "learn_views", "step"),
    ):
        log = task_log(jobs, job)
        assert f"[{stage}] task 0/1" in log and "(restart 1)" in log, log[-3000:]
        assert re.search(rf"resumed from .* at {unit} [1-9]", log), log[-3000:]
    run_tool("tools/lincls.py", *readout, "OUTPUT_DIR", str(tmp_path / "lincls_direct"))
    run_tool("tools/learn_views.py", *views, "--output-dir", str(tmp_path / "views_direct"))
    requeued, direct = (
        torch.load(run / "checkpoint_00000160.pth", weights_only=False)
        for run in (runs["lincls"], tmp_path / "lincls_direct")
    )
    assert all(torch.equal(requeued["classifier"][k], v) for k, v in direct["classifier"].items())
    assert requeued["val_top1"] == direct["val_top1"]
    requeued, direct = (
        torch.load(run / "generator.pth", weights_only=False)
        for run in (runs["views"], tmp_path / "views_direct")
    )
    assert requeued["state_dict"].keys() == direct["state_dict"].keys()
    assert all(torch.equal(requeued["state_dict"][k], v) for k, v in direct["state_dict"].items())


@pytest.mark.slow
def test_job_past_its_time_limit_requeues_and_resumes(slurm_cluster, cifar10, tmp_path):
    """A real time limit: 3 minutes, told to requeue 60 s before it (SLURM may signal up to 60 s
    earlier still), for about 200 s of work, so at least one requeue."""
    work = [
        *TINY_PRETRAIN,
        "SOLVER.MAX_ITER",
        "2400",
        "SOLVER.CHECKPOINT_PERIOD",
        "100000",
        "DATA.ROOT",
        str(cifar10 / "test"),
    ]
    jobs, slurm_run = tmp_path / "jobs", tmp_path / "slurm_run"
    job = submit(
        jobs,
        "pretrain",
        "--config-file",
        PRETRAIN_CFG,
        "--timeout-min",
        "3",
        "--signal-delay-s",
        "60",
        *work,
        "OUTPUT_DIR",
        str(slurm_run),
    )
    wait_for(job, timeout=1800, release_held=True)
    check_requeued_and_resumed(jobs, job, work, slurm_run, tmp_path / "direct")


def test_two_task_job_forms_one_process_group(slurm_cluster, cifar10, tmp_path):
    out = tmp_path / "out"
    jobs = tmp_path / "jobs"
    job = submit(
        jobs,
        "pretrain",
        "--config-file",
        PRETRAIN_CFG,
        "--tasks-per-node",
        "2",
        "--timeout-min",
        "10",
        *TINY_PRETRAIN,
        "MODEL.SYNC_BN",
        "True",
        "SOLVER.MAX_ITER",
        "2",
        "DATA.ROOT",
        str(cifar10 / "test"),
        "OUTPUT_DIR",
        str(out),
    )
    wait_for(job)
    assert "task 0/2" in task_log(jobs, job, 0) and "task 1/2" in task_log(jobs, job, 1)
    # The checkpoint holds one RNG state per rank, gathered over the process group.
    assert len(final_state(out)["rng"]) == 2


def test_detection_job_writes_its_metrics(slurm_cluster, tmp_path):
    out = tmp_path / "out"
    job = submit(
        tmp_path / "jobs",
        "detection",
        "--config-file",
        "configs/detection/small/fruits_nuts_R_18_FPN.yaml",
        "--timeout-min",
        "10",
        "SOLVER.MAX_ITER",
        "2",
        "TEST.PRECISE_BN.NUM_ITER",
        "1",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
        "0.0",
        "DATALOADER.NUM_WORKERS",
        "1",
        "OUTPUT_DIR",
        str(out),
    )
    wait_for(job)
    metrics = json.loads((out / "metrics_eval.json").read_text())
    assert set(metrics["fruits_nuts_test"]) == {"bbox", "segm"}
