"""Each colour space against an independent oracle (OpenCV, Python's colorsys, published reference
values, or the space's defining relation to another), each inverse to 1e-5 in float32, and the
per-channel normalisation's ranges against CMC's published L*a*b* ranges."""

from __future__ import annotations

import colorsys
import math

import cv2
import numpy as np
import pytest
import torch

from pretrain.data.color_spaces import (
    SPACES,
    ColorSpaceError,
    channel_ranges,
    check_split,
    denormalize,
    describe_split,
    from_space,
    normalize,
    split_channels,
    to_space,
)

CORNERS = [(r, g, b) for r in (0.0, 1.0) for g in (0.0, 1.0) for b in (0.0, 1.0)]


def colours(n: int = 256, seed: int = 0) -> torch.Tensor:
    """(3, 1, n + 11) float64: random sRGB colours, the cube's corners and three greys."""
    rand = torch.rand(3, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    fixed = torch.tensor(
        CORNERS + [(0.5, 0.5, 0.5), (0.01, 0.01, 0.01), (0.9, 0.9, 0.9)], dtype=torch.float64
    ).t()
    return torch.cat([rand, fixed], dim=1).unsqueeze(1)


def as_pixels(x: torch.Tensor) -> np.ndarray:
    """(3, 1, W) -> (1, W, 3), OpenCV's layout."""
    return x.permute(1, 2, 0).numpy()


def opencv(x: torch.Tensor, code: int) -> torch.Tensor:
    out = cv2.cvtColor(as_pixels(x).astype(np.float32), code)
    return torch.from_numpy(out).double().permute(2, 0, 1)


def srgb_decoded(x: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1's sRGB transfer function, inverted (written here, not imported)."""
    return torch.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)


def by_pixel(function, x: torch.Tensor) -> torch.Tensor:
    pixels = [function(*p) for p in x.reshape(3, -1).t().tolist()]
    return torch.tensor(pixels, dtype=torch.float64).t().reshape(x.shape)


# ------------------------------------------------------------------------------- the oracles


def test_lab_matches_published_values_and_opencv():
    # CIE L*a*b* (D65) of the sRGB primaries, secondaries and white, as the standard references
    # tabulate them (e.g. Lindbloom's calculator); 0.05 covers their D65 white's rounding.
    published = {
        (1, 0, 0): (53.2408, 80.0925, 67.2032),
        (0, 1, 0): (87.7347, -86.1827, 83.1793),
        (0, 0, 1): (32.2970, 79.1875, -107.8602),
        (1, 1, 0): (97.1393, -21.5537, 94.4780),
        (1, 0, 1): (60.3199, 98.2542, -60.8430),
        (0, 1, 1): (91.1132, -48.0875, -14.1312),
        (1, 1, 1): (100.0, 0.0, 0.0),
        (0, 0, 0): (0.0, 0.0, 0.0),
    }
    rgb = torch.tensor(list(published), dtype=torch.float64).t().unsqueeze(1)
    expected = torch.tensor(list(published.values()), dtype=torch.float64).t().unsqueeze(1)
    assert (to_space(rgb, "lab") - expected).abs().max() < 0.05
    # OpenCV's float L*a*b* is tabulated (a, b in steps of 1/64 and an interpolated cube root):
    # it agrees to 0.4, enough to catch a wrong white point, matrix or exponent.
    x = colours()
    assert (to_space(x, "lab") - opencv(x, cv2.COLOR_RGB2Lab)).abs().max() < 0.4


def test_luv_matches_opencv():
    x = colours()
    assert (to_space(x, "luv") - opencv(x, cv2.COLOR_RGB2Luv)).abs().max() < 0.01


def test_xyz_is_the_srgb_matrix_of_the_decoded_colours():
    x = colours()
    assert (to_space(x, "xyz") - opencv(srgb_decoded(x), cv2.COLOR_RGB2XYZ)).abs().max() < 1e-5
    white = to_space(torch.ones(3, 1, 1, dtype=torch.float64), "xyz").flatten()
    assert torch.allclose(
        white, torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64), atol=1e-3
    )  # D65


def test_hsv_matches_colorsys_and_opencv():
    x = colours()
    ours = to_space(x, "hsv")
    assert (ours - by_pixel(colorsys.rgb_to_hsv, x)).abs().max() < 1e-12
    cv = opencv(x, cv2.COLOR_RGB2HSV) / torch.tensor([360.0, 1.0, 1.0]).view(3, 1, 1).double()
    assert (ours - cv).abs().max() < 1e-5


def test_ycbcr_matches_opencv_full_range():
    x = colours()
    cv = opencv(x, cv2.COLOR_RGB2YCrCb)[[0, 2, 1]]  # OpenCV orders Y, Cr, Cb
    assert (to_space(x, "ycbcr") - cv).abs().max() < 1e-3  # OpenCV rounds Cb, Cr's scales


def luma(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(0)
    return 0.299 * r + 0.587 * g + 0.114 * b


def test_yiq_is_yuv_rotated_by_33_degrees():
    """FCC YIQ: I, Q are YUV's (U = 0.492 (B - Y), V = 0.877 (R - Y)) rotated by 33 degrees."""
    x = colours()
    y = luma(x)
    u, v = 0.492 * (x[2] - y), 0.877 * (x[0] - y)
    angle = math.radians(33)
    i = v * math.cos(angle) - u * math.sin(angle)
    q = v * math.sin(angle) + u * math.cos(angle)
    assert (to_space(x, "yiq") - torch.stack([y, i, q])).abs().max() < 1e-3
    assert (to_space(x, "yiq") - by_pixel(colorsys.rgb_to_yiq, x)).abs().max() < 0.02


def test_ydbdr_is_scaled_colour_differences():
    """SECAM: Db = 1.505 (B - Y), Dr = -1.902 (R - Y)."""
    x = colours()
    y = luma(x)
    expected = torch.stack([y, 1.505 * (x[2] - y), -1.902 * (x[0] - y)])
    assert (to_space(x, "ydbdr") - expected).abs().max() < 2e-3


@pytest.mark.parametrize("space", SPACES)
def test_every_inverse_returns_the_rgb(space):
    x = colours(seed=1)
    assert (from_space(to_space(x, space), space) - x).abs().max() < 1e-10
    batch = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    assert (from_space(to_space(batch, space), space) - batch).abs().max() < 1e-5  # float32
    assert torch.equal(to_space(batch, space)[1], to_space(batch[1], space))  # per image


# ----------------------------------------------------------------------- normalisation, split


def test_lab_ranges_are_cmcs_and_normalisation_fills_minus_one_to_one():
    # CMC's Lab normalisation: L in [0, 100], a in [-86.183, 98.233], b in [-107.857, 94.478].
    cmc = ((0.0, 100.0), (-86.183, 98.233), (-107.857, 94.478))
    assert np.allclose(channel_ranges("lab"), cmc, atol=0.01)
    for space in SPACES:
        normalised = normalize(to_space(colours(4096, seed=3), space), space)
        assert normalised.min() >= -1 - 1e-9 and normalised.max() <= 1 + 1e-9, space
    corners = torch.tensor(CORNERS, dtype=torch.float64).t().unsqueeze(1)
    lab = normalize(to_space(corners, "lab"), "lab")
    assert lab.amin(dim=(1, 2)).tolist() == pytest.approx([-1] * 3)
    assert lab.amax(dim=(1, 2)).tolist() == pytest.approx([1] * 3)


def test_denormalize_undoes_imagenet_normalisation():
    x = torch.rand(3, 4, 4)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    normalised = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert torch.allclose(denormalize(normalised, mean, std), x, atol=1e-6)


def test_split_and_its_errors():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    first, second = split_channels(x, (1, 2))
    assert torch.equal(first, x[:, :1]) and torch.equal(second, x[:, 1:])
    assert describe_split("lab", (1, 2)) == "L | ab"
    assert describe_split("ydbdr", (1, 2)) == "Y | DbDr"
    assert describe_split("hsv", (2, 1)) == "HS | V"
    with pytest.raises(ColorSpaceError, match="DATA.CHANNEL_SPLIT"):
        check_split("lab", (1, 1))
    with pytest.raises(ColorSpaceError, match="DATA.COLOR_SPACE 'cmyk'"):
        to_space(x, "cmyk")
