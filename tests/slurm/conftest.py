"""A real one-node SLURM cluster on 127.0.0.1, from Debian's slurm-wlm and munge, started for the
session and stopped after it. Skips (saying why) only where SLURM cannot be installed or started."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from pretrain.common.apt import apt_get_install
from pretrain.common.launch import free_port


def pytest_collection_modifyitems(items):
    """Every SLURM test runs in one pytest-xdist worker (`--dist loadgroup`), so the session's one
    cluster serves them all and no two workers start one."""
    for item in items:
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("slurm"))


def _run(*cmd, check=True, **kwargs):
    return subprocess.run(list(cmd), capture_output=True, text=True, check=check, **kwargs)


def _ensure_packages() -> str | None:
    """Returns why SLURM is unavailable, or None."""
    if all(shutil.which(t) for t in ("slurmctld", "slurmd", "munged", "sbatch")):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "slurm-wlm is not installed and cannot be (needs root and apt-get)"
    return apt_get_install("slurm-wlm", "munge")


def _start_munge() -> bool:
    """Start munged if no working one answers; returns whether we started it."""
    if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0:
        return False
    key = "/etc/munge/munge.key"
    if not os.path.exists(key):
        os.makedirs("/etc/munge", exist_ok=True)
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
    shutil.chown(key, "munge", "munge")
    os.chmod(key, 0o400)
    for folder in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
        os.makedirs(folder, exist_ok=True)
        shutil.chown(folder, "munge", "munge")
    _run("runuser", "-u", "munge", "--", "munged", "--force")
    return True


def _write_conf(folder, nodes: tuple[str, ...] = ()) -> str:
    """One node named after this host; or `nodes`, several slurmd on this machine (each its own
    port, spool, pid and log file: Debian's slurmd runs one per node name, `slurmd -N`)."""
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    with open("/proc/meminfo") as f:
        mem_mb = int(next(line for line in f if line.startswith("MemTotal")).split()[1]) // 1024
    conf = folder / "slurm.conf"
    conf.write_text(f"""ClusterName=infomindet-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
DefMemPerCPU={mem_mb * 3 // 4 // cpus}
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb * 3 // 4} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    if nodes:  # one line per node, and per-node files (%n: the node's name)
        text = conf.read_text()
        for key in ("SlurmdSpoolDir", "SlurmdPidFile", "SlurmdLogFile"):
            start = text.index(f"{key}=")
            end = text.index("\n", start)
            path = text[start + len(key) + 1 : end]
            stem, dot, ext = path.rpartition(".") if key != "SlurmdSpoolDir" else (path, "", "")
            text = text[:start] + f"{key}={stem}-%n{dot}{ext}" + text[end:]
        node_lines = "".join(
            f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={free_port()} "
            f"CPUs={cpus} RealMemory={mem_mb * 3 // 4 // len(nodes)} State=UNKNOWN\n"
            for name in nodes
        )
        start = text.index("NodeName=")
        text = (
            text[:start]
            + node_lines
            + f"PartitionName=debug Nodes={','.join(nodes)} Default=YES MaxTime=INFINITE "
            "State=UP\n"
        )
        conf.write_text(text)
        for name in nodes:
            (folder / f"spool-{name}").mkdir()
    return str(conf)


def _stop_cluster(conf: str) -> None:
    """Cancel the jobs and shut the daemons down, then kill any daemon of this configuration that
    is left: a daemon that outlives its session keeps writing the cluster's state folder, and
    pytest reuses a basetemp name (pytest-N) once it has removed the old one, so a later
    session's cluster at the same path would read a job state another controller rewrote."""
    _run("scancel", "--user", "root", check=False)
    _run("scontrol", "shutdown", check=False)
    deadline = time.time() + 10
    while time.time() < deadline and _run("pgrep", "-f", conf, check=False).stdout.strip():
        time.sleep(0.5)
    _run("pkill", "-9", "-f", conf, check=False)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    why = _ensure_packages()
    if why:
        print(f"SKIP slurm tests: {why}")
        pytest.skip(why)
    folder = tmp_path_factory.mktemp("slurm")
    conf = _write_conf(folder)
    started_munge = _start_munge()
    old_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    _run("slurmctld", "-f", conf)
    _run("slurmd", "-f", conf)
    deadline = time.time() + 60
    while time.time() < deadline:
        state = _run("sinfo", "-h", "-o", "%t", check=False).stdout.strip()
        if state in ("idle", "mix", "alloc"):
            break
        time.sleep(1)
    else:
        logs = "".join(
            (folder / n).read_text()[-1000:]
            for n in ("slurmctld.log", "slurmd.log")
            if (folder / n).exists()
        )
        pytest.fail(f"the local SLURM cluster did not come up (sinfo: {state!r})\n{logs}")
    try:
        yield folder
    finally:
        _stop_cluster(conf)
        if started_munge:
            _run("pkill", "-x", "munged", check=False)
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf


def _local_names(host: str) -> list[str]:
    """Names of this machine that resolve to a loopback address, the host's own first: node names
    a job can use as its master address. ("localhost" is not one: SLURM reads it as the host.)"""
    names = [host]
    with open("/etc/hosts") as f:
        for line in f:
            fields = line.split("#")[0].split()
            if len(fields) >= 2 and fields[0].startswith("127."):
                names += fields[1:]
    usable = []
    for name in dict.fromkeys(names):
        if name == "localhost" or "." in name:
            continue
        try:
            if socket.gethostbyname(name).startswith("127."):
                usable.append(name)
        except OSError:
            pass
    return usable


@pytest.fixture
def two_node_cluster(slurm_cluster):
    """A second cluster of two nodes on this machine, each its own slurmd (`slurmd -N`), named
    after two of the machine's loopback names (so the job's first node is a master address its
    tasks reach); SLURM_CONF points at it while the test runs. Built beside the session's cluster,
    whose munged it shares."""
    host = socket.gethostname().split(".")[0]
    nodes = tuple(_local_names(host)[:2])
    if len(nodes) < 2:
        pytest.skip(
            f"this machine has one loopback name ({nodes}): add a second to /etc/hosts "
            "(127.0.0.1 node2) for the two-node test"
        )
    # A short folder: slurmd's step sockets live under it and a Unix socket path holds at most
    # 107 bytes, which a pytest-xdist worker's tmp_path (.../popen-gw1/test_a_two_node_...) passes.
    folder = Path(tempfile.mkdtemp(prefix="slurm2n-"))
    conf = _write_conf(folder, nodes=nodes)
    old_conf = os.environ["SLURM_CONF"]
    os.environ["SLURM_CONF"] = conf
    _run("slurmctld", "-f", conf)
    for name in nodes:
        _run("slurmd", "-f", conf, "-N", name)
    deadline, state = time.time() + 60, ""
    while time.time() < deadline:
        state = _run("sinfo", "-h", "-o", "%D %t", check=False).stdout.strip()
        if state == "2 idle":
            break
        time.sleep(1)
    try:
        if state != "2 idle":
            logs = "".join(p.read_text()[-800:] for p in folder.glob("*.log"))
            pytest.fail(f"the two-node cluster did not come up (sinfo: {state!r})\n{logs}")
        yield folder
    finally:
        _stop_cluster(conf)
        os.environ["SLURM_CONF"] = old_conf
        shutil.rmtree(folder, ignore_errors=True)
