"""pretrain/common/output_dir.py: the output folder rule every stage applies."""

import os
import subprocess
import sys

import pytest

from pretrain.common.errors import OutputDirError
from pretrain.common.output_dir import prepare_output_dir
from tests.conftest import REPO


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_missing_and_empty_folders_are_fresh(tmp_path):
    assert prepare_output_dir(str(tmp_path / "new" / "run"), resume=False, force=False) == "fresh"
    assert (tmp_path / "new" / "run").is_dir()
    # --resume in an empty folder: nothing to continue
    assert prepare_output_dir(str(tmp_path / "new" / "run"), resume=True, force=False) == "fresh"


def test_a_runs_folder_is_refused_and_left_untouched(tmp_path):
    (tmp_path / "model_final.pth").write_bytes(b"weights")
    (tmp_path / "config.yaml").write_text("SEED: 1\n")
    with pytest.raises(
        OutputDirError,
        match=r"already holds a run \(config.yaml, "
        r"model_final.pth\): pass --resume .* --force",
    ):
        prepare_output_dir(str(tmp_path), resume=False, force=False)
    assert (tmp_path / "model_final.pth").read_bytes() == b"weights"
    assert prepare_output_dir(str(tmp_path), resume=True, force=False) == "resume"
    assert prepare_output_dir(str(tmp_path), resume=False, force=True) == "fresh"
    assert sorted(os.listdir(tmp_path)) == ["config.yaml", "model_final.pth"]  # nothing deleted


def test_stale_temp_files_are_removed_and_do_not_count(tmp_path):
    stale = [
        f"checkpoint_00000100.pth.tmp.{dead_pid()}",
        "metrics_eval.json.tmp",
        f"backbone.pkl.tmp.{dead_pid()}.pkl",
    ]
    live = f"checkpoint_00000200.pth.tmp.{os.getppid()}"  # a writer that still runs
    for name in stale + [live]:
        (tmp_path / name).write_bytes(b"partial")
    with pytest.raises(OutputDirError, match=live.replace(".", r"\.")):
        prepare_output_dir(str(tmp_path), resume=False, force=False)
    assert sorted(os.listdir(tmp_path)) == [live]
    (tmp_path / live).unlink()
    (tmp_path / stale[0]).write_bytes(b"partial")
    assert prepare_output_dir(str(tmp_path), resume=False, force=False) == "fresh"
    assert not any(tmp_path.iterdir())


def test_a_file_in_place_of_the_folder_is_refused(tmp_path):
    (tmp_path / "out").write_text("")
    with pytest.raises(OutputDirError, match="out: exists and is not a folder"):
        prepare_output_dir(str(tmp_path / "out"), resume=True, force=True)


def test_no_shipped_config_names_a_folder_so_runs_never_share_one():
    """Every stage's config file leaves OUTPUT_DIR empty; the folder is derived from the config's
    name and SEED, so two configs, or two seeds of one, get two folders."""
    from detection.config import load_detection_cfg
    from pretrain.config import load_cfg, load_lincls_cfg

    configs = REPO / "configs"
    setters = [
        str(p.relative_to(REPO))
        for p in configs.rglob("*.yaml")
        if any(line.startswith("OUTPUT_DIR") for line in p.read_text().splitlines())
    ]
    assert setters == []

    infomin = str(configs / "pretrain" / "infomin_R50_200ep.yaml")
    assert load_cfg(infomin).OUTPUT_DIR == os.path.join(
        "output", "pretrain", "infomin_R50_200ep_seed0"
    )
    assert load_cfg(infomin, ["SEED", "3"]).OUTPUT_DIR.endswith("infomin_R50_200ep_seed3")
    assert load_cfg(infomin, ["OUTPUT_DIR", "mine"]).OUTPUT_DIR == "mine"
    assert load_cfg().OUTPUT_DIR == os.path.join("output", "pretrain", "defaults_seed0")
    lincls = str(configs / "lincls" / "imagenet_R50.yaml")
    assert load_lincls_cfg(lincls).OUTPUT_DIR == os.path.join(
        "output", "lincls", "imagenet_R50_seed0"
    )

    voc = str(configs / "detection" / "voc_R_50_C4_24k.yaml")
    assert load_detection_cfg(voc, ["SEED", "2"]).OUTPUT_DIR == os.path.join(
        "output", "detection", "voc_R_50_C4_24k_seed2"
    )
    # Detectron2's SEED -1 (a seed drawn per run) has no seed to name the folder by
    assert load_detection_cfg(voc, ["SEED", "-1"]).OUTPUT_DIR == os.path.join(
        "output", "detection", "voc_R_50_C4_24k"
    )
