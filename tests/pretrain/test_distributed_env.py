"""The one way from a launcher's environment to torch.distributed's variables
(pretrain/common/distributed_env.py), with the variables SLURM sets in a task of a real job."""

import os

import pytest

from pretrain.common.distributed_env import TORCH_VARIABLES, export_distributed_env


@pytest.fixture(autouse=True)
def restored_environment():
    """export_distributed_env writes os.environ itself, and monkeypatch restores what it saw
    (including the exported values it was asked to delete): put the whole environment back, or
    the processes later tests start would try to join a 4-process job."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def slurm_task(monkeypatch, procid: int, job_id: str = "4242", ntasks: int = 4, nodes: int = 2):
    """The SLURM variables of task `procid` of a job of `ntasks` tasks on `nodes` nodes."""
    for name in TORCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    per_node = ntasks // nodes
    monkeypatch.setenv("SLURM_JOB_ID", job_id)
    monkeypatch.setenv("SLURM_NTASKS", str(ntasks))
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", str(nodes))
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[07-08]")
    monkeypatch.setenv("SLURM_PROCID", str(procid))
    monkeypatch.setenv("SLURM_LOCALID", str(procid % per_node))
    monkeypatch.setenv("SLURM_NODEID", str(procid // per_node))


def exported(monkeypatch) -> dict:
    import os

    assert export_distributed_env() == "slurm"
    values = {name: os.environ[name] for name in TORCH_VARIABLES}
    for name in TORCH_VARIABLES:  # the next task of the test starts clean
        monkeypatch.delenv(name)
    return values


def test_each_task_of_a_multi_node_job_gets_its_rank_and_one_master(monkeypatch):
    tasks = []
    for procid in range(4):
        slurm_task(monkeypatch, procid)
        tasks.append(exported(monkeypatch))
    assert [t["RANK"] for t in tasks] == ["0", "1", "2", "3"]
    assert [t["LOCAL_RANK"] for t in tasks] == ["0", "1", "0", "1"]
    assert {t["WORLD_SIZE"] for t in tasks} == {"4"} and {t["LOCAL_WORLD_SIZE"] for t in tasks} == {
        "2"
    }
    # Every task agrees on the master without talking: the first node, a port from the job id.
    assert {t["MASTER_ADDR"] for t in tasks} == {"gpu07"}
    assert len({t["MASTER_PORT"] for t in tasks}) == 1
    slurm_task(monkeypatch, 0, job_id="4243")
    assert exported(monkeypatch)["MASTER_PORT"] != tasks[0]["MASTER_PORT"]


def test_a_users_master_port_and_torchruns_variables_are_kept(monkeypatch):
    slurm_task(monkeypatch, 1)
    monkeypatch.setenv("MASTER_PORT", "29533")
    assert exported(monkeypatch)["MASTER_PORT"] == "29533"
    # torchrun inside a SLURM job set everything already: nothing is derived.
    slurm_task(monkeypatch, 1)
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert export_distributed_env() == "torchrun"
    import os

    assert os.environ["RANK"] == "5" and "MASTER_ADDR" not in os.environ


@pytest.mark.parametrize("ntasks", [1, None])
def test_one_task_or_no_scheduler_is_a_single_process(monkeypatch, ntasks):
    import os

    slurm_task(monkeypatch, 0, ntasks=ntasks or 1, nodes=1)
    if ntasks is None:
        for name in list(os.environ):
            if name.startswith("SLURM_"):
                monkeypatch.delenv(name)
    assert export_distributed_env() == "single"
    assert not any(name in os.environ for name in TORCH_VARIABLES)
