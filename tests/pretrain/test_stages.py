"""The stage registry shared by the tools and slurm/submit.py (pretrain/stages.py)."""

import pytest

from pretrain.common.errors import ConfigError
from pretrain.stages import STAGES, _resolve, get_stage


def test_every_stage_names_functions_that_exist():
    assert set(STAGES) == {
        "pretrain",
        "lincls",
        "knn",
        "supervised",
        "finetune",
        "detection",
        "learn_views",
        "sweep",
    }
    for stage in STAGES.values():
        for target in (stage.loader, stage.runner, stage.describer):
            assert callable(_resolve(target)), (stage.name, target)


def test_a_stage_loads_its_config_from_overrides_and_describes_it():
    knn = get_stage("knn")
    cfg = knn.load_config("", ["DATA.ROOT", "a", "DATA.VAL_ROOT", "b", "KNN.K", "7"])
    assert cfg.KNN.K == 7 and "VAL_ROOT: b" in knn.describe(cfg)
    with pytest.raises(ConfigError, match="DATA.VAL_ROOT: required"):
        knn.load_config("", ["DATA.ROOT", "a"])
    assert (
        get_stage("pretrain").load_config("", ["MODEL.ARCH", "resnet18"]).MODEL.ARCH == "resnet18"
    )


def test_view_learning_takes_its_tools_arguments_as_a_stage():
    stage = get_stage("learn_views")
    args = stage.load_config("", ["--", "--images", "a", "--steps", "7", "--output-dir", "o"])
    assert args.steps == 7 and '"images": "a"' in stage.describe(args)
    with pytest.raises(ConfigError, match="learn_views arguments '--steps x'"):
        stage.load_config("", ["--steps", "x"])
    with pytest.raises(ConfigError, match="learn_views takes no config file"):
        stage.load_config("c.yaml", [])


def test_an_unknown_stage_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown stage 'nosuch': one of pretrain, lincls"):
        get_stage("nosuch")
