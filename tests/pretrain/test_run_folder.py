"""The output folder of a training run (pretrain/engine/run_folder.py) and the renamed config keys
(pretrain/config.py): refused, resumed, forced, cleaned, on real folders and checkpoints."""

import json
import math

import pytest

from pretrain.common.errors import ConfigError, OutputDirError
from pretrain.config import (
    get_lincls_cfg,
    get_supervised_cfg,
    load_cfg,
    load_lincls_cfg,
    load_supervised_cfg,
)
from pretrain.engine.checkpoint import save_checkpoint
from pretrain.engine.metrics import METRICS_FILE, read_metrics
from pretrain.engine.run_folder import open_run_folder
from pretrain.engine.schedule import warmup_cosine
from pretrain.pretraining import MODEL_KEYS, train


def supervised_cfg(output_dir, *opts):
    cfg = get_supervised_cfg()
    cfg.merge_from_list(["OUTPUT_DIR", str(output_dir), *opts])
    return cfg


def finished_run(folder, iteration=4, *opts):
    """A folder as a run leaves it: config, metrics rows up to `iteration` and beyond (a kill
    after logging), a checkpoint at `iteration`, a temp file of a killed write."""
    cfg = supervised_cfg(folder, *opts)
    folder.mkdir()
    (folder / "config.yaml").write_text(cfg.dump())
    (folder / METRICS_FILE).write_text(
        "".join(json.dumps({"iteration": i, "loss": 1.0 / i}) + "\n" for i in range(1, 7))
    )
    save_checkpoint(
        str(folder), f"checkpoint_{iteration:08d}.pth", {"cfg": cfg.dump(), "iteration": iteration}
    )
    (folder / f"checkpoint_{iteration + 2:08d}.pth.tmp.99999999").write_bytes(b"half written")
    return cfg


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_non_empty_folder_is_refused_without_resume_or_force(tmp_path):
    folder = tmp_path / "run"
    finished_run(folder)
    before = snapshot(folder)
    with pytest.raises(OutputDirError, match=r"run is not empty .*--resume.*--force"):
        open_run_folder(supervised_cfg(folder), ("MODEL",), "iteration")
    assert snapshot(folder) == before


def test_resume_drops_repeated_rows_and_stale_temp_files(tmp_path, capsys):
    folder = tmp_path / "run"
    finished_run(folder, iteration=4)
    start = open_run_folder(supervised_cfg(folder), ("MODEL",), "iteration", resume=True)
    assert start.step("iteration") == 4 and start.checkpoint.endswith("checkpoint_00000004.pth")
    assert [row["iteration"] for row in read_metrics(str(folder))] == [1, 2, 3, 4]
    assert not list(folder.glob("*.tmp.*"))
    assert "dropped 2 rows" in capsys.readouterr().out


def test_resume_with_another_model_is_refused_before_anything_is_written(tmp_path):
    folder = tmp_path / "run"
    finished_run(folder, 4, "MODEL.ARCH", "resnet18")
    before = snapshot(folder)
    with pytest.raises(ConfigError, match=r"MODEL.ARCH: 'resnet18' -> 'resnet50'"):
        open_run_folder(supervised_cfg(folder), ("SEED", "MODEL"), "iteration", resume=True)
    with pytest.raises(ConfigError, match=r"SEED: 0 -> 1"):
        open_run_folder(
            supervised_cfg(folder, "MODEL.ARCH", "resnet18", "SEED", "1"),
            ("SEED", "MODEL"),
            "iteration",
            resume=True,
        )
    assert snapshot(folder) == before
    # Keys that do not define the model may change: a longer schedule, another batch size.
    start = open_run_folder(
        supervised_cfg(folder, "MODEL.ARCH", "resnet18", "SOLVER.MAX_ITER", "5000"),
        ("SEED", "MODEL"),
        "iteration",
        resume=True,
    )
    assert start.step("iteration") == 4


def test_resume_without_a_checkpoint_says_so_and_starts_fresh(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / METRICS_FILE).write_text('{"iteration": 1, "loss": 2.0}\n')  # killed before one
    (folder / "notes.txt").write_text("mine")
    start = open_run_folder(supervised_cfg(folder), ("MODEL",), "iteration", resume=True)
    assert start.state is None and start.step("iteration") == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"--resume: no checkpoint in {folder}; starting fresh" in lines
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "notes.txt"]


def test_force_deletes_the_previous_runs_files_and_nothing_else(tmp_path):
    folder = tmp_path / "run"
    finished_run(folder)
    (folder / "notes.txt").write_text("mine")
    (folder / "tensorboard").mkdir()
    start = open_run_folder(supervised_cfg(folder), ("MODEL",), "iteration", force=True)
    assert start.state is None
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "notes.txt"]


def test_pretraining_refuses_a_used_folder_before_writing(cifar10, tmp_path):
    folder = tmp_path / "run"
    finished_run(folder)
    before = snapshot(folder)
    cfg = load_cfg(
        opts=[
            "MODEL.ARCH",
            "resnet18",
            "DATA.ROOT",
            str(cifar10 / "test"),
            "SOLVER.BATCH_SIZE",
            "8",
            "OUTPUT_DIR",
            str(folder),
        ]
    )
    with pytest.raises(OutputDirError):
        train(cfg)
    assert snapshot(folder) == before
    assert "MODEL" in MODEL_KEYS and "DATA.VIEWS" in MODEL_KEYS  # arch, head, method; views


@pytest.mark.parametrize(
    "load, old, new",
    [
        (load_supervised_cfg, "ARCH", "MODEL.ARCH"),
        (load_supervised_cfg, "BASE_LR", "SOLVER.BASE_LR"),
        (load_supervised_cfg, "TRAIN_ROOT", "DATA.ROOT"),
        (load_lincls_cfg, "LR", "SOLVER.BASE_LR"),
        (load_lincls_cfg, "CHECKPOINT", "MODEL.WEIGHTS"),
        (load_lincls_cfg, "EPOCHS", "SOLVER.EPOCHS"),
    ],
)
def test_an_old_key_names_its_new_name(tmp_path, load, old, new):
    with pytest.raises(ConfigError, match=f"command-line override: Key {old} was renamed to {new}"):
        load(opts=[old, "1"])
    yaml = tmp_path / "old.yaml"
    yaml.write_text(f"{old}: 1\n")
    with pytest.raises(ConfigError, match=f"old.yaml: Key {old} was renamed to {new}"):
        load(str(yaml))


def test_the_three_configs_share_their_names():
    pretrain, supervised, lincls = load_cfg(), get_supervised_cfg(), get_lincls_cfg()
    for key in (
        "MODEL.ARCH",
        "MODEL.WIDTH",
        "MODEL.STEM",
        "DATA.ROOT",
        "DATA.CROP_SIZE",
        "DATA.NUM_WORKERS",
        "SOLVER.BATCH_SIZE",
        "SOLVER.BASE_LR",
        "SOLVER.MOMENTUM",
        "SOLVER.WEIGHT_DECAY",
        "SEED",
        "OUTPUT_DIR",
    ):
        for cfg in (pretrain, supervised, lincls):
            node = cfg
            for part in key.split("."):
                assert part in node, key
                node = node[part]


def test_pretraining_schedule_is_the_multiplier_it_was():
    """The multiplier pretraining's LambdaLR used before the shared schedule, to the last bit."""

    def before(it, warmup, total):
        if it < warmup:
            return (it + 1) / warmup
        progress = (it - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    for warmup, total in ((0, 37), (5, 37), (500, 100_000)):
        schedule = warmup_cosine(1.0, warmup, total)
        assert all(
            schedule(it) == before(it, warmup, total)
            for it in range(0, total + 1, max(1, total // 997))
        )


def test_a_start_that_failed_before_its_first_step_is_no_run(tmp_path):
    """A start that stopped on a typo or on its data leaves config.yaml (and its data check's
    files); a rerun starts there without --force, and a real run's folder is still refused."""
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("config.yaml", "data_check.json", "bad_images.txt"):
        (folder / name).write_text("from the failed start\n")
    start = open_run_folder(supervised_cfg(folder), ("MODEL",), "iteration")
    assert start.state is None
    assert "from the failed start" not in (folder / "config.yaml").read_text()
    (folder / "metrics.jsonl").write_text('{"iteration": 1}\n')
    with pytest.raises(OutputDirError, match="not empty"):
        open_run_folder(supervised_cfg(folder), ("MODEL",), "iteration")


def test_the_ctrl_c_line_names_the_checkpoint_to_resume_from(tmp_path):
    from pretrain.common import cli

    open_run_folder(supervised_cfg(tmp_path / "fresh"), ("MODEL",), "iteration")
    assert "no checkpoint was written" in cli._hint_text(cli._registered_hint)
    folder = tmp_path / "run"
    finished_run(folder, iteration=4)
    open_run_folder(supervised_cfg(folder), ("MODEL",), "iteration", resume=True)
    assert cli._hint_text(cli._registered_hint) == (
        f"the last checkpoint is {folder / 'checkpoint_00000004.pth'}: rerun the same command "
        "with --resume"
    )


@pytest.mark.integration
def test_a_diverging_run_stops_names_the_step_and_keeps_its_last_finite_checkpoint(
    cifar10, tmp_path
):
    """An lr far too high: the loss becomes NaN, the tool exits 2 with one line naming the
    iteration and the checkpoint before it, and no model_final.pth claims a finished model."""
    import subprocess
    import sys

    from tests.conftest import REPO

    folder = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "tools/pretrain.py",
            "MODEL.ARCH",
            "resnet18",
            "MODEL.QUEUE_SIZE",
            "16",
            "DATA.ROOT",
            str(cifar10 / "test"),
            "DATA.CROP_SIZE",
            "32",
            "DATA.NUM_WORKERS",
            "0",
            "SOLVER.BATCH_SIZE",
            "8",
            "SOLVER.MAX_ITER",
            "6",
            "SOLVER.CHECKPOINT_PERIOD",
            "1",
            "SOLVER.BASE_LR",
            "1e30",
            "OUTPUT_DIR",
            str(folder),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "pretraining diverged at iteration" in last and "Traceback" not in proc.stderr
    assert not (folder / "model_final.pth").exists()
    saved = sorted(folder.glob("checkpoint_*.pth"))
    assert saved and f"the last checkpoint, written before, is {saved[-1]}" in last
    import torch

    state = torch.load(saved[-1], map_location="cpu", weights_only=False)["model"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
