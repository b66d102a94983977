"""DATA.MULTI_CROP on real images (BCCD JPEGs): two large crops and N small ones per image, of the
recipe at their sizes and scales, drawn again identically from a sample's seed, collated into
2 + N batches; off by default, and then the views are exactly the pair they always were; and the
settings that cannot make small crops are refused by name."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms as T

from pretrain.common.errors import ConfigError
from pretrain.config import load_cfg
from pretrain.data.images import ImageViews, collate_views
from pretrain.data.multi_crop import MultiCropViews
from pretrain.data.packed import FolderImages
from pretrain.data.pipelines import ViewPipeline
from pretrain.data.recipes import recipe_from_cfg
from pretrain.data.views import ContrastiveViews, build_views, compose
from pretrain.models.registry import build_model

LARGE, SMALL, NUM_SMALL = 64, 32, 3
MULTI = [
    "DATA.CROP_SIZE",
    str(LARGE),
    "DATA.CROP_SCALE",
    "(0.14, 1.0)",
    "DATA.MULTI_CROP.NUM_SMALL",
    str(NUM_SMALL),
    "DATA.MULTI_CROP.SMALL_SIZE",
    str(SMALL),
    "DATA.MULTI_CROP.SMALL_SCALE",
    "(0.05, 0.14)",
]


@pytest.fixture(scope="module")
def images(shared_data):
    return FolderImages(str(shared_data / "bccd" / "JPEGImages"))


def _blur_sigma(transform: T.Compose) -> tuple[float, float]:
    (blur,) = next(
        t
        for t in transform.transforms
        if isinstance(t, T.RandomApply) and isinstance(t.transforms[0], T.GaussianBlur)
    ).transforms
    return blur.sigma


def test_each_image_gives_two_large_and_n_small_crops_of_the_recipe(images):
    views = build_views(load_cfg(opts=MULTI))
    assert isinstance(views, MultiCropViews) and views.num_small == NUM_SMALL
    large_crop, small_crop = views.large.transforms[0], views.small.transforms[0]
    assert large_crop.size == (LARGE, LARGE) and large_crop.scale == (0.14, 1.0)
    assert small_crop.size == (SMALL, SMALL) and small_crop.scale == (0.05, 0.14)
    # The same steps after the crop, and the small crops' blur as wide in pixels as the large.
    assert [type(t) for t in views.large.transforms[1:]] == [
        type(t) for t in views.small.transforms[1:]
    ]
    assert _blur_sigma(views.small) == pytest.approx(_blur_sigma(views.large))

    dataset = ImageViews(images, views, seed=3)
    (sample, bad) = dataset[(0, 5)]
    assert not bad and len(sample) == 2 + NUM_SMALL
    assert [tuple(v.shape) for v in sample] == [(3, LARGE, LARGE)] * 2 + [(3, SMALL, SMALL)] * 3
    assert not torch.equal(sample[0], sample[1]) and not torch.equal(sample[2], sample[3])

    batch, bad = collate_views([dataset[(0, i)] for i in range(4)])
    assert [tuple(b.shape) for b in batch] == [(4, 3, LARGE, LARGE)] * 2 + [
        (4, 3, SMALL, SMALL)
    ] * 3


def test_the_crops_cover_the_areas_their_scales_say(images):
    """The crop boxes the two crop transforms draw: areas within their scale ranges, the small
    ones always smaller than 14% of the image, the large ones at least 14%."""
    views = build_views(load_cfg(opts=MULTI))
    image = ImageViews(images, lambda img: img)[(0, 0)][0]
    area = image.width * image.height
    torch.manual_seed(0)
    for crop, (low, high) in (
        (views.large.transforms[0], (0.14, 1.0)),
        (views.small.transforms[0], (0.05, 0.14)),
    ):
        fractions = []
        for _ in range(200):
            _, _, h, w = crop.get_params(image, crop.scale, crop.ratio)
            fractions.append(h * w / area)
        assert low - 0.01 <= min(fractions) and max(fractions) <= high + 0.01
        assert max(fractions) - min(fractions) > (high - low) / 2  # spread over the range


def test_a_sample_is_drawn_again_identically_from_its_seed(images):
    views = build_views(load_cfg(opts=MULTI))
    first = ImageViews(images, views, seed=3)[(1, 7)][0]
    again = ImageViews(images, build_views(load_cfg(opts=MULTI)), seed=3)[(1, 7)][0]
    other_epoch = ImageViews(images, views, seed=3)[(2, 7)][0]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not any(torch.equal(a, b) for a, b in zip(first, other_epoch))


@pytest.mark.parametrize("opts", [[], ["DATA.MULTI_CROP.NUM_SMALL", "0"]])
def test_off_by_default_the_views_are_the_usual_pair(images, opts):
    cfg = load_cfg(opts=["DATA.CROP_SIZE", "64", *opts])
    views = build_views(cfg)
    assert isinstance(views, ContrastiveViews)
    usual = ContrastiveViews(compose(recipe_from_cfg(cfg)))
    ours, theirs = (
        ImageViews(images, views, seed=1)[(0, 2)][0],
        ImageViews(images, usual, seed=1)[(0, 2)][0],
    )
    assert len(ours) == 2 and all(torch.equal(a, b) for a, b in zip(ours, theirs))


@pytest.mark.parametrize(
    "opts, match",
    [
        (["DATA.PIPELINE", "gpu"], "DATA.PIPELINE"),
        (["DATA.VIEWS_FROM", "folder"], "DATA.VIEWS_FROM"),
        (["DATA.VIEW_FAMILY", "frequency"], "DATA.VIEW_FAMILY"),
        (["DATA.MULTI_CROP.SMALL_SCALE", "(0.3, 0.1)"], "SMALL_SCALE"),
    ],
)
def test_settings_that_cannot_make_small_crops_are_refused(images, tmp_path, opts, match):
    cfg = load_cfg(opts=[*MULTI, "OUTPUT_DIR", str(tmp_path), *opts])
    with pytest.raises(ConfigError, match=match):
        ViewPipeline(cfg, images, "cpu")


def test_a_method_without_a_loss_for_small_crops_refuses_them():
    cfg = load_cfg(
        opts=[*MULTI, "MODEL.METHOD", "byol", "MODEL.HEAD", "byol", "MODEL.ARCH", "resnet18"]
    )
    with pytest.raises(ConfigError, match="DATA.MULTI_CROP.NUM_SMALL 3 with MODEL.METHOD byol"):
        build_model(cfg)
