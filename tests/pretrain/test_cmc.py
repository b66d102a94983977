"""CMC's channel-split views on real images, its config errors, and a pretraining run through the
command-line tool that checkpoints, resumes, and is refused by the Detectron2 converter."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import pytest
import torch
from PIL import Image

from detection.convert import ConversionError, convert
from pretrain.config import load_cfg
from pretrain.data.color_spaces import ColorSpaceError, normalize, to_space
from pretrain.data.images import seeded_rngs
from pretrain.data.pipelines import ViewPipeline
from pretrain.data.recipes import ViewConfigError, recipe_from_cfg
from pretrain.data.views import ChannelSplitViews, build_views, compose
from pretrain.models.cmc import CMCConfigError, build_cmc
from tests.conftest import REPO, run_tool

CPU_CONFIG = str(REPO / "configs" / "pretrain" / "cmc_lab_R18_cpu.yaml")


@pytest.fixture(scope="module")
def bccd(shared_data) -> Path:
    return shared_data / "bccd" / "JPEGImages"


def first_image(folder: Path) -> Image.Image:
    with Image.open(sorted(folder.glob("*.jpg"))[0]) as img:
        return img.convert("RGB")


@pytest.mark.parametrize("space, split", [("lab", (1, 2)), ("rgb", (1, 2)), ("hsv", (2, 1))])
def test_views_are_the_channel_groups_of_one_augmented_image(bccd, space, split):
    cfg = load_cfg(CPU_CONFIG, ["DATA.COLOR_SPACE", space, "DATA.CHANNEL_SPLIT", str(split)])
    views = build_views(cfg)
    assert isinstance(views, ChannelSplitViews)
    image = first_image(bccd)
    with seeded_rngs(5):
        first, second = views(image)
    with seeded_rngs(5):  # the same draws: the one augmented RGB view both come from
        rgb = compose(recipe_from_cfg(cfg), imagenet_normalize=False)(image)
    assert first.shape == (split[0], 32, 32) and second.shape == (split[1], 32, 32)
    whole = normalize(to_space(rgb, space), space)
    assert torch.equal(torch.cat([first, second]), whole)
    if space == "rgb":  # R | GB, each channel from [0, 1] to [-1, 1]
        assert torch.allclose(first, rgb[:1] * 2 - 1) and torch.allclose(second, rgb[1:] * 2 - 1)
    if space == "lab":  # L from [0, 100] to [-1, 1], against OpenCV's L
        opencv_l = cv2.cvtColor(rgb.permute(1, 2, 0).numpy(), cv2.COLOR_RGB2Lab)[..., 0]
        assert ((first[0] + 1) * 50 - torch.from_numpy(opencv_l)).abs().max() < 0.4


def test_config_errors_name_the_keys(bccd):
    with pytest.raises(ViewConfigError, match="DATA.COLOR_SPACE 'lab' is read by CMC only"):
        build_views(load_cfg(opts=["DATA.COLOR_SPACE", "lab"]))
    with pytest.raises(ViewConfigError, match="needs DATA.COLOR_SPACE"):
        build_views(load_cfg(opts=["MODEL.CMC.ENABLED", "True"]))
    with pytest.raises(ValueError, match="MODEL.CMC.ENABLED needs DATA.PIPELINE cpu"):
        ViewPipeline(load_cfg(CPU_CONFIG, ["DATA.PIPELINE", "gpu"]), None, "cpu")
    # The kNN monitor reads both view backbones (CMC.readout_backbone); one embedding it has not.
    with pytest.raises(CMCConfigError, match="EVAL.KNN_FEATURES embedding"):
        build_cmc(load_cfg(CPU_CONFIG, ["EVAL.KNN_PERIOD", "10", "EVAL.KNN_FEATURES", "embedding"]))
    with pytest.raises(ColorSpaceError, match="DATA.CHANNEL_SPLIT"):
        build_views(load_cfg(CPU_CONFIG, ["DATA.CHANNEL_SPLIT", "(2, 2)"]))


@pytest.mark.integration
def test_cmc_pretrains_checkpoints_resumes_and_is_refused_by_the_converter(bccd, tmp_path):
    out = tmp_path / "out"
    common = ["--config-file", CPU_CONFIG, "DATA.ROOT", str(bccd), "OUTPUT_DIR", str(out)]
    run_tool("tools/pretrain.py", *common)
    assert (out / "checkpoint_00000001.pth").exists()
    resumed = run_tool("tools/pretrain.py", "--resume", *common, "SOLVER.MAX_ITER", "3").stdout
    assert "resumed from" in resumed and "iter 3/3" in resumed
    assert "does not convert to Detectron2" in resumed and "tools/convert.py" not in resumed

    with open(out / "metrics.jsonl") as f:
        first = json.loads(f.readline())
    # The loss is the two directions' sum; each term starts near log(K + 1) = log 65, and I_NCE
    # is per direction, from their mean.
    terms = (first["loss/1->2"], first["loss/2->1"])
    assert first["loss"] == pytest.approx(sum(terms))
    assert all(3.0 < term < 6.0 for term in terms)
    assert first["I_NCE"] == pytest.approx(math.log(65) - sum(terms) / 2)

    state = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    assert state["iteration"] == 3
    model = state["model"]
    for view, channels in (("view1", 1), ("view2", 2)):  # L | ab
        for encoder in ("query_encoder", "key_encoder"):
            assert model[f"{view}.{encoder}.backbone.conv1.weight"].shape[1] == channels
        assert model[f"{view}.queue"].shape == (64, 128)
        assert int(model[f"{view}.queue_ptr"]) == 3 * 8  # three batches of 8 keys, each queue
        assert torch.allclose(model[f"{view}.queue"][:24].norm(dim=1), torch.ones(24))

    with pytest.raises(ConversionError, match="a CMC checkpoint"):
        convert(str(out / "model_final.pth"), str(tmp_path / "cmc.pkl"))


def saved_generator(tmp_path, split: int = 1) -> str:
    """A small trained-looking generator: a volume-preserving flow whose blocks are perturbed away
    from the identity they start as."""
    from pretrain.views_learned import PixelFlow, save_generator

    torch.manual_seed(0)
    flow = PixelFlow("vp", blocks=2, hidden=8)
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    path = str(tmp_path / "generator.pth")
    save_generator(path, flow, split)
    return path


def test_learned_views_are_the_frozen_generators_split_of_one_augmented_image(bccd, tmp_path):
    """DATA.COLOR_SPACE learned: CMC's two views are g(x) split at the generator's own split, x
    the ImageNet-normalised augmented image (InfoMin Sec. 4.2); the readout applies g too."""
    from pretrain.views_learned import LearnedViews

    path = saved_generator(tmp_path)
    cfg = load_cfg(CPU_CONFIG, ["DATA.COLOR_SPACE", "learned", "DATA.LEARNED_VIEWS", path])
    image = first_image(bccd)
    views = build_views(cfg)  # outside the seeded draws: building g draws its initial weights
    with seeded_rngs(5):
        first, second = views(image)
    with seeded_rngs(5):
        x = compose(recipe_from_cfg(cfg))(image)
    generator = LearnedViews.from_file(path).generator
    with torch.no_grad():
        expected = generator(x[None])[0]
    assert first.shape == (1, 32, 32) and second.shape == (2, 32, 32)
    assert torch.equal(torch.cat([first, second]), expected)
    assert not torch.allclose(expected, x, atol=1e-3)  # not the identity: g is applied

    torch.manual_seed(0)
    model = build_cmc(cfg).eval()
    assert model.view1.query_encoder.backbone.conv1.in_channels == 1
    backbone = model.readout_backbone(cfg)
    with torch.no_grad():
        features = backbone(x[None])
        direct = torch.cat(
            [
                model.view1.query_encoder.backbone(expected[None, :1]),
                model.view2.query_encoder.backbone(expected[None, 1:]),
            ],
            dim=1,
        )
    torch.testing.assert_close(features, direct)


def test_learned_views_name_a_missing_file_and_a_split_other_than_the_generators(tmp_path):
    from pretrain.common.errors import ConfigError

    with pytest.raises(ConfigError, match="DATA.LEARNED_VIEWS must name a generator file"):
        build_views(load_cfg(CPU_CONFIG, ["DATA.COLOR_SPACE", "learned"]))
    with pytest.raises(ConfigError, match="no such file"):
        build_views(
            load_cfg(
                CPU_CONFIG,
                ["DATA.COLOR_SPACE", "learned", "DATA.LEARNED_VIEWS", str(tmp_path / "none.pth")],
            )
        )
    path = saved_generator(tmp_path, split=2)
    with pytest.raises(ConfigError, match=r"learned with the split \(2, 1\)"):
        build_cmc(load_cfg(CPU_CONFIG, ["DATA.COLOR_SPACE", "learned", "DATA.LEARNED_VIEWS", path]))


@pytest.mark.integration
def test_cmc_pretrains_on_learned_views(bccd, tmp_path):
    out = tmp_path / "out"
    path = saved_generator(tmp_path)
    run_tool(
        "tools/pretrain.py",
        "--config-file",
        CPU_CONFIG,
        "DATA.ROOT",
        str(bccd),
        "OUTPUT_DIR",
        str(out),
        "DATA.COLOR_SPACE",
        "learned",
        "DATA.LEARNED_VIEWS",
        path,
        "SOLVER.MAX_ITER",
        "2",
    )
    state = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    assert state["iteration"] == 2
    assert state["model"]["view2.query_encoder.backbone.conv1.weight"].shape[1] == 2


def test_three_views_are_three_channel_groups_measured_over_their_graph(bccd):
    """L | a | b (CMC's three views of one image): one encoder each, I_NCE measured in every
    direction of the graph the model was trained on, and the readout concatenating all three."""
    from pretrain.evaluation.mutual_info import measure_info_nce

    opts = [
        "DATA.CHANNEL_SPLIT",
        "(1, 1, 1)",
        "SOLVER.BATCH_SIZE",
        "8",
        "MODEL.ARCH",
        "resnet18",
        "DATA.CROP_SIZE",
        "32",
    ]
    cfg = load_cfg(CPU_CONFIG, opts)
    with seeded_rngs(5):
        groups = build_views(cfg)(first_image(bccd))
    assert [g.shape[0] for g in groups] == [1, 1, 1]
    with pytest.raises(CMCConfigError, match="MODEL.CMC.GRAPH 'ring'"):
        build_cmc(load_cfg(CPU_CONFIG, [*opts, "MODEL.CMC.GRAPH", "ring"]))
    for graph, directions in (
        ("core", {"12", "21", "13", "31"}),
        ("full", {"12", "21", "13", "31", "23", "32"}),
    ):
        cfg = load_cfg(CPU_CONFIG, [*opts, "MODEL.CMC.GRAPH", graph])
        torch.manual_seed(0)
        model = build_cmc(cfg)
        result = measure_info_nce(model, cfg, str(bccd), 16)
        found = {key[len("i_nce_") :] for key in result if key.startswith("i_nce_")}
        assert found == directions
        assert result["i_nce"] == pytest.approx(
            sum(result[f"i_nce_{d}"] for d in directions) / len(directions)
        )
    features = model.readout_backbone(cfg).eval()(torch.randn(2, 3, 32, 32))
    assert features.shape == (2, 3 * 512)
