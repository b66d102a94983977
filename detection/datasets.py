"""Register detection datasets from one-line specs, so any COCO-json or VOC-layout set can be used
from a config or the command line without writing code:

    DATASETS.REGISTER ("name=bccd_train format=voc root=/data/bccd split=train classes=RBC,WBC,Platelets",
                       "name=fruits_train format=coco json=/data/fn/trainval.json images=/data/fn/images
                        holdout=0.25 part=train")

voc:  root (Annotations/, JPEGImages/, ImageSets/Main/<split>.txt), split, classes (comma-separated;
      default: every <name> in the annotations, sorted), year (2007 selects the 11-point VOC07 AP;
      default 2012, the area AP).
coco: json, images; optional holdout (fraction of images held out, chosen by a seeded shuffle of
      the image ids), part (train|test: which side of that split), seed (default 0).
Detectron2's built-in names (coco_2017_*, voc_20{07,12}_*) need no spec; they read
$DETECTRON2_DATASETS.
"""
from __future__ import annotations

import glob
import json
import os
import random
import shlex
import xml.etree.ElementTree as ET

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.data.datasets.pascal_voc import load_voc_instances


class DatasetSpecError(SystemExit):
    def __init__(self, spec: str, problem: str):
        super().__init__(f"error: dataset spec {spec!r}: {problem}")


def parse_spec(spec: str) -> dict:
    fields = {}
    for token in shlex.split(spec):
        key, sep, value = token.partition("=")
        if not sep:
            raise DatasetSpecError(spec, f"{token!r} is not KEY=VALUE")
        fields[key] = value
    for required in ("name", "format"):
        if required not in fields:
            raise DatasetSpecError(spec, f"missing {required}=")
    return fields


def _require(spec: str, path: str, what: str, kind: str = "file") -> str:
    exists = os.path.isdir(path) if kind == "dir" else os.path.isfile(path)
    if not exists:
        raise DatasetSpecError(spec, f"{what} {path}: no such {kind}")
    return path


def voc_class_names(root: str) -> list[str]:
    names = set()
    for xml_file in glob.glob(os.path.join(root, "Annotations", "*.xml")):
        names.update(obj.findtext("name").strip() for obj in ET.parse(xml_file).findall("object"))
    return sorted(names)


def register_voc(spec: str, fields: dict) -> None:
    root = _require(spec, fields.get("root", ""), "root", "dir")
    split = fields.get("split", "trainval")
    _require(spec, os.path.join(root, "ImageSets", "Main", f"{split}.txt"), "split list")
    classes = fields["classes"].split(",") if fields.get("classes") else voc_class_names(root)
    name = fields["name"]
    DatasetCatalog.register(name, lambda: load_voc_instances(root, split, classes))
    MetadataCatalog.get(name).set(thing_classes=list(classes), dirname=root,
                                  year=int(fields.get("year", 2012)), split=split,
                                  evaluator_type="pascal_voc")


def holdout_image_ids(image_ids: list[int], fraction: float, seed: int) -> set[int]:
    shuffled = sorted(image_ids)
    random.Random(seed).shuffle(shuffled)
    return set(shuffled[:max(1, round(fraction * len(shuffled)))])


def register_coco(spec: str, fields: dict) -> None:
    json_file = _require(spec, fields.get("json", ""), "json")
    images = _require(spec, fields.get("images", ""), "images", "dir")
    name = fields["name"]
    with open(json_file) as f:
        coco = json.load(f)
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    holdout = float(fields.get("holdout", 0))
    part = fields.get("part", "train")
    if part not in ("train", "test"):
        raise DatasetSpecError(spec, f"part={part}: expected train or test")
    held_out = holdout_image_ids([im["id"] for im in coco["images"]], holdout,
                                 int(fields.get("seed", 0))) if holdout > 0 else set()

    def load():
        dicts = load_coco_json(json_file, images, name)
        if not held_out:
            return dicts
        return [d for d in dicts if (d["image_id"] in held_out) == (part == "test")]

    DatasetCatalog.register(name, load)
    meta = {"thing_classes": [c["name"] for c in categories],
            "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(categories)},
            "image_root": images, "evaluator_type": "coco"}
    if not held_out:
        # The evaluator may then read the ground truth straight from the original file; for a
        # split it converts the split's own records instead, so held-out metrics count only them.
        meta["json_file"] = json_file
    MetadataCatalog.get(name).set(**meta)


REGISTRARS = {"voc": register_voc, "coco": register_coco}


def register_from_specs(specs) -> list[str]:
    """Register every spec not yet in the catalog; returns their names."""
    names = []
    for spec in specs:
        fields = parse_spec(spec)
        if fields["format"] not in REGISTRARS:
            raise DatasetSpecError(spec, f"format={fields['format']}: expected voc or coco")
        if fields["name"] not in DatasetCatalog.list():
            REGISTRARS[fields["format"]](spec, fields)
        names.append(fields["name"])
    return names
