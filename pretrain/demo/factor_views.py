"""Views that share chosen factors of the demo's world: the InfoMin paper's Table 4 (Colorful
Moving-MNIST) on pretrain/demo/synthetic.py's objects and photographs.

An object-centred image of this world is made of five independent factors: which object (a
Fashion-MNIST item), its colour, its size, its position, and the background (a crop of a
photograph). Every rendering of one instance keeps the factors named in `shared` and draws the
others afresh, so two renderings are two views whose shared information is exactly those factors.
InfoMin's principle ("what the views share is what is learned"): views that share only the object
teach the object; views that share the background teach the background, which is how the usual
crops of one composite are told apart fastest (README, "What the demo shows").

What two views share can also be dialled continuously, InfoMin's own toy: `share` maps a factor
to the probability that an instance's renderings share it (decided once per instance, so two views
drawn from one instance share it with exactly that probability). Sharing the object with a rising
probability, and then the background as well, walks the views from too little shared information
(different objects) through the sweet spot (only the object) to too much (the background, a
shortcut): the reverse U of InfoMin Fig. 1, drawn by `tools/view_world.py` and `tools/sweep.py`.

No label enters: an instance is a Fashion-MNIST item drawn by index, as an ImageNet image is an
instance, and its class is never read. Written as instance folders, `<instance>/<k>.jpg`, which the
pretraining reads with DATA.VIEWS_FROM "folder" (pretrain/data/instances.py).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from .synthetic import load_fashion, load_photos, paste, random_colour

FACTORS = ("object", "colour", "size", "position", "background")


def check_factors(shared) -> tuple[str, ...]:
    unknown = sorted(set(shared) - set(FACTORS))
    if unknown:
        raise ValueError(f"unknown view factor(s) {unknown}: expected some of {list(FACTORS)}")
    return tuple(f for f in FACTORS if f in shared)


def share_probabilities(shared) -> dict[str, float]:
    """{factor: probability that an instance's renderings share it}, from a list of factors
    (always shared) or a mapping; factors not named are never shared."""
    share = dict(shared) if isinstance(shared, dict) else {name: 1.0 for name in shared}
    check_factors(share)
    bad = {name: p for name, p in share.items() if not 0.0 <= float(p) <= 1.0}
    if bad:
        raise ValueError(f"share probabilities must lie in [0, 1]: {bad}")
    return {name: float(share[name]) for name in FACTORS if name in share}


def draw_factors(rng, n_objects: int, n_photos: int) -> dict:
    """One value of every factor; positions and sizes as fractions of their ranges, so a value
    means the same at any image size."""
    return {
        "object": int(rng.integers(n_objects)),
        "colour": random_colour(rng),
        "size": float(rng.uniform()),
        "position": tuple(rng.uniform(size=2)),
        "background": (int(rng.integers(n_photos)), *rng.uniform(size=3)),
    }


def render(photos, objects, factors: dict, size: int = 64, object_size=(0.5, 0.875)) -> np.ndarray:
    """(size, size, 3) uint8: the object painted in its colour at its size and place on its
    background, as synthetic.object_image draws the labelled objects of the kNN probe (objects of
    32-56 px at 64 px: `object_size` as fractions of the image)."""
    photo_index, side_frac, y_frac, x_frac = factors["background"]
    photo = photos[photo_index]
    h, w = photo.shape[:2]
    crop = int(min(h, w) * (0.3 + 0.7 * side_frac))
    y, x = int(y_frac * (h - crop)), int(x_frac * (w - crop))
    image = np.asarray(
        Image.fromarray(photo[y : y + crop, x : x + crop]).resize((size, size), Image.BILINEAR)
    ).copy()
    smallest, largest = (round(f * size) for f in object_size)
    side = smallest + round(factors["size"] * (largest - smallest))
    item = np.asarray(
        Image.fromarray(objects[factors["object"]]).resize((side, side), Image.BILINEAR)
    )
    top, left = (int(f * (size - side)) for f in factors["position"])
    paste(None, image, item, top, left, item > 40, colour=factors["colour"])
    return image


def write_instance_views(
    out_dir: str,
    photos,
    objects,
    shared,
    n_instances: int,
    renderings: int,
    size: int = 64,
    seed: int = 0,
) -> None:
    """`renderings` images per instance under out_dir/<instance>/, sharing the `shared` factors
    (a list: always; a mapping: each with its probability, decided per instance)."""
    share = share_probabilities(shared)
    # Only a setting with a probability strictly inside (0, 1) draws coins: the renderings of
    # the always / never settings (the demo's, Table 4's) stay those they were measured on.
    dialled = any(0.0 < p < 1.0 for p in share.values())
    rng = np.random.default_rng(seed)
    for i in range(n_instances):
        base = draw_factors(rng, len(objects), len(photos))
        shared = [name for name, p in share.items() if p == 1.0]
        if dialled:  # a coin for every factor, so one seed's settings differ only where they do
            coins = dict(zip(FACTORS, rng.uniform(size=len(FACTORS))))
            shared = [name for name, p in share.items() if coins[name] < p]
        folder = os.path.join(out_dir, f"{i:06d}")
        os.makedirs(folder)
        for k in range(renderings):
            factors = {
                **draw_factors(rng, len(objects), len(photos)),
                **{name: base[name] for name in shared},
            }
            Image.fromarray(render(photos, objects, factors, size)).save(
                os.path.join(folder, f"{k}.jpg"), quality=95
            )


def build(
    out_dir: str,
    cache_dir: str,
    shared,
    n_instances: int = 4000,
    renderings: int = 4,
    size: int = 64,
    seed: int = 0,
    split: str = "train",
) -> str:
    """Writes the instance folders once (atomically) from Fashion-MNIST's `split` items ("train",
    or "t10k" for held-out instances), all ten classes, and the photographs; returns `out_dir`."""
    from pretrain.common.build_once import build_once

    def fill(staging: str) -> None:
        objects, _labels = load_fashion(split, detection_classes=False)  # labels unused
        write_instance_views(
            staging, load_photos(cache_dir), objects, shared, n_instances, renderings, size, seed
        )

    return build_once(out_dir, fill)
