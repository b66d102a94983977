"""A small detection world made of real images that the package registries provide, in the spirit
of the InfoMin paper's Colorful Moving-MNIST: real objects (Fashion-MNIST, from Debian's
`dataset-fashion-mnist`), coloured at random and composited onto random crops of real photographs
(the photos bundled in scikit-image's wheel, from PyPI). Boxes and masks are exact: they are the
pixels the compositor wrote.

Writes, under one folder:
  pretrain/*.jpg            unlabelled composites for contrastive pretraining
  train/*.jpg, train.json   labelled composites (COCO json, RLE masks) for fine-tuning
  test/*.jpg,  test.json    held-out composites, objects from Fashion-MNIST's own test split
  objects/{train,test}/<class>/*.jpg
                            one object per image, all ten Fashion-MNIST classes, in class folders:
                            the labelled set of the demo's object probe (kNN on backbone features)
                            and of its supervised-pretraining baseline, the ImageNet of this world
"""

from __future__ import annotations

import colorsys
import gzip
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
from PIL import Image

from pretrain.common.apt import apt_get_install
from pretrain.common.errors import DatasetError
from pretrain.common.user_cache import user_cache_dir as cache_folder

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_PACKAGE = "dataset-fashion-mnist"
PHOTO_WHEEL = "scikit-image==0.26.0"
# Photographs (not drawings or test patterns) among those the scikit-image wheel ships.
PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
    "rocket.jpg",
    "page.png",
    "text.png",
    "clock_motion.png",
    "cell.png",
    "color.png",
)
# Fashion-MNIST label -> class name, the five classes of the detection task.
CLASSES = {0: "t-shirt", 1: "trouser", 7: "sneaker", 8: "bag", 9: "ankle-boot"}
# All ten, for the object-centred labelled set.
ALL_CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)
# Bumped whenever build() writes a different layout, so a cached folder of an older one is not
# taken for a finished build (callers put it in the folder's name).
# 3 (2026-12-02): one generator per split, so the labelled composites differ from layout 2's.
LAYOUT = 3


FASHION_ENV = "FASHION_MNIST_DIR"  # a folder of the four idx files, for a machine without root
FASHION_FILES = tuple(
    f"{split}-{kind}-idx{n}-ubyte.gz"
    for split in ("train", "t10k")
    for kind, n in (("images", 3), ("labels", 1))
)


def _holds_fashion(folder: str) -> bool:
    return all(os.path.isfile(os.path.join(folder, name)) for name in FASHION_FILES)


def user_cache_dir() -> str:
    return cache_folder("fashion-mnist")


def ensure_fashion_mnist(debian_dir: str = FASHION_DIR, cache_dir: str | None = None) -> str:
    """The folder of Fashion-MNIST's four idx files, the first of: $FASHION_MNIST_DIR; Debian's
    dataset-fashion-mnist (installed with apt-get when missing and running as root); a download
    by torchvision into the user's cache (~/.cache/infomin-det/fashion-mnist), where the network
    allows. Else a DatasetError that says each way to provide it."""
    given = os.environ.get(FASHION_ENV, "")
    if given:
        if not _holds_fashion(given):
            raise DatasetError(
                f"${FASHION_ENV} {given}: expected the files {', '.join(FASHION_FILES)} there"
            )
        return given
    if _holds_fashion(debian_dir):
        return debian_dir
    cache_dir = cache_dir or user_cache_dir()
    raw = os.path.join(cache_dir, "FashionMNIST", "raw")
    if _holds_fashion(raw):
        return raw
    if os.geteuid() == 0 and shutil.which("apt-get") and debian_dir == FASHION_DIR:
        print(f"installing Debian's {FASHION_PACKAGE} ...", flush=True)
        why = apt_get_install(FASHION_PACKAGE)
        if why:
            print(f"warning: {why}", flush=True)  # the download below is the next way
        if _holds_fashion(debian_dir):
            return debian_dir
    try:
        import torchvision

        print(f"downloading Fashion-MNIST into {cache_dir} ...", flush=True)
        for train in (True, False):
            torchvision.datasets.FashionMNIST(cache_dir, train=train, download=True)
    except Exception as err:  # no network, a proxy, a full disk: the message below says what to do
        raise DatasetError(
            f"Fashion-MNIST (the demo's objects) is not on this machine and could not be "
            f"downloaded ({type(err).__name__}); either set ${FASHION_ENV} to a folder holding "
            f"{', '.join(FASHION_FILES)}, or install Debian's {FASHION_PACKAGE} (as root: "
            f"apt-get install {FASHION_PACKAGE})"
        ) from None
    if not _holds_fashion(raw):
        raise DatasetError(f"{raw}: the Fashion-MNIST download left no {FASHION_FILES[0]}")
    return raw


def load_fashion(split: str, detection_classes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(images N x 28 x 28 uint8, labels N) of Fashion-MNIST's `train` or `t10k` split, only the
    detection task's classes unless `detection_classes` is False."""
    folder = ensure_fashion_mnist()
    with gzip.open(os.path.join(folder, f"{split}-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(os.path.join(folder, f"{split}-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    if not detection_classes:
        return images, labels
    keep = np.isin(labels, list(CLASSES))
    return images[keep], labels[keep]


def load_photos(cache_dir: str) -> list[np.ndarray]:
    """The photographs of the scikit-image wheel, read from the wheel itself (no install)."""
    os.makedirs(cache_dir, exist_ok=True)
    wheels = [
        f for f in os.listdir(cache_dir) if f.startswith("scikit_image") and f.endswith(".whl")
    ]
    if not wheels:
        print(f"downloading {PHOTO_WHEEL} (for its bundled photographs) ...", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "--disable-pip-version-check",
                "-d",
                cache_dir,
                PHOTO_WHEEL,
            ],
            check=True,
        )
        wheels = [f for f in os.listdir(cache_dir) if f.startswith("scikit_image")]
    photos = []
    with zipfile.ZipFile(os.path.join(cache_dir, wheels[0])) as wheel:
        for name in PHOTOS:
            with wheel.open(f"skimage/data/{name}") as f:
                photos.append(np.asarray(Image.open(f).convert("RGB")))
    return photos


def background(rng, photos, size: int) -> np.ndarray:
    photo = photos[rng.integers(len(photos))]
    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(0.3, 1.0))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size), Image.BILINEAR)
    return np.asarray(crop).copy()


def random_colour(rng) -> np.ndarray:
    """A saturated, bright RGB colour (0-255): hue uniform, saturation 0.5-1."""
    return np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.5, 1), 1.0)) * 255


def paste(
    rng,
    image: np.ndarray,
    item: np.ndarray,
    y: int,
    x: int,
    where: np.ndarray,
    colour: np.ndarray | None = None,
) -> None:
    """Paint the object `item` (resized Fashion-MNIST greyscale) at (y, x) in `colour` (random
    if None), on the pixels `where` (a bool mask the size of `item`)."""
    side = item.shape[0]
    colour = random_colour(rng) if colour is None else colour
    shade = item.astype(np.float32)[..., None] / 255.0
    patch = (0.3 + 0.7 * shade) * colour
    image[y : y + side, x : x + side][where] = patch[where]


def object_image(rng, photos, obj: np.ndarray, size: int = 64, object_size=(32, 56)):
    """One object, large in the frame, on a photo crop: the object-centred image of the
    labelled set (as ImageNet is to COCO)."""
    image = background(rng, photos, size)
    side = int(rng.integers(object_size[0], object_size[1] + 1))
    item = np.asarray(Image.fromarray(obj).resize((side, side), Image.BILINEAR))
    y, x = rng.integers(0, size - side + 1, size=2)
    paste(rng, image, item, y, x, item > 40)
    return image


def composite(
    rng, photos, objects, labels, size: int = 128, max_objects: int = 3, object_size=(32, 64)
):
    """One image and its instances [(Fashion-MNIST label, bool mask)]; objects avoid covering more
    than a fifth of one another, so every mask stays a whole object."""
    image = background(rng, photos, size)
    taken = np.zeros((size, size), bool)
    instances = []
    for _ in range(rng.integers(1, max_objects + 1)):
        index = rng.integers(len(objects))
        side = int(rng.integers(object_size[0], object_size[1] + 1))
        item = np.asarray(Image.fromarray(objects[index]).resize((side, side), Image.BILINEAR))
        shape = item > 40
        for _attempt in range(10):
            y, x = rng.integers(0, size - side + 1, size=2)
            mask = np.zeros((size, size), bool)
            mask[y : y + side, x : x + side] = shape
            if (mask & taken).sum() <= 0.2 * mask.sum():
                break
        else:
            continue
        mask &= ~taken  # what is already there stays on top: masks never overlap
        paste(rng, image, item, y, x, shape & mask[y : y + side, x : x + side])
        taken |= mask
        instances.append((int(labels[index]), mask))
    return image, instances


def coco_json(records, class_ids) -> dict:
    from pycocotools import mask as mask_utils

    images, annotations = [], []
    for image_id, (file_name, size, instances) in enumerate(records, start=1):
        images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        for label, mask in instances:
            ys, xs = np.nonzero(mask)
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": class_ids[label],
                    "iscrowd": 0,
                    "area": int(mask.sum()),
                    "bbox": [
                        int(xs.min()),
                        int(ys.min()),
                        int(xs.max() - xs.min() + 1),
                        int(ys.max() - ys.min() + 1),
                    ],
                    "segmentation": rle,
                }
            )
    categories = [{"id": cid, "name": CLASSES[label]} for label, cid in class_ids.items()]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_objects(staging: str, rng, photos, n_train: int, n_test: int) -> None:
    """objects/train from Fashion-MNIST's training split, objects/test from its test split."""
    for split, count, fashion_split in (("train", n_train, "train"), ("test", n_test, "t10k")):
        objects, labels = load_fashion(fashion_split, detection_classes=False)
        by_class = [np.flatnonzero(labels == label) for label in range(len(ALL_CLASSES))]
        for name in ALL_CLASSES:
            os.makedirs(os.path.join(staging, "objects", split, name))
        for i in range(count):  # classes in turn: balanced, and no class folder left empty
            label = i % len(ALL_CLASSES)
            image = object_image(rng, photos, objects[rng.choice(by_class[label])])
            Image.fromarray(image).save(
                os.path.join(staging, "objects", split, ALL_CLASSES[label], f"{i:06d}.jpg"),
                quality=95,
            )


def build(
    out_dir: str,
    cache_dir: str,
    n_pretrain: int = 6000,
    n_train: int = 60,
    n_test: int = 120,
    size: int = 128,
    seed: int = 0,
    n_objects_train: int = 6000,
    n_objects_test: int = 1000,
) -> str:
    """Writes the sets under `out_dir` once (atomically); returns `out_dir`."""
    from pretrain.common.build_once import build_once

    def fill(staging: str) -> None:
        photos = load_photos(cache_dir)
        train_objects, train_labels = load_fashion("train")
        test_objects, test_labels = load_fashion("t10k")
        class_ids = {label: i + 1 for i, label in enumerate(CLASSES)}
        for stream, (split, count, objects, labels) in enumerate(
            (
                ("pretrain", n_pretrain, train_objects, train_labels),
                ("train", n_train, train_objects, train_labels),
                ("test", n_test, test_objects, test_labels),
            )
        ):
            # A generator per split: the labelled sets do not change with the number of
            # unlabelled composites (the demo makes those only for --table4).
            rng = np.random.default_rng([seed, stream])
            os.makedirs(os.path.join(staging, split))
            records = []
            for i in range(count):
                image, instances = composite(rng, photos, objects, labels, size)
                name = f"{i:06d}.jpg"
                Image.fromarray(image).save(os.path.join(staging, split, name), quality=95)
                records.append((name, size, instances))
            if split != "pretrain":
                with open(os.path.join(staging, f"{split}.json"), "w") as f:
                    json.dump(coco_json(records, class_ids), f)
        write_objects(
            staging, np.random.default_rng(seed + 1), photos, n_objects_train, n_objects_test
        )

    return build_once(out_dir, fill)
