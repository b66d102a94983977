"""View recipes as data (pretrain/data/recipes.py): the presets against the published recipes at
224 px (hard-coded numbers), the DATA.VIEWS keys, the pixel strengths in proportion to the crop on
both pipelines, and the JigSaw view without colour jitter or grayscale on both pipelines."""

import dataclasses
import glob
import os

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from pretrain.config import load_cfg
from pretrain.data.gpu.pipeline import BatchedViews
from pretrain.data.gpu.rand_augment import apply_op
from pretrain.data.images import EncodedImages, collate_encoded
from pretrain.data.packed import FolderImages
from pretrain.data.recipes import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ViewConfigError,
    preset,
    recipe_from_cfg,
)
from pretrain.data.views import build_views, jigsaw_augmentation

INFOMIN = "configs/pretrain/infomin_R50_200ep.yaml"


def describe(transform):
    """(name, parameters) of a CPU view step, RandomApply unwrapped into (name, p, inner)."""
    if isinstance(transform, T.RandomApply):
        (inner,) = transform.transforms
        return ("RandomApply", transform.p, describe(inner))
    if isinstance(transform, T.RandomResizedCrop):
        return ("RandomResizedCrop", transform.size, transform.scale)
    if isinstance(transform, (T.RandomHorizontalFlip, T.RandomGrayscale)):
        return (type(transform).__name__, transform.p)
    if isinstance(transform, T.ColorJitter):
        return (
            "ColorJitter",
            transform.brightness,
            transform.contrast,
            transform.saturation,
            transform.hue,
        )
    if isinstance(transform, T.GaussianBlur):
        return ("GaussianBlur", transform.kernel_size, transform.sigma)
    return (type(transform).__name__,)


def test_moco_presets_at_224_are_the_published_recipes():
    """facts.md: MoCo v1 grayscale 0.2 then ColorJitter(0.4, 0.4, 0.4, 0.4), flip; MoCo v2
    RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), 0.8), grayscale 0.2, blur sigma U(0.1, 2) with a
    23 px kernel at p 0.5, flip. (InfoMin's: tests/pretrain/test_views.py.)"""
    crop = ("RandomResizedCrop", (224, 224), (0.2, 1.0))
    tail = [("ToTensor",), ("Normalize",)]
    mocov1 = [
        crop,
        ("RandomGrayscale", 0.2),
        ("ColorJitter", [0.6, 1.4], [0.6, 1.4], [0.6, 1.4], [-0.4, 0.4]),
        ("RandomHorizontalFlip", 0.5),
    ] + tail
    mocov2 = [
        crop,
        ("RandomApply", 0.8, ("ColorJitter", [0.6, 1.4], [0.6, 1.4], [0.6, 1.4], [-0.1, 0.1])),
        ("RandomGrayscale", 0.2),
        ("RandomApply", 0.5, ("GaussianBlur", (23, 23), (0.1, 2.0))),
        ("RandomHorizontalFlip", 0.5),
    ] + tail
    for name, expected in (("mocov1", mocov1), ("mocov2", mocov2)):
        cfg = load_cfg(INFOMIN, ["DATA.AUGMENTATION", name])
        got = [describe(t) for t in build_views(cfg).augmentation.transforms]
        assert _names(got) == _names(expected), name
        assert np.allclose(_numbers(got), _numbers(expected), rtol=0, atol=1e-12), name


def _numbers(description) -> list[float]:
    flat = []
    for item in description:
        if isinstance(item, (tuple, list)):
            flat += _numbers(item)
        elif isinstance(item, (int, float)):
            flat.append(float(item))
    return flat


def _names(description) -> list[str]:
    return [item for item in str(description).split("'") if item[:1].isalpha()]


# Configs whose paper sets a strength of its own on top of the preset, and which: SimCLR's colour
# strength 1 (0.8, 0.8, 0.8, 0.2; its App. A), BYOL's and MoCo v3's saturation 0.2 (BYOL Table 6)
# where MoCo v2's preset has 0.4, PIRL's hue 0.2 (its release) where MoCo v1's preset has 0.4.
# Every other field must stay the preset's.
DELIBERATE = {
    "byol_R50_1000ep.yaml": {"jitter"},
    "mocov3_R50_100ep.yaml": {"jitter"},
    "simclr_R50_100ep.yaml": {"jitter"},
    "pirl_R50_800ep.yaml": {"jitter"},
    # the releases' order (flip, jitter, grayscale, blur) and jitter strengths
    "swav_R50_800ep.yaml": {"jitter", "steps"},
    "dino_R50_100ep.yaml": {"jitter", "steps"},
    # CIFAR-10 at 32 px: no blur (SimCLR App. B.9); MoCo's CIFAR demo's own jitter
    # (0.4, 0.4, 0.4, 0.1) at p 0.8 and order on MoCo v1's preset; SimCLR's strength 0.5
    "mocov2_R18.yaml": {"steps"},
    "simclr_R18.yaml": {"steps"},
    "moco_demo_R18.yaml": {"jitter", "jitter_p", "steps"},
    # the ER variants keep their parents' views
    "byol_er_R50_1000ep.yaml": {"jitter"},
    "dino_er_R50_100ep.yaml": {"jitter", "steps"},
    "swav_er_R50_800ep.yaml": {"jitter", "steps"},
    # AMDIM's release: flip, jitter, grayscale at p 0.25, no blur
    "amdim_R50_IN128_50ep.yaml": {"grayscale_p", "steps"},
}


def test_no_shipped_config_changes_its_preset():
    for path in sorted(glob.glob("configs/pretrain/**/*.yaml", recursive=True)):
        cfg = load_cfg(path)
        got = recipe_from_cfg(cfg)
        expected = preset(cfg.DATA.AUGMENTATION, cfg.DATA.CROP_SIZE, tuple(cfg.DATA.CROP_SCALE))
        changed = {
            f.name
            for f in dataclasses.fields(got)
            if getattr(got, f.name) != getattr(expected, f.name)
        }
        assert changed == DELIBERATE.get(os.path.basename(path), set()), path


def test_each_view_key_sets_its_strength():
    cfg = load_cfg(
        INFOMIN,
        [
            "DATA.CROP_SCALE",
            "(0.08, 1.0)",
            "DATA.VIEWS.STEPS",
            "('jitter', 'flip')",
            "DATA.VIEWS.FLIP_P",
            "0.25",
            "DATA.VIEWS.JITTER_STRENGTH",
            "0.25",
            "DATA.VIEWS.JITTER_P",
            "0.5",
            "DATA.VIEWS.GRAYSCALE_P",
            "0.0",
            "DATA.VIEWS.BLUR_SIGMA",
            "(0.5, 1.0)",
            "DATA.VIEWS.BLUR_P",
            "1.0",
            "DATA.VIEWS.RAND_AUGMENT_N",
            "1",
            "DATA.VIEWS.RAND_AUGMENT_M",
            "7",
        ],
    )
    recipe = recipe_from_cfg(cfg)
    assert recipe.scale == (0.08, 1.0) and recipe.steps == ("jitter", "flip")
    assert recipe.flip_p == 0.25 and recipe.jitter == (0.2, 0.2, 0.2, 0.05)
    assert recipe.jitter_p == 0.5 and recipe.grayscale_p == 0.0
    assert recipe.blur_sigma == (0.5, 1.0) and recipe.blur_p == 1.0
    assert (recipe.rand_augment_n, recipe.rand_augment_m) == (1, 7)
    explicit = recipe_from_cfg(load_cfg(INFOMIN, ["DATA.VIEWS.JITTER", "(0.1, 0.2, 0.3, 0.4)"]))
    assert explicit.jitter == (0.1, 0.2, 0.3, 0.4)


@pytest.mark.parametrize(
    "opts, message",
    [
        (["DATA.AUGMENTATION", "simclr"], "DATA.AUGMENTATION 'simclr'"),
        (["DATA.VIEWS.STEPS", "('flip', 'cutout')"], "DATA.VIEWS.STEPS"),
        (["DATA.VIEWS.STEPS", "('flip', 'flip')"], "DATA.VIEWS.STEPS"),
        (["DATA.VIEWS.BLUR_P", "1.5"], "DATA.VIEWS.BLUR_P"),
        (["DATA.VIEWS.BLUR_SIGMA", "(2.0, 0.1)"], "DATA.VIEWS.BLUR_SIGMA"),
        (["DATA.VIEWS.JITTER_STRENGTH", "3.0"], "JITTER_STRENGTH"),  # hue 0.6 > 0.5
        (
            ["DATA.VIEWS.JITTER_STRENGTH", "0.5", "DATA.VIEWS.JITTER", "(0.4, 0.4, 0.4, 0.1)"],
            "both set",
        ),
        (["DATA.VIEWS.RAND_AUGMENT_M", "11"], "DATA.VIEWS.RAND_AUGMENT_M"),
    ],
)
def test_an_invalid_view_key_is_named(opts, message):
    cfg = load_cfg(INFOMIN, opts)
    for build in (build_views, lambda c: BatchedViews(c, "cpu")):
        with pytest.raises(ViewConfigError, match=message):
            build(cfg)


def test_blur_strength_is_in_proportion_to_the_crop():
    """224 px: sigma U(0.1, 2.0), 23 px kernel (the reference); 64 px: exactly 64/224 of the
    sigmas, a 7 px kernel (~10% of the crop), on both pipelines."""

    def blur(size):
        cfg = load_cfg(INFOMIN, ["DATA.CROP_SIZE", str(size)])
        (gaussian,) = build_views(cfg).augmentation.transforms[3].transforms
        gpu = BatchedViews(cfg, "cpu").view
        assert (gpu.blur_kernel, gpu.blur_sigma_pixels) == (gaussian.kernel_size[0], gaussian.sigma)
        return gaussian.kernel_size, gaussian.sigma

    assert blur(224) == ((23, 23), (0.1, 2.0))
    kernel, sigma = blur(64)
    assert kernel == (7, 7)
    assert sigma == (0.1 * (64 / 224), 2.0 * (64 / 224))
    assert np.allclose(np.array(sigma) / np.array([0.1, 2.0]), 64 / 224, rtol=1e-12, atol=0)


def impulse_centroid_shift(translate, size: int, column: int) -> float:
    """How far left `translate` moves a one-column impulse (its centroid), in px."""
    row = np.zeros(size, np.float32)
    row[column] = 1.0
    out = translate(np.tile(row, (8, 1)))
    return column - float((out[0] * np.arange(size)).sum() / out[0].sum())


def test_rand_augment_translation_is_in_proportion_to_the_crop():
    """At magnitude 10 timm's TranslateXRel moves by 45% of the image: 100.8 px at 224 (PyContrast's
    translate_const = int(224 * 0.45) = 100 feeds only TranslateX, which RandAugment does not
    run), 28.8 px = 100.8 * 64/224 at 64, on the CPU pipeline's timm op and the GPU pipeline's."""
    shifts = {}
    for size, column in ((224, 180), (64, 50)):
        cfg = load_cfg(INFOMIN, ["DATA.CROP_SIZE", str(size)])
        rand_augment = build_views(cfg).augmentation.transforms[4]
        (op,) = [op for op in rand_augment.ops if op.name == "TranslateXRel"]
        (level,) = op.level_fn(10.0, op.hparams)

        def timm_translate(array):
            image = Image.fromarray(array, mode="F")
            return np.array(op.aug_fn(image, abs(level), resample=Image.BILINEAR, fillcolor=0.0))

        recipe = BatchedViews(cfg, "cpu").view

        def gpu_translate(array):
            image = torch.from_numpy(np.round(array * 255).astype(np.uint8))
            image = image.expand(1, 3, *image.shape).contiguous()
            out = apply_op(
                "TranslateXRel",
                image,
                torch.tensor([10.0], dtype=torch.float64),
                torch.tensor([False]),
                torch.tensor([False]),
                (0, 0, 0),
                recipe.translate_pct,
            )
            return out[0, 0].numpy().astype(np.float64)

        shifts[size] = impulse_centroid_shift(timm_translate, size, column)
        assert abs(impulse_centroid_shift(gpu_translate, size, column) - shifts[size]) < 1e-3
    assert abs(shifts[224] - 100.8) < 1e-5
    assert abs(shifts[64] / shifts[224] - 64 / 224) < 1e-6


@pytest.fixture(scope="module")
def solid_images(tmp_path_factory):
    """Three single-colour PNGs of different sizes and colours (lossless: both decoders agree)."""
    folder = tmp_path_factory.mktemp("solid")
    for i, (colour, size) in enumerate(
        [((200, 30, 90), (120, 100)), ((10, 250, 128), (90, 90)), ((77, 77, 200), (150, 110))]
    ):
        Image.new("RGB", size, colour).save(folder / f"{i}.png")
    return folder


def normalised(colours) -> torch.Tensor:
    return (
        torch.tensor(colours, dtype=torch.float32) / 255 - torch.tensor(IMAGENET_MEAN)
    ) / torch.tensor(IMAGENET_STD)


def test_jigsaw_view_has_no_colour_jitter_and_no_grayscale_on_either_pipeline(solid_images):
    """facts.md: PyContrast's JigSaw view is RandomResizedCrop(255, scale (0.6, 1)) and a flip.
    On single-colour images every patch pixel must then keep the image's colour: colour jitter
    (p 0.8) or grayscale (p 0.2) would change it in most of 24 patch stacks."""
    names = [describe(t)[0] for t in jigsaw_augmentation().transforms]
    assert names == [
        "RandomResizedCrop",
        "RandomHorizontalFlip",
        "ToTensor",
        "Normalize",
        "JigsawPatches",
    ]
    cfg = load_cfg(
        INFOMIN, ["DATA.CROP_SIZE", "32", "MODEL.JIGSAW.CELL", "20", "MODEL.JIGSAW.PATCH", "16"]
    )
    images = FolderImages(str(solid_images))
    colours = normalised([Image.open(path).getpixel((0, 0)) for path in images.paths])
    views = build_views(cfg)
    for seed in range(8):
        torch.manual_seed(seed)
        for image_path, colour in zip(images.paths, colours):
            patches = views.jigsaw(Image.open(image_path).convert("RGB"))
            assert torch.allclose(patches, colour.view(1, 3, 1, 1).expand_as(patches), atol=1e-5)
    dataset = EncodedImages(images, seed=cfg.SEED)
    for epoch in range(8):
        batch, _ = collate_encoded([dataset[(epoch, i)] for i in range(len(images))])
        (_, _, patches), _ = BatchedViews(cfg, "cpu")(*batch)
        expected = colours.view(-1, 1, 3, 1, 1).expand_as(patches)
        assert torch.allclose(patches, expected, atol=1e-5)
