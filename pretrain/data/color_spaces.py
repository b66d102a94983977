"""Colour spaces for CMC's channel-split views (Tian, Krishnan, Isola 2019; InfoMin Fig. 4).

Every conversion takes sRGB in [0, 1] with the channels at dim -3 (one image (3, H, W) or a batch
(N, 3, H, W)) and has an exact inverse; none needs to be differentiable. The formulas are the
published ones:
  lab, luv, xyz  CIE 1976 L*a*b* / L*u*v* and CIE XYZ of sRGB (IEC 61966-2-1 gamma, the sRGB
                 primaries' matrix as OpenCV and scikit-image use it, D65 white = that matrix's
                 row sums, so RGB white has a* = b* = u* = v* = 0 exactly); L in [0, 100]
  ycbcr          JPEG / ITU-T T.871 full range: BT.601 luma, Cb and Cr offset by 0.5
  yiq            FCC NTSC YIQ
  ydbdr          SECAM YDbDr
  hsv            hue as a fraction of a turn in [0, 1), saturation and value in [0, 1]
  rgb            the input itself

`normalize` maps each channel's range over the RGB cube to [-1, 1] (the rule behind CMC's Lab
normalisation, L in [0, 100] -> [-1, 1]), so every space's channels reach the network at one
scale whatever their units.
"""

from __future__ import annotations

import functools

import torch

__all__ = [
    "CHANNELS",
    "SPACES",
    "ColorSpaceError",
    "channel_ranges",
    "check_split",
    "denormalize",
    "describe_split",
    "from_space",
    "normalize",
    "split_channels",
    "to_space",
]


class ColorSpaceError(ValueError):
    """An unknown colour space or a channel split that does not fit one."""


CHANNELS = {
    "rgb": ("R", "G", "B"),
    "lab": ("L", "a", "b"),
    "luv": ("L", "u", "v"),
    "xyz": ("X", "Y", "Z"),
    "ycbcr": ("Y", "Cb", "Cr"),
    "yiq": ("Y", "I", "Q"),
    "ydbdr": ("Y", "Db", "Dr"),
    "hsv": ("H", "S", "V"),
}
SPACES = tuple(CHANNELS)

_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, shared by YCbCr, YIQ and YDbDr
# space -> (3 x 3 matrix applied to RGB, offset added after it)
_LINEAR = {
    "ycbcr": ((_LUMA, (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312)), (0.0, 0.5, 0.5)),
    "yiq": ((_LUMA, (0.5959, -0.2746, -0.3213), (0.2115, -0.5227, 0.3112)), (0.0, 0.0, 0.0)),
    "ydbdr": ((_LUMA, (-0.450, -0.883, 1.333), (-1.333, 1.116, 0.217)), (0.0, 0.0, 0.0)),
}
_SRGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_DELTA = 6.0 / 29.0  # CIE's L*a*b* / L*u*v* linear-segment threshold (in f-space)


def _check_space(space: str) -> None:
    if space not in CHANNELS:
        raise ColorSpaceError(f"DATA.COLOR_SPACE {space!r}: expected one of {list(SPACES)}")


def _apply_matrix(matrix, x: torch.Tensor) -> torch.Tensor:
    m = torch.as_tensor(matrix, dtype=x.dtype, device=x.device)
    return torch.einsum("ij,...jhw->...ihw", m, x)


def _offset(offset, x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(offset, dtype=x.dtype, device=x.device).view(3, 1, 1)


def _channel(x: torch.Tensor, i: int) -> torch.Tensor:
    return x.select(-3, i)


# -------------------------------------------------------------------------------- sRGB and XYZ


def _srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    return torch.where(c <= 0.04045, c / 12.92, ((c.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    return torch.where(
        c <= 0.0031308, 12.92 * c, 1.055 * c.clamp(min=0.0031308) ** (1 / 2.4) - 0.055
    )


def _rgb_to_xyz(rgb: torch.Tensor) -> torch.Tensor:
    return _apply_matrix(_SRGB_TO_XYZ, _srgb_to_linear(rgb))


def _xyz_to_rgb(xyz: torch.Tensor) -> torch.Tensor:
    inverse = torch.linalg.inv(torch.tensor(_SRGB_TO_XYZ, dtype=torch.float64))
    return _linear_to_srgb(_apply_matrix(inverse.to(xyz.dtype), xyz))


def _white(x: torch.Tensor) -> torch.Tensor:
    """D65 as the XYZ of RGB white, (3, 1, 1)."""
    return torch.tensor(_SRGB_TO_XYZ, dtype=torch.float64).sum(dim=1).to(x).view(3, 1, 1)


# ------------------------------------------------------------------------------ CIE L*a*b*, L*u*v*


def _f(t: torch.Tensor) -> torch.Tensor:
    return torch.where(
        t > _DELTA**3, t.clamp(min=_DELTA**3) ** (1 / 3), t / (3 * _DELTA**2) + 4 / 29
    )


def _f_inverse(f: torch.Tensor) -> torch.Tensor:
    return torch.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4 / 29))


def _rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    fx, fy, fz = _f(_rgb_to_xyz(rgb) / _white(rgb)).unbind(-3)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-3)


def _lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    lightness, a, b = lab.unbind(-3)
    fy = (lightness + 16) / 116
    xyz = _f_inverse(torch.stack([fy + a / 500, fy, fy - b / 200], dim=-3)) * _white(lab)
    return _xyz_to_rgb(xyz)


def _uv_prime(xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CIE 1976 (u', v'); black (X + 15Y + 3Z = 0) gets (0, 0), where L* = 0 makes u*, v* 0."""
    x, y, z = xyz.unbind(-3)
    denominator = x + 15 * y + 3 * z
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return 4 * x / safe * (denominator > 0), 9 * y / safe * (denominator > 0)


def _rgb_to_luv(rgb: torch.Tensor) -> torch.Tensor:
    xyz = _rgb_to_xyz(rgb)
    lightness = 116 * _f(_channel(xyz, 1) / _white(rgb)[1]) - 16
    u, v = _uv_prime(xyz)
    un, vn = _uv_prime(_white(rgb))
    return torch.stack([lightness, 13 * lightness * (u - un), 13 * lightness * (v - vn)], dim=-3)


def _luv_to_rgb(luv: torch.Tensor) -> torch.Tensor:
    lightness, u, v = luv.unbind(-3)
    un, vn = _uv_prime(_white(luv))
    y = _f_inverse((lightness + 16) / 116) * _white(luv)[1]
    lit = lightness > 0
    safe_l = torch.where(lit, lightness, torch.ones_like(lightness))
    u_prime = u / (13 * safe_l) + un
    v_prime = torch.where(lit, v / (13 * safe_l) + vn, torch.ones_like(lightness))
    x = y * 9 * u_prime / (4 * v_prime)
    z = y * (12 - 3 * u_prime - 20 * v_prime) / (4 * v_prime)
    xyz = torch.stack([x, y, z], dim=-3) * lit.unsqueeze(-3)
    return _xyz_to_rgb(xyz)


# ------------------------------------------------------------------------------------------ HSV


def _rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    r, g, b = rgb.unbind(-3)
    value, argmax = rgb.max(dim=-3)
    chroma = value - rgb.min(dim=-3).values
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    sector = torch.stack([((g - b) / safe) % 6, (b - r) / safe + 2, (r - g) / safe + 4], dim=-3)
    hue = sector.gather(-3, argmax.unsqueeze(-3)).squeeze(-3) / 6 * (chroma > 0)
    saturation = chroma / torch.where(value > 0, value, torch.ones_like(value))
    return torch.stack([hue % 1.0, saturation, value], dim=-3)


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """The closed form f(n) = V - V S max(0, min(k, 4 - k, 1)), k = (n + 6H) mod 6, n = 5, 3, 1."""
    hue, saturation, value = (c.unsqueeze(-3) for c in hsv.unbind(-3))
    n = torch.tensor([5.0, 3.0, 1.0], dtype=hsv.dtype, device=hsv.device).view(3, 1, 1)
    k = (n + 6 * hue) % 6
    ramp = torch.minimum(torch.minimum(k, 4 - k), torch.ones_like(k)).clamp(min=0)
    return value - value * saturation * ramp


# ------------------------------------------------------------------------------------ the API


def _rgb_to_linear_space(space: str):
    matrix, offset = _LINEAR[space]
    return lambda rgb: _apply_matrix(matrix, rgb) + _offset(offset, rgb)


def _linear_space_to_rgb(space: str):
    matrix, offset = _LINEAR[space]
    inverse = torch.linalg.inv(torch.tensor(matrix, dtype=torch.float64))
    return lambda x: _apply_matrix(inverse.to(x.dtype), x - _offset(offset, x))


_FORWARD = {
    "rgb": lambda x: x,
    "lab": _rgb_to_lab,
    "luv": _rgb_to_luv,
    "xyz": _rgb_to_xyz,
    "hsv": _rgb_to_hsv,
    **{s: _rgb_to_linear_space(s) for s in _LINEAR},
}
_BACKWARD = {
    "rgb": lambda x: x,
    "lab": _lab_to_rgb,
    "luv": _luv_to_rgb,
    "xyz": _xyz_to_rgb,
    "hsv": _hsv_to_rgb,
    **{s: _linear_space_to_rgb(s) for s in _LINEAR},
}


def to_space(rgb: torch.Tensor, space: str) -> torch.Tensor:
    """sRGB in [0, 1], channels at dim -3, to `space` (units as in the module docstring)."""
    _check_space(space)
    return _FORWARD[space](rgb)


def from_space(x: torch.Tensor, space: str) -> torch.Tensor:
    """The inverse of `to_space`."""
    _check_space(space)
    return _BACKWARD[space](x)


def denormalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Undo torchvision's Normalize(mean, std): a normalised RGB tensor back to [0, 1]."""
    view = (3, 1, 1)
    return x * torch.as_tensor(std, dtype=x.dtype).view(view) + torch.as_tensor(
        mean, dtype=x.dtype
    ).view(view)


@functools.lru_cache(maxsize=None)
def channel_ranges(space: str) -> tuple[tuple[float, float], ...]:
    """Each channel's (min, max) over the RGB cube, on a 65^3 grid that holds the cube's corners
    (where the linear spaces' and L*a*b*'s extremes lie), in float64."""
    _check_space(space)
    axis = torch.linspace(0, 1, 65, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij")).reshape(3, -1, 1)
    converted = to_space(grid, space).reshape(3, -1)
    ranges = tuple(zip(converted.min(dim=1).values.tolist(), converted.max(dim=1).values.tolist()))
    if space == "hsv":  # hue is a fraction of a turn: [0, 1) by definition, not the grid's max
        ranges = ((0.0, 1.0),) + ranges[1:]
    return ranges


def normalize(x: torch.Tensor, space: str) -> torch.Tensor:
    """Each channel of `x` (in `space`) from its range over the RGB cube to [-1, 1]."""
    low, high = (
        torch.tensor(v, dtype=x.dtype, device=x.device).view(3, 1, 1)
        for v in zip(*channel_ranges(space))
    )
    return (x - low) / (high - low) * 2 - 1


def check_split(space: str, split) -> tuple[int, ...]:
    """(k1, k2, ...): the first k1 channels make view 1, the next k2 view 2, and so on; two views
    (CMC's L | ab) or three (CMC's L | a | b, one channel each)."""
    _check_space(space)
    split = tuple(int(k) for k in split)
    if len(split) < 2 or min(split) < 1 or sum(split) != 3:
        raise ColorSpaceError(
            f"DATA.CHANNEL_SPLIT {split}: two or three channel counts >= 1 that "
            "sum to 3, e.g. (1, 2) for L | ab or (1, 1, 1) for L | a | b"
        )
    return split


def split_channels(x: torch.Tensor, split) -> tuple[torch.Tensor, ...]:
    """The channel groups of `split` (dim -3), in order; the last takes the remaining channels."""
    starts = [sum(split[:i]) for i in range(len(split))]
    ends = starts[1:] + [x.shape[-3]]
    return tuple(x.narrow(-3, start, end - start) for start, end in zip(starts, ends))


def describe_split(space: str, split) -> str:
    """'L | ab' for lab and (1, 2); 'L | a | b' for (1, 1, 1)."""
    names = CHANNELS[space]
    split = check_split(space, split)
    starts = [sum(split[:i]) for i in range(len(split) + 1)]
    return " | ".join("".join(names[a:b]) for a, b in zip(starts, starts[1:]))
