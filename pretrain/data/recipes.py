"""The views each method contrasts, as data. A ViewRecipe says what one view is: a resized crop,
then named steps in order, each with its strength. Both pipelines interpret the same object:
views.py turns it into a torchvision/timm Compose, gpu/pipeline.py runs it on whole batches.

A recipe comes from a preset (DATA.AUGMENTATION; the numbers and orders are those of
../../shared/docs/facts.md) with the DATA.VIEWS overrides of the config applied on top. Pixel
strengths are stated for the reference 224 px crop and scale with the crop (blur sigma here,
RandAugment's translation by timm's own rule, a fraction of the image), so a 64 px view is the
reference view in proportion and a 224 px view is the reference view exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..common.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# RandAugment's fill for the pixels its affine ops uncover: the ImageNet mean as uint8 (PyContrast).
FILL = tuple(min(255, round(255 * m)) for m in IMAGENET_MEAN)

REFERENCE_SIZE = 224  # the crop the published strengths are stated for
STEPS = ("flip", "jitter", "grayscale", "blur", "rand_augment")


class ViewConfigError(ConfigError):
    """A DATA.AUGMENTATION / DATA.VIEWS value that makes no valid view."""


def blur_kernel_size(crop_size: int) -> int:
    """About 10% of the crop, odd (SimCLR's choice, kept by MoCo v2): 23 px at 224, 7 px at 64."""
    return max(3, int(0.1 * crop_size) // 2 * 2 + 1)


@dataclass(frozen=True)
class ViewRecipe:
    """One view: RandomResizedCrop(size, scale), then `steps` (names from STEPS) in order. Fields
    of steps the recipe does not run are carried but unused."""

    size: int
    scale: tuple[float, float]
    steps: tuple[str, ...]
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # ColorJitter(b, c, s, h)
    jitter_p: float = 0.8  # 1.0: a bare ColorJitter (MoCo v1), else RandomApply(p)
    grayscale_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # px at REFERENCE_SIZE; see blur_sigma_pixels
    blur_p: float = 0.5
    rand_augment_n: int = 2  # ops per image
    rand_augment_m: int = 10  # magnitude, of timm's 10
    rand_augment_mstd: float = 0.5  # magnitude noise std
    rand_augment_p: float = 0.5  # each op applied with this probability
    translate_pct: float = 0.45  # RandAugment's translation at magnitude 10, fraction of the image

    @property
    def blur_kernel(self) -> int:
        return blur_kernel_size(self.size)

    @property
    def blur_sigma_pixels(self) -> tuple[float, float]:
        """The sigma range at this crop: the reference range times size / 224 (exactly the
        reference range at 224, as size / 224 is then exactly 1.0)."""
        ratio = self.size / REFERENCE_SIZE
        return (self.blur_sigma[0] * ratio, self.blur_sigma[1] * ratio)

    @property
    def rand_augment_config(self) -> str:
        """timm's RandAugment config string ("rand-n2-m10-mstd0.5-p0.5" for InfoMin)."""
        return (
            f"rand-n{self.rand_augment_n}-m{self.rand_augment_m}"
            f"-mstd{self.rand_augment_mstd}-p{self.rand_augment_p}"
        )


def jitter_of_strength(x: float) -> tuple[float, float, float, float]:
    """InfoMin Fig. 11(b)'s colour-jitter strength x: brightness, contrast, saturation 0.8x, hue
    0.2x (x = 1 is InfoMin's preset, x = 0.5 MoCo v2's)."""
    return (0.8 * x, 0.8 * x, 0.8 * x, 0.2 * x)


# Each preset: the fields that differ from ViewRecipe's defaults (MoCo v2's strengths).
PRESETS = {
    "mocov1": dict(
        steps=("grayscale", "jitter", "flip"), jitter=(0.4, 0.4, 0.4, 0.4), jitter_p=1.0
    ),
    "mocov2": dict(steps=("jitter", "grayscale", "blur", "flip")),
    "infomin": dict(
        steps=("flip", "jitter", "blur", "rand_augment", "grayscale"),
        jitter=jitter_of_strength(1.0),
    ),
    # The crop and a flip: for views that differ by construction (DATA.VIEWS_FROM folder).
    "flip": dict(steps=("flip",)),
}


def preset(name: str, size: int, scale: tuple[float, float]) -> ViewRecipe:
    if name not in PRESETS:
        raise ViewConfigError(f"DATA.AUGMENTATION {name!r}: expected one of {sorted(PRESETS)}")
    return ViewRecipe(size, tuple(scale), **PRESETS[name])


def jigsaw_recipe(grid: int, cell: int) -> ViewRecipe:
    """PyContrast's JigSaw view before it is cut into patches: a (grid * cell) px crop of scale
    (0.6, 1) and a flip, with neither colour jitter nor grayscale (facts.md)."""
    return ViewRecipe(grid * cell, (0.6, 1.0), ("flip",))


# DATA.VIEWS key -> the recipe field it sets; -1 (numbers) or () (tuples) keeps the preset's.
KEY_FIELDS = {
    "STEPS": "steps",
    "FLIP_P": "flip_p",
    "JITTER": "jitter",
    "JITTER_P": "jitter_p",
    "GRAYSCALE_P": "grayscale_p",
    "BLUR_SIGMA": "blur_sigma",
    "BLUR_P": "blur_p",
    "RAND_AUGMENT_N": "rand_augment_n",
    "RAND_AUGMENT_M": "rand_augment_m",
}
FIELD_KEYS = {field: f"DATA.VIEWS.{key}" for key, field in KEY_FIELDS.items()}
FIELD_KEYS["jitter"] = "DATA.VIEWS.JITTER / JITTER_STRENGTH"


def _overrides(views) -> dict:
    changes = {
        field: tuple(views[key]) if isinstance(views[key], (tuple, list)) else views[key]
        for key, field in KEY_FIELDS.items()
        if views[key] not in (-1, -1.0, (), [])
    }
    if views.JITTER_STRENGTH != -1:
        if "jitter" in changes:
            raise ViewConfigError(
                "DATA.VIEWS.JITTER and DATA.VIEWS.JITTER_STRENGTH are both set: give one"
            )
        changes["jitter"] = jitter_of_strength(views.JITTER_STRENGTH)
    return changes


def _problems(recipe: ViewRecipe):
    """(field, what is wrong) for every invalid field."""
    unknown = [s for s in recipe.steps if s not in STEPS]
    if unknown or len(set(recipe.steps)) != len(recipe.steps):
        yield "steps", f"{recipe.steps}: each of {STEPS} at most once"
    for field in ("flip_p", "jitter_p", "grayscale_p", "blur_p"):
        if not 0.0 <= getattr(recipe, field) <= 1.0:
            yield field, f"{getattr(recipe, field)}: a probability in [0, 1]"
    if len(recipe.jitter) != 4 or min(recipe.jitter) < 0 or recipe.jitter[3] > 0.5:
        yield (
            "jitter",
            (f"{recipe.jitter}: 4 values >= 0 (brightness, contrast, saturation, hue <= 0.5)"),
        )
    low_high = recipe.blur_sigma
    if len(low_high) != 2 or not 0 < low_high[0] <= low_high[1]:
        yield "blur_sigma", f"{low_high}: (low, high) with 0 < low <= high"
    if recipe.rand_augment_n < 0:
        yield "rand_augment_n", f"{recipe.rand_augment_n}: >= 0"
    if not 0 <= recipe.rand_augment_m <= 10:
        yield "rand_augment_m", f"{recipe.rand_augment_m}: in [0, 10]"


def recipe_from_cfg(cfg) -> ViewRecipe:
    """The contrastive view of the config: its DATA.AUGMENTATION preset at DATA.CROP_SIZE and
    DATA.CROP_SCALE, with the DATA.VIEWS overrides."""
    recipe = replace(
        preset(cfg.DATA.AUGMENTATION, cfg.DATA.CROP_SIZE, tuple(cfg.DATA.CROP_SCALE)),
        **_overrides(cfg.DATA.VIEWS),
    )
    for field, problem in _problems(recipe):
        raise ViewConfigError(f"{FIELD_KEYS.get(field, field)} = {problem}")
    return recipe
