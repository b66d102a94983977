"""pretrain/common/build_once.py: a cache folder is built once, even when several processes ask
for it at the same moment (parallel test workers, two jobs sharing a cache)."""

import multiprocessing
import time

from pretrain.common.build_once import DONE_MARKER, build_once


def slow_fill(staging: str, log: str) -> None:
    with open(log, "a") as f:
        f.write("built\n")
    time.sleep(0.5)  # long enough for the other process to arrive while this one builds
    with open(f"{staging}/data.txt", "w") as f:
        f.write("ok")


def build(dest: str, log: str) -> None:
    build_once(dest, lambda staging: slow_fill(staging, log))
    with open(f"{dest}/data.txt") as f:  # complete when build_once returns, in every process
        assert f.read() == "ok"


def test_concurrent_builders_build_once_and_both_see_the_folder(tmp_path):
    dest, log = str(tmp_path / "cache" / "data"), str(tmp_path / "fills.log")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=build, args=(dest, log)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert open(log).read() == "built\n"
    assert (tmp_path / "cache" / "data" / DONE_MARKER).exists()
