"""DATA.VIEW_FAMILY patch_offset (InfoMin Fig. 3) and frequency (InfoMin App. B.3): the views are
where and what they should be, reproducible from the sample's seed, and train the MoCo model."""

import glob
import math

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from pretrain.config import load_cfg
from pretrain.data.images import ImageViews, seeded_rngs
from pretrain.data.packed import FolderImages
from pretrain.data.pipelines import ViewPipeline
from pretrain.data.view_families import (
    FrequencyViews,
    PatchDistanceError,
    PatchOffsetViews,
    ViewFamilyError,
    gaussian_kernel_size,
    patch_offset_boxes,
)
from pretrain.data.views import build_views
from tests.conftest import run_tool

PATCH_CFG = "configs/pretrain/views_patch_offset_R18.yaml"
FREQUENCY_CFG = "configs/pretrain/views_frequency_R18.yaml"
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


@pytest.fixture(scope="module")
def bccd(shared_data):
    return shared_data / "bccd" / "JPEGImages"


@pytest.fixture(scope="module")
def photo(bccd):
    """A 48 px square of a real BCCD photograph (square: a crop of scale (1, 1) is all of it)."""
    path = sorted(glob.glob(str(bccd / "*.jpg")))[0]
    return Image.open(path).convert("RGB").crop((200, 150, 248, 198))


def corner_offsets(boxes):
    (l1, t1, r1, b1), (l2, t2, r2, b2) = boxes
    size = r1 - l1
    assert [b1 - t1, r2 - l2, b2 - t2] == pytest.approx([size] * 3, abs=1e-9)  # square, one size
    return l2 - l1, t2 - t1


def test_patches_lie_exactly_the_distance_apart_inside_the_image_in_every_direction():
    for width, height, size, distance in [(64, 64, 16, 20), (200, 40, 16, 100), (30, 30, 10, 0)]:
        quadrants, steep = set(), 0
        for seed in range(200):
            with seeded_rngs(seed):
                boxes = patch_offset_boxes(width, height, size, distance)
            for left, top, right, bottom in boxes:
                assert -1e-9 <= left and right <= width + 1e-9
                assert -1e-9 <= top and bottom <= height + 1e-9
            dx, dy = corner_offsets(boxes)
            assert math.hypot(dx, dy) == pytest.approx(distance, abs=1e-9)
            quadrants.add((dx > 0, dy > 0))
            steep += abs(dy) > abs(dx)
        if distance:
            assert quadrants == {(True, True), (True, False), (False, True), (False, False)}
        if (width, height) == (64, 64):
            assert 50 < steep < 150  # no axis preferred in a square image
        if height == 40:
            assert steep == 0  # |dy| <= 24 < 100 / sqrt(2): only the shallow directions fit


def test_too_small_an_image_is_an_error_not_a_clamp():
    patch_offset_boxes(64, 48, 16, math.hypot(48, 32))  # the largest distance: corner to corner
    with pytest.raises(
        PatchDistanceError,
        match=r"image 64x48 px too small for two 16 px "
        r"patches 58 px apart .*largest distance: 57.7",
    ):
        patch_offset_boxes(64, 48, 16, 58)
    with pytest.raises(PatchDistanceError, match="largest distance: none"):
        patch_offset_boxes(12, 48, 16, 0)


def coordinate_image(side=64):
    """Red = 4 x, green = 4 y of each pixel (its top-left corner), so a view tells where it was
    cut to a quarter pixel."""
    ramp = 4 * np.arange(side, dtype=np.uint8)
    pixels = np.stack(
        [
            np.tile(ramp, (side, 1)),
            np.tile(ramp[:, None], (1, side)),
            np.full((side, side), 128, np.uint8),
        ],
        axis=-1,
    )
    return Image.fromarray(pixels)


def read_corner(view):
    """(left, top) of a view of coordinate_image back from its pixels."""
    red, green = ((view[:2] * STD[:2] + MEAN[:2]) * 255 / 4).double()
    steps = torch.arange(view.shape[-1], dtype=torch.float64)
    return (red - steps).mean().item(), (green - steps[:, None]).mean().item()


def test_the_views_show_the_image_at_their_boxes_after_the_recipe():
    cfg = load_cfg(
        opts=[
            "DATA.VIEW_FAMILY",
            "patch_offset",
            "DATA.AUGMENTATION",
            "flip",
            "DATA.VIEWS.FLIP_P",
            "0.0",
            "DATA.CROP_SIZE",
            "16",
            "DATA.PATCH.DISTANCE",
            "20",
        ]
    )
    views = build_views(cfg)
    assert isinstance(views, PatchOffsetViews) and views.size == 16
    image = coordinate_image()
    for seed in range(20):
        with seeded_rngs(seed):
            boxes = views.boxes(image)
        with seeded_rngs(seed):
            query, key = views(image)
        assert query.shape == key.shape == (3, 16, 16)
        corners = [read_corner(query), read_corner(key)]
        for (left, top), box in zip(corners, boxes):
            # Pillow's bilinear truncates to uint8: the read-back is at most a level (1/4 px) low.
            assert box[0] - 0.26 < left <= box[0] + 1e-6 and box[1] - 0.26 < top <= box[1] + 1e-6
        (l1, t1), (l2, t2) = corners
        assert math.hypot(l2 - l1, t2 - t1) == pytest.approx(20, abs=0.4)


def test_a_patch_size_other_than_the_crop_is_resized_to_it(bccd):
    cfg = load_cfg(PATCH_CFG, ["DATA.PATCH.SIZE", "96", "DATA.PATCH.DISTANCE", "300"])
    image = Image.open(sorted(glob.glob(str(bccd / "*.jpg")))[1]).convert("RGB")
    views = build_views(cfg)
    with seeded_rngs(3):
        boxes = views.boxes(image)
        query, key = views(image)
    assert query.shape == key.shape == (3, 64, 64)
    assert boxes[0][2] - boxes[0][0] == pytest.approx(96) and math.hypot(
        *corner_offsets(boxes)
    ) == pytest.approx(300)


def gaussian_blur_float64(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """An independent separable Gaussian blur in float64: kernel truncated at 4 sigma (scipy's
    radius rule), mirror padding without the edge pixel (torch's 'reflect')."""
    radius = int(4 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    out = np.pad(image.double().numpy(), ((0, 0), (radius, radius), (radius, radius)), "reflect")
    out = np.apply_along_axis(lambda row: np.convolve(row, kernel, "valid"), 2, out)
    out = np.apply_along_axis(lambda col: np.convolve(col, kernel, "valid"), 1, out)
    return torch.from_numpy(out)


def frequency_views(sigma, *opts):
    cfg = load_cfg(
        FREQUENCY_CFG,
        [
            "DATA.CROP_SIZE",
            "48",
            "DATA.CROP_SCALE",
            "(1.0, 1.0)",
            "DATA.VIEWS.FLIP_P",
            "0.0",
            "DATA.FREQUENCY.SIGMA",
            str(sigma),
            "DATA.FREQUENCY.LOW_PASS_VIEW",
            "query",
            *opts,
        ],
    )
    views = build_views(cfg)
    assert isinstance(views, FrequencyViews)
    return views


@pytest.mark.parametrize("sigma", [0.7, 1.0, 2.5])
def test_low_pass_is_the_gaussian_blur_and_the_bands_add_up_to_the_crop(photo, sigma):
    low, high = frequency_views(sigma)(photo)
    crop = TF.to_tensor(photo)  # scale (1, 1) of a square image at its own size: all of it
    assert low.shape == high.shape == (3, 48, 48)
    assert torch.allclose(low + high, (crop - MEAN) / STD, atol=1e-5)
    reference = gaussian_blur_float64(crop, sigma)
    assert torch.allclose((low * STD + MEAN).double(), reference, atol=1e-6)
    kernel = gaussian_kernel_size(sigma, 48)
    assert kernel == 2 * int(4 * sigma + 0.5) + 1
    assert torch.allclose(
        low, (TF.gaussian_blur(crop, [kernel] * 2, [sigma] * 2) - MEAN) / STD, atol=1e-6
    )
    assert high.abs().max() > 0.01  # a real photo has detail above any of these sigmas


@pytest.mark.parametrize("sigma", [0.0, 1e-3])
def test_no_blur_leaves_an_empty_high_pass(photo, sigma):
    low, high = frequency_views(sigma)(photo)
    assert torch.equal(high, torch.zeros_like(high))
    assert torch.allclose(low, (TF.to_tensor(photo) - MEAN) / STD, atol=1e-6)


def test_random_crops_split_into_bands_and_either_view_may_be_the_low_pass(bccd):
    image = Image.open(sorted(glob.glob(str(bccd / "*.jpg")))[2]).convert("RGB")
    views = build_views(load_cfg(FREQUENCY_CFG))
    kernel = gaussian_kernel_size(1.0, 64)
    low_first = []
    for seed in range(16):
        with seeded_rngs(seed):
            crop, low, high = views.bands(image)
        with seeded_rngs(seed):
            query, key = views(image)
        assert torch.equal(low + high, crop) or torch.allclose(low + high, crop, atol=1e-6)
        assert torch.allclose(low, TF.gaussian_blur(crop, [kernel] * 2, [1.0] * 2), atol=1e-6)
        low_view, high_view = (low - MEAN) / STD, high / STD
        low_first.append(torch.allclose(query, low_view, atol=1e-6))
        assert torch.allclose(key if low_first[-1] else query, high_view, atol=1e-6)
        assert torch.allclose(query if low_first[-1] else key, low_view, atol=1e-6)
    assert 3 <= sum(low_first) <= 13


@pytest.mark.parametrize("config", [PATCH_CFG, FREQUENCY_CFG])
def test_both_families_replay_from_the_sample_seed(bccd, config, tmp_path):
    for i, path in enumerate(sorted(glob.glob(str(bccd / "*.jpg")))[:2]):
        (tmp_path / f"{i}.jpg").write_bytes(open(path, "rb").read())
    cfg = load_cfg(config, ["DATA.ROOT", str(tmp_path)])
    dataset = ImageViews(FolderImages(str(tmp_path)), build_views(cfg), seed=cfg.SEED)
    (q1, k1), _ = dataset[(3, 1)]
    (q2, k2), _ = dataset[(3, 1)]
    assert torch.equal(q1, q2) and torch.equal(k1, k2)  # a resume replays it
    (q3, k3), _ = dataset[(4, 1)]
    assert not torch.equal(q1, q3) and not torch.equal(k1, k3)  # a new epoch, new views


def test_the_sweep_parameters_and_the_refused_combinations(tmp_path):
    assert load_cfg(PATCH_CFG, ["DATA.PATCH.DISTANCE", "8"]).DATA.PATCH.DISTANCE == 8
    assert load_cfg(FREQUENCY_CFG, ["DATA.FREQUENCY.SIGMA", "0.7"]).DATA.FREQUENCY.SIGMA == 0.7
    (tmp_path / "0.png").write_bytes(b"")
    images = FolderImages(str(tmp_path))
    refused = [
        (["DATA.PIPELINE", "gpu"], "patch_offset needs DATA.PIPELINE cpu"),
        (["DATA.VIEWS_FROM", "folder"], "patch_offset needs DATA.VIEWS_FROM image"),
        (["DATA.VIEW_FAMILY", "colour"], "DATA.VIEW_FAMILY 'colour': expected one of"),
        (["DATA.PATCH.DISTANCE", "-1"], "DATA.PATCH.SIZE 64 / DISTANCE -1"),
        (
            ["DATA.VIEW_FAMILY", "frequency", "DATA.FREQUENCY.SIGMA", "-0.5"],
            "DATA.FREQUENCY.SIGMA -0.5",
        ),
        (
            ["DATA.VIEW_FAMILY", "frequency", "DATA.FREQUENCY.LOW_PASS_VIEW", "key"],
            "LOW_PASS_VIEW 'key'",
        ),
    ]
    for opts, message in refused:
        with pytest.raises(ViewFamilyError, match=message):
            ViewPipeline(load_cfg(PATCH_CFG, opts), images, "cpu")


@pytest.mark.parametrize("config,data", [(PATCH_CFG, "bccd"), (FREQUENCY_CFG, "cifar10")])
@pytest.mark.integration
def test_two_pretraining_iterations_write_a_checkpoint(config, data, request, tmp_path):
    root = request.getfixturevalue(data)
    root = root / "test" if data == "cifar10" else root
    run_tool(
        "tools/pretrain.py",
        "--config-file",
        config,
        "DATA.ROOT",
        str(root),
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.BATCH_SIZE",
        "8",
        "DATA.NUM_WORKERS",
        "0",
        "LOG_PERIOD",
        "1",
        "OUTPUT_DIR",
        str(tmp_path),
    )
    state = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=False)
    assert state["iteration"] == 2 and state["arch"] == "resnet18"


@pytest.mark.parametrize("config", [PATCH_CFG, FREQUENCY_CFG])
def test_the_jigsaw_branch_still_gets_its_patches_of_the_image(bccd, config):
    cfg = load_cfg(
        config,
        ["MODEL.JIGSAW.ENABLED", "True", "MODEL.JIGSAW.CELL", "32", "MODEL.JIGSAW.PATCH", "24"],
    )
    image = Image.open(sorted(glob.glob(str(bccd / "*.jpg")))[0]).convert("RGB")
    query, key, patches = build_views(cfg)(image)
    assert query.shape == key.shape == (3, 64, 64) and patches.shape == (9, 3, 24, 24)
