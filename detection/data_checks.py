"""The detection data checked before training (DATASETS.CHECK, train_net.py --check-data), and
image files that fail while training named instead of crashing a DataLoader worker.

Before training every record of the train and test datasets is checked: its image file exists
and its header opens ("header"; "decode" also decodes it, which finds truncated files), its size
is the one the annotation gives, and its boxes lie inside it. Bad images are left out and listed in
OUTPUT_DIR/bad_images.txt (DATASETS.ON_BAD_IMAGE skip) or stop the run with one line naming the
first (error). A file that still fails to decode while training is skipped (a training image) or
stops the run naming it (a test image: evaluating another image in its place would be wrong)."""

from __future__ import annotations

import hashlib
import math
import os
import sys

from detectron2.data import (
    DatasetCatalog,
    DatasetFromList,
    DatasetMapper,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.data.build import _train_loader_from_config
from detectron2.data.common import MapDataset
from detectron2.data.detection_utils import SizeMismatchError
from detectron2.structures import BoxMode
from PIL import Image, ImageOps

from pretrain.data.bad_data import (
    CHECK_DEPTHS,
    BadImageError,
    BadImageLog,
    check_choice,
    file_problem,
    problems_of,
    write_bad_list,
)
from pretrain.common.errors import DatasetError
from pretrain.common.user_cache import user_cache_dir
from pretrain.data.images import MAX_CONSECUTIVE_FAILURES, to_rgb

# A box may reach this far past the image edge (px): annotation tools round outwards, and VOC's
# inclusive 1-based xmax equals the width.
BOX_TOLERANCE = 1.0
EXIF_ORIENTATION = 0x0112
SWAPPED_ORIENTATIONS = (5, 6, 7, 8)  # rotated a quarter turn: Detectron2 swaps width and height


# Pillow modes of more than 8 bits per channel: Detectron2's read_image converts them with
# Pillow's convert("RGB"), which clips at 255, so a 16-bit scan would train as an all-white image.
# The check gives such images 8-bit copies scaled by their bit depth instead (scaled_copy).
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class WideImage(str):
    """record_problem's answer for a usable image of more than 8 bits per channel: no problem,
    but it is read from an 8-bit copy (its Pillow mode is the text)."""


def scaled_copy(path: str) -> str:
    """An 8-bit RGB PNG of the wide image `path`, scaled by its bit depth as pretraining reads it
    (pretrain/data/images.py to_rgb), written once into the user's cache and keyed by the file's
    path, size and modification time (an edited file gets a new copy)."""
    stat = os.stat(path)
    key = hashlib.sha1(f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    copy = user_cache_dir("scaled_images", f"{key.hexdigest()}.png")
    if not os.path.isfile(copy):
        os.makedirs(os.path.dirname(copy), exist_ok=True)
        with Image.open(path) as img:
            rgb = to_rgb(ImageOps.exif_transpose(img))
        temp = f"{copy}.{os.getpid()}.tmp"
        rgb.save(temp, format="PNG")
        os.replace(temp, copy)  # atomic: processes checking at once write the same bytes
    return copy


def image_size(path: str) -> tuple[int, int, str]:
    """(width, height, Pillow mode) as Detectron2's read_image sees it: after the EXIF rotation."""
    with Image.open(path) as img:
        width, height = img.size
        if img.getexif().get(EXIF_ORIENTATION) in SWAPPED_ORIENTATIONS:
            width, height = height, width
        return width, height, img.mode


def record_problem(record: dict, decode: bool) -> str | None:
    """Why a Detectron2 dataset record cannot be trained on or evaluated, or None."""
    path = record["file_name"]
    problem = file_problem(path, decode)
    if problem:
        return problem
    try:
        width, height, mode = image_size(path)  # Pillow reads the header (the cheap check did not)
    except Exception as err:  # Pillow raises many types for a corrupt header
        return f"not an image file ({type(err).__name__}: {err})".replace("\n", " ")
    if mode == "F":  # floating-point pixels: no bit depth to scale by
        return f"a floating-point image (Pillow mode {mode}): convert it to 8 bits per channel"
    expected = (record.get("width"), record.get("height"))
    if all(expected) and expected != (width, height):
        return f"image is {width}x{height}, its annotation says {expected[0]}x{expected[1]}"
    for annotation in record.get("annotations", []):
        x0, y0, x1, y1 = BoxMode.convert(
            list(annotation["bbox"]), annotation["bbox_mode"], BoxMode.XYXY_ABS
        )
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            return f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is not a number"
        if x1 <= x0 or y1 <= y0:
            return f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has zero or negative size"
        if (
            x0 < -BOX_TOLERANCE
            or y0 < -BOX_TOLERANCE
            or x1 > width + BOX_TOLERANCE
            or y1 > height + BOX_TOLERANCE
        ):
            return f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) falls outside the {width}x{height} image"
    return WideImage(mode) if mode in WIDE_MODES else None


def find_bad_records(
    records: list[dict], decode: bool, threads: int = 8, wide: list[str] | None = None
) -> dict[str, str]:
    """{file_name: reason} of the records that fail record_problem; the file names of usable
    images of more than 8 bits per channel are appended to `wide`."""
    numbered = list(range(len(records)))
    bad = {}
    for i, reason in problems_of(numbered, lambda i: record_problem(records[i], decode), threads):
        if isinstance(reason, WideImage):
            if wide is not None:
                wide.append(records[i]["file_name"])
        else:
            bad[records[i]["file_name"]] = reason
    return bad


def _read_from_copies(name: str, copies: dict[str, str]) -> None:
    """Re-register dataset `name` with its wide images read from their 8-bit copies (the records
    keep their ids, so evaluators that read the ground truth from the original files agree)."""
    load = DatasetCatalog[name]
    DatasetCatalog.remove(name)
    DatasetCatalog.register(
        name,
        lambda: [dict(r, file_name=copies.get(r["file_name"], r["file_name"])) for r in load()],
    )


def _drop_from_catalog(name: str, records: list[dict], bad: set[str]) -> None:
    """Re-register dataset `name` without the images `bad`; an evaluator that read the ground
    truth from the original files (COCO json_file, VOC ImageSets) would count the dropped images
    as missed, so it is pointed at the kept records instead."""
    load = DatasetCatalog[name]
    DatasetCatalog.remove(name)
    DatasetCatalog.register(name, lambda: [r for r in load() if r["file_name"] not in bad])
    meta = MetadataCatalog.get(name).as_dict()
    meta.pop("name", None)
    if meta.get("evaluator_type") == "pascal_voc":
        from .datasets import write_voc_view

        kept = [r["image_id"] for r in records if r["file_name"] not in bad]
        annotations = os.path.join(meta["dirname"], "Annotations")
        meta["dirname"] = write_voc_view(
            {i: os.path.join(annotations, f"{i}.xml") for i in kept}, meta["split"]
        )
    meta.pop("json_file", None)
    MetadataCatalog.remove(name)
    MetadataCatalog.get(name).set(**meta)


def check_masks(names) -> None:
    """MODEL.MASK_ON needs masks: a box-only dataset (a COCO json without "segmentation", any
    VOC set) fails mid-training on gt_masks otherwise."""
    for name in dict.fromkeys(names):
        annotations = [
            a for record in DatasetCatalog.get(name) for a in record.get("annotations", [])
        ]
        if annotations and not any(a.get("segmentation") for a in annotations):
            raise DatasetError(
                f"dataset {name}: MODEL.MASK_ON, but its annotations hold no masks "
                "(segmentation); train a box-only model (a Faster R-CNN config) "
                "or give a dataset with masks"
            )


def report_unannotated(cfg, names, is_main_process: bool = True) -> dict[str, int]:
    """Detectron2 leaves the training images without annotations (or with only crowd ones) out of
    training (DATALOADER.FILTER_EMPTY_ANNOTATIONS) and logs only a count among its own lines; an
    export with many background images loses them unseen. Says so in one line per dataset and
    refuses a training set with none left; returns {dataset: images left out}."""
    if not cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS:
        return {}
    dropped = {}
    for name in dict.fromkeys(names):
        records = DatasetCatalog.get(name)
        empty = sum(
            1
            for r in records
            if not any(a.get("iscrowd", 0) == 0 for a in r.get("annotations", []))
        )
        if not empty:
            continue
        dropped[name] = empty
        if records and empty == len(records):
            raise DatasetError(
                f"dataset {name}: none of its {len(records)} images has an "
                "annotation (other than crowd ones), so there is nothing to train "
                "on; check the annotation file or the dataset's categories"
            )
        if is_main_process:
            print(
                f"warning: dataset {name}: {empty} of {len(records)} training images have no "
                "annotations and are left out of training (DATALOADER.FILTER_EMPTY_ANNOTATIONS "
                "False keeps them, as background)",
                file=sys.stderr,
                flush=True,
            )
    return dropped


def check_detection_data(cfg, names, is_main_process: bool = True) -> dict[str, str]:
    """Check the datasets `names` as DATASETS.CHECK says; returns {file: reason} of the bad
    images (left out of the catalog, or a BadImageError with DATASETS.ON_BAD_IMAGE error)."""
    depth = check_choice("DATASETS.CHECK", cfg.DATASETS.CHECK, CHECK_DEPTHS)
    on_bad = check_choice("DATASETS.ON_BAD_IMAGE", cfg.DATASETS.ON_BAD_IMAGE)
    if cfg.MODEL.MASK_ON:
        check_masks(names)
    if depth == "off":
        return {}
    all_bad: dict[str, str] = {}
    unusable = ""  # a dataset none of whose images can be read
    for name in dict.fromkeys(names):
        records = DatasetCatalog.get(name)
        if is_main_process:
            print(
                f"checking the {len(records)} images of dataset {name} (DATASETS.CHECK {depth})",
                file=sys.stderr,
                flush=True,
            )
        wide: list[str] = []
        bad = find_bad_records(records, depth == "decode", cfg.DATALOADER.NUM_WORKERS, wide)
        if wide:
            _read_from_copies(name, {path: scaled_copy(path) for path in wide})
            if is_main_process:
                print(
                    f"dataset {name}: {len(wide)} images of more than 8 bits per channel (e.g. "
                    f"{wide[0]}) are read from 8-bit copies scaled by their bit depth, in "
                    f"{user_cache_dir('scaled_images')}",
                    file=sys.stderr,
                )
        if bad and on_bad == "skip":
            _drop_from_catalog(name, records, set(bad))
            if is_main_process:
                print(
                    f"warning: dataset {name}: {len(bad)} of {len(records)} images left out "
                    f"(listed in {os.path.join(cfg.OUTPUT_DIR, 'bad_images.txt')})",
                    file=sys.stderr,
                )
        all_bad.update(bad)
        if records and len(bad) == len(records):
            unusable = unusable or f"dataset {name}: none of its {len(records)} images can be read"
    if all_bad and is_main_process:
        write_bad_list(cfg.OUTPUT_DIR, sorted(all_bad.items()))
    if unusable and on_bad == "skip":
        raise DatasetError(
            f"{unusable} (listed in {os.path.join(cfg.OUTPUT_DIR, 'bad_images.txt')})"
        )
    if all_bad and on_bad == "error":
        path, reason = next(iter(all_bad.items()))
        raise BadImageError(
            f"{path}: {reason} ({len(all_bad)} bad images, listed in "
            f"{os.path.join(cfg.OUTPUT_DIR, 'bad_images.txt')}; "
            "DATASETS.ON_BAD_IMAGE skip leaves them out)"
        )
    return all_bad


# Errors of reading an image in the mapper: Pillow's (OSError incl. a missing file, SyntaxError
# for a bad header, DecompressionBombError) and Detectron2's size check.
IMAGE_ERRORS = (OSError, SyntaxError, Image.DecompressionBombError, SizeMismatchError)


class CheckedDatasetMapper(DatasetMapper):
    """Detectron2's DatasetMapper, but an image it cannot read is named: skipped (training with
    DATASETS.ON_BAD_IMAGE skip: the SkippingMapDataset then maps another image) or a one-line
    BadImageError (error, and always at test time)."""

    def __init__(self, cfg, is_train: bool):
        super().__init__(cfg, is_train)
        self.skip = is_train and cfg.DATASETS.ON_BAD_IMAGE == "skip"
        self.bad_log = BadImageLog(cfg.OUTPUT_DIR, "skip", "DATASETS.ON_BAD_IMAGE")

    def __call__(self, dataset_dict):
        try:
            return super().__call__(dataset_dict)
        except IMAGE_ERRORS as err:
            path = dataset_dict.get("file_name", "?")
            reason = f"{type(err).__name__}: {err}".replace("\n", " ")
            if not self.skip:
                raise BadImageError(f"{path}: {reason}") from None
            self.bad_log.add([(path, reason)])
            return None


class SkippingMapDataset(MapDataset):
    """Detectron2's MapDataset: where the mapper returns None (an image it skipped), another image
    drawn at random is mapped instead. Its own draw (random.sample of a set) raises TypeError on
    Python 3.11, and it retries for ever; this one stops after MAX_CONSECUTIVE_FAILURES."""

    def __getitem__(self, idx):
        current = int(idx)
        for _ in range(MAX_CONSECUTIVE_FAILURES):
            data = self._map_func(self._dataset[current])
            if data is not None:
                return data
            current = self._rng.randrange(len(self._dataset))
        raise BadImageError(
            f"{MAX_CONSECUTIVE_FAILURES} training images drawn in a row could not "
            "be read (listed in OUTPUT_DIR/bad_images.txt): are the dataset's "
            "files right?"
        )


def checked_train_loader(cfg):
    """Detectron2's train loader, built from the config as DefaultTrainer does, with the
    CheckedDatasetMapper inside a SkippingMapDataset."""
    # Detectron2's own reading of the config (dataset dicts, sampler, batch): a private helper of
    # detectron2.data.build, used so the loader matches DefaultTrainer's in everything else.
    kwargs = _train_loader_from_config(cfg, CheckedDatasetMapper(cfg, True))
    dataset = kwargs.pop("dataset")
    if isinstance(dataset, list):
        dataset = DatasetFromList(dataset, copy=False)
    return build_detection_train_loader(
        dataset=SkippingMapDataset(dataset, kwargs.pop("mapper")), mapper=None, **kwargs
    )


def checked_test_loader(cfg, dataset_name: str):
    return build_detection_test_loader(cfg, dataset_name, mapper=CheckedDatasetMapper(cfg, False))
