"""The batched ops of DATA.PIPELINE gpu against the reference the CPU pipeline runs (PIL through
torchvision and timm), given the same parameters, on real photographs (BCCD). They run on CPU
tensors, and again on CUDA tensors where there is a GPU (the `gpu` mark: float arithmetic on the
device, fused multiply-adds included, must keep the same tolerances).

Tolerances (uint8 levels), stated once: exact for the ops whose PIL arithmetic is reproduced
(blends, grayscale, equalize, posterize, solarize, ...); at most 1 level for Gaussian blur,
autocontrast, the antialiased resized crop and bilinear affine ops (float rounding); hue (PIL
quantises H, S, V to 8 bits, we do not) and bicubic affine ops (PIL's cubic uses a = -0.5, torch's
a = -0.75) differ by a few levels at edges, under 0.8 on average.
"""

import glob

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as F
from PIL import Image
from timm.data import auto_augment as timm_ops

from pretrain.data.gpu import color, geometry
from pretrain.data.gpu.pipeline import FILL
from pretrain.data.gpu.rand_augment import apply_op


DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
        ],
    ),
]


@pytest.fixture(scope="module", params=DEVICES)
def photos(shared_data, request):
    """(PIL images, the same as one uint8 batch on the device under test)."""
    paths = sorted(glob.glob(str(shared_data / "bccd" / "JPEGImages" / "*.jpg")))[:4]
    pils = [Image.open(p).convert("RGB").resize((96, 72)) for p in paths]
    batch = torch.stack([torch.from_numpy(np.array(p)).permute(2, 0, 1) for p in pils])
    return pils, batch.to(request.param)


def differences(ours: torch.Tensor, references) -> torch.Tensor:
    ref = torch.stack([torch.from_numpy(np.array(r)).permute(2, 0, 1) for r in references])
    assert ours.dtype == torch.uint8 and ours.shape == ref.shape
    return (ours.cpu().int() - ref.int()).abs().float()


FACTORS = torch.tensor([0.2, 1.8, 0.9, 1.4])


@pytest.mark.parametrize(
    "ours, reference",
    [
        (color.adjust_brightness, F.adjust_brightness),
        (color.adjust_contrast, F.adjust_contrast),
        (color.adjust_saturation, F.adjust_saturation),
        (color.adjust_sharpness, F.adjust_sharpness),
    ],
)
def test_enhance_ops_equal_pil_exactly(photos, ours, reference):
    pils, batch = photos
    diff = differences(
        ours(batch, FACTORS.to(batch.device)),
        [reference(p, float(f)) for p, f in zip(pils, FACTORS)],
    )
    assert diff.max() == 0


def test_hue_within_a_few_levels_of_pil(photos):
    pils, batch = photos
    hues = torch.tensor([-0.2, 0.1, 0.05, 0.17])
    diff = differences(
        color.adjust_hue(batch, hues.to(batch.device)),
        [F.adjust_hue(p, float(h)) for p, h in zip(pils, hues)],
    )
    assert diff.mean() < 0.5 and diff.max() <= 6


def test_grayscale_equals_pil(photos):
    pils, batch = photos
    assert (
        differences(color.to_grayscale_rgb(batch), [F.rgb_to_grayscale(p, 3) for p in pils]).max()
        == 0
    )


def test_gaussian_blur_per_sample_sigma_matches_torchvision(photos):
    pils, batch = photos
    sigmas = torch.tensor([0.1, 0.7, 1.3, 2.0])
    diff = differences(
        color.gaussian_blur(batch, 9, sigmas.to(batch.device)),
        [F.gaussian_blur(p, [9, 9], [float(s)] * 2) for p, s in zip(pils, sigmas)],
    )
    assert diff.max() <= 1 and diff.mean() < 0.01


@pytest.mark.parametrize(
    "name, reference, exact",
    [
        ("AutoContrast", lambda p, m: timm_ops.auto_contrast(p), False),
        ("Equalize", lambda p, m: timm_ops.equalize(p), True),
        ("Invert", lambda p, m: timm_ops.invert(p), True),
        ("Posterize", lambda p, m: timm_ops.posterize(p, int(m / 10 * 4)), True),
        ("Solarize", lambda p, m: timm_ops.solarize(p, min(256, int(m / 10 * 256))), True),
        ("SolarizeAdd", lambda p, m: timm_ops.solarize_add(p, min(128, int(m / 10 * 110))), True),
        ("Color", lambda p, m: timm_ops.color(p, m / 10 * 1.8 + 0.1), True),
        ("Contrast", lambda p, m: timm_ops.contrast(p, m / 10 * 1.8 + 0.1), True),
        ("Brightness", lambda p, m: timm_ops.brightness(p, m / 10 * 1.8 + 0.1), True),
        ("Sharpness", lambda p, m: timm_ops.sharpness(p, m / 10 * 1.8 + 0.1), True),
    ],
)
def test_rand_augment_photometric_ops_match_timm(photos, name, reference, exact):
    pils, batch = photos
    magnitudes = torch.tensor([10.0, 9.6, 5.0, 3.0], dtype=torch.float64)
    no = torch.zeros(4, dtype=torch.bool)
    on = batch.device
    diff = differences(
        apply_op(name, batch, magnitudes.to(on), no.to(on), no.to(on), FILL),
        [reference(p, float(m)) for p, m in zip(pils, magnitudes)],
    )
    assert diff.max() <= (0 if exact else 1)


GEOMETRIC = {
    "Rotate": lambda p, level, **kw: timm_ops.rotate(p, level * 30, **kw),
    "ShearX": lambda p, level, **kw: timm_ops.shear_x(p, level * 0.3, **kw),
    "ShearY": lambda p, level, **kw: timm_ops.shear_y(p, level * 0.3, **kw),
    "TranslateXRel": lambda p, level, **kw: timm_ops.translate_x_rel(p, level * 0.45, **kw),
    "TranslateYRel": lambda p, level, **kw: timm_ops.translate_y_rel(p, level * 0.45, **kw),
}


@pytest.mark.parametrize("bicubic", [False, True])
@pytest.mark.parametrize("name", sorted(GEOMETRIC))
def test_rand_augment_affine_ops_match_timm(photos, name, bicubic):
    pils, batch = photos
    magnitudes = torch.tensor([10.0, 9.5, 4.0, 7.0], dtype=torch.float64)
    negate = torch.tensor([False, True, False, True])
    resample = Image.BICUBIC if bicubic else Image.BILINEAR
    on = batch.device
    ours = apply_op(
        name, batch, magnitudes.to(on), negate.to(on), torch.full((4,), bicubic, device=on), FILL
    )
    refs = [
        GEOMETRIC[name](p, float(m) / 10 * (-1 if n else 1), resample=resample, fillcolor=FILL)
        for p, m, n in zip(pils, magnitudes, negate)
    ]
    diff = differences(ours, refs)
    if bicubic:
        assert diff.mean() < 0.8 and diff.max() <= 8
    else:
        assert diff.mean() < 0.6 and diff.max() <= 1


def test_resized_crops_of_differently_sized_images_match_torchvision(photos):
    pils, batch = photos
    sizes = [(96, 72), (120, 80), (64, 100), (50, 50)]
    pils = [p.resize(s) for p, s in zip(pils, sizes)]
    tensors = [torch.from_numpy(np.array(p)).permute(2, 0, 1).to(batch.device) for p in pils]
    boxes = torch.tensor(
        [[5, 3, 60, 80], [0, 0, 80, 120], [10, 20, 20, 30], [0, 0, 50, 50]], device=batch.device
    )
    diff = differences(
        geometry.resized_crops(tensors, boxes, 48),
        [F.resized_crop(p, *map(int, b), [48, 48], antialias=True) for p, b in zip(pils, boxes)],
    )
    assert diff.max() <= 1 and diff.mean() < 0.05


def test_flip_only_the_chosen_samples(photos):
    _, batch = photos
    flip = torch.tensor([True, False, True, False], device=batch.device)
    out = geometry.horizontal_flip(batch, flip)
    for image, flipped, chosen in zip(batch, out, flip):
        assert torch.equal(flipped, image.flip(-1) if chosen else image)
