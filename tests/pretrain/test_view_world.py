"""tools/view_world.py: worlds of views whose sharing is dialled (InfoMin's toy), and a sweep over
them that measures each point's I_NCE on held-out views of its own world
("{DATA.ROOT}/../heldout")."""

import json

import pytest

from pretrain.commands.sweep import main as sweep
from pretrain.commands.view_world import main as view_world
from pretrain.common.errors import ConfigError
from pretrain.sweep import Sweep, SweepError
from tests.conftest import REPO

CONFIG = str(REPO / "configs" / "pretrain" / "demo_R18_objects.yaml")


def world(folder, *share: str) -> None:
    assert (
        view_world(
            [
                "--output",
                str(folder),
                "--share",
                *share,
                "--instances",
                "24",
                "3",
                "--heldout-instances",
                "16",
            ]
        )
        == 0
    )


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    root = tmp_path_factory.mktemp("worlds")
    world(root / "object", "object=1")
    world(root / "background", "object=1", "background=0.5")
    return root


def test_a_world_holds_instances_and_held_out_instances_of_its_setting(worlds):
    folder = worlds / "background"
    assert len(list((folder / "train").iterdir())) == 24 + 1  # and build_once's marker
    assert len(list((folder / "train" / "000000").glob("*.jpg"))) == 3
    assert len(list((folder / "heldout" / "000000").glob("*.jpg"))) == 2
    assert json.loads((folder / "world.json").read_text())["share"] == {
        "object": 1.0,
        "background": 0.5,
    }


def test_a_world_folder_is_not_rewritten_with_another_setting(worlds):
    with pytest.raises(ConfigError, match="holds a world written with"):
        world(worlds / "object", "object=0.5")
    with pytest.raises(ConfigError, match=r"--share object=half: expected FACTOR=PROBABILITY"):
        world(worlds / "new", "object=half")


@pytest.mark.integration
def test_a_sweep_over_worlds_measures_each_on_its_own_held_out_views(worlds, tmp_path, capsys):
    objects = REPO / ".cache" / "demo_data_v3_0_60_120_3000_1000" / "objects"
    args = [
        "--config-file",
        CONFIG,
        "--output",
        str(tmp_path / "sweep"),
        "--heldout",
        "{DATA.ROOT}/../heldout",
        "--heldout-n",
        "8",
        "--set",
        "DATA.ROOT",
        str(worlds / "object" / "train"),
        "DATA.CROP_SIZE",
        "32",
        "SOLVER.BATCH_SIZE",
        "8",
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.CHECKPOINT_PERIOD",
        "1",
        "MODEL.HEAD_HIDDEN_DIM",
        "32",
        "DATA.NUM_WORKERS",
        "0",
        "SOLVER.CPU_AMP",
        "False",
        "EVAL.KNN_TRAIN_ROOT",
        str(objects / "train"),
        "EVAL.KNN_TRAIN_LIMIT",
        "60",
        "EVAL.KNN_TEST_ROOT",
        str(objects / "test"),
        "EVAL.KNN_TEST_LIMIT",
        "30",
        "EVAL.KNN_K",
        "10",
        "--grid",
        "DATA.ROOT",
        str(worlds / "object" / "train"),
        str(worlds / "background" / "train"),
    ]
    assert sweep(args) == 0
    results = [json.loads(path.read_text()) for path in (tmp_path / "sweep").glob("*/result.json")]
    heldout = {r["setting"].get("DATA.ROOT", "random init"): r["heldout"] for r in results}
    assert heldout == {
        "random init": str(worlds / "object" / "heldout"),
        str(worlds / "object" / "train"): str(worlds / "object" / "heldout"),
        str(worlds / "background" / "train"): str(worlds / "background" / "heldout"),
    }


def test_a_held_out_template_naming_a_missing_folder_or_key_fails_before_anything_runs(
    worlds, tmp_path
):
    opts = [
        "DATA.ROOT",
        str(worlds / "object" / "train"),
        "EVAL.KNN_TRAIN_ROOT",
        str(worlds),
        "EVAL.KNN_TEST_ROOT",
        str(worlds),
    ]
    missing = Sweep(CONFIG, opts, [], str(tmp_path / "a"), "{DATA.ROOT}/../no_such_folder")
    with pytest.raises(SweepError, match="no_such_folder: no such folder"):
        missing.check()
    no_key = Sweep(CONFIG, opts, [], str(tmp_path / "b"), "{DATA.NO_SUCH_KEY}/heldout")
    with pytest.raises(SweepError, match="no config key DATA.NO_SUCH_KEY"):
        no_key.check()
