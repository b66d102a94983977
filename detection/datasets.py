"""Register detection datasets from one-line specs, so any COCO-json or VOC-layout set can be used
from a config or the command line without writing code:

    DATASETS.REGISTER ("name=bccd_train format=voc root=/data/bccd split=train
                        classes=RBC,WBC,Platelets",
                       "name=fruits_train format=coco json=/data/fn/trainval.json
                        images=/data/fn/images holdout=0.25 part=train")

voc:  root, in one of the layouts VOC exports come in: the standard Annotations/, JPEGImages/,
      ImageSets/Main/<split>.txt; or the .xml files beside the images in root (Roboflow, LabelImg),
      or Annotations/ + JPEGImages/ without ImageSets/Main. split names the list to read where
      there is one (default trainval); without one every annotated image is used. classes
      (comma-separated; default: every <name> in the annotations, sorted), year (2007 selects the
      11-point VOC07 AP; default 2012, the area AP).
coco: json, images. Categories that only name the others' supercategory and hold no annotation
      (Roboflow's category 0) are left out; categories that share a name are told apart by id
      ("name (id N)"), so per-class AP keeps them apart.
both: holdout (fraction of images held out, chosen by a seeded shuffle of the image ids), part
      (train|test: which side of that split), seed (default 0).
Detectron2's built-in names (coco_2017_*, voc_20{07,12}_*) need no spec; they read
$DETECTRON2_DATASETS.
"""

from __future__ import annotations

import atexit
import glob
import json
import os
import random
import shlex
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.structures import BoxMode

from pretrain.common.errors import ConfigError, DatasetError
from pretrain.data.images import IMAGE_EXTENSIONS


class DatasetSpecError(ConfigError):
    """A DATASETS.REGISTER spec that is malformed or names missing files."""

    def __init__(self, spec: str, problem: str):
        super().__init__(f"dataset spec {spec!r}: {problem}")


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


def holdout_image_ids(image_ids: list, fraction: float, seed: int) -> set:
    shuffled = sorted(image_ids)
    random.Random(seed).shuffle(shuffled)
    return set(shuffled[: max(1, round(fraction * len(shuffled)))])


def holdout_part(spec: str, fields: dict, image_ids: list) -> set | None:
    """The ids of the images this spec's part keeps (holdout=, part=, seed=), or None for all."""
    try:
        holdout, seed = float(fields.get("holdout", 0)), int(fields.get("seed", 0))
    except ValueError:
        raise DatasetSpecError(
            spec,
            f"holdout={fields.get('holdout')} seed={fields.get('seed')}: "
            "expected a fraction (0.25) and an integer seed",
        ) from None
    if not 0 <= holdout < 1:
        raise DatasetSpecError(spec, f"holdout={holdout:g}: expected a fraction in [0, 1)")
    part = fields.get("part", "train")
    if part not in ("train", "test"):
        raise DatasetSpecError(spec, f"part={part}: expected train or test")
    if holdout <= 0:
        return None
    held_out = holdout_image_ids(image_ids, holdout, seed)
    return {i for i in image_ids if (i in held_out) == (part == "test")}


# ---- Pascal VOC ----------------------------------------------------------------------------


def _parse_xml(path: str) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except (OSError, ET.ParseError) as err:
        raise DatasetError(f"VOC annotation {path}: unreadable ({err})") from None


# Where VOC-style exports keep their .xml files, in the order looked for; else beside the images.
VOC_ANNOTATION_FOLDERS = ("Annotations", "annots", "annotations")
# Where they keep the images when not beside the .xml files.
VOC_IMAGE_FOLDERS = ("JPEGImages", "images")


def voc_annotation_files(root: str) -> dict[str, str]:
    """{image id: its .xml}: from root/Annotations (or annots/, annotations/: the flat exports'
    names) if there is one, else the .xml files beside the images in root (an id is the file name
    without .xml)."""
    folder = next(
        (
            os.path.join(root, name)
            for name in VOC_ANNOTATION_FOLDERS
            if glob.glob(os.path.join(root, name, "*.xml"))
        ),
        root,
    )
    return {
        os.path.splitext(os.path.basename(f))[0]: f
        for f in sorted(glob.glob(os.path.join(folder, "*.xml")))
    }


def voc_image_file(root: str, image_id: str, xml_file: str, annotation: ET.Element) -> str:
    """The image of an annotation: JPEGImages/<id>.jpg (the standard layout), else the
    <filename> the xml names, beside the xml, else <id> with any image extension beside it.
    A missing file is returned where it was expected: the data check names it."""
    folder = os.path.dirname(xml_file)
    named = (annotation.findtext("filename") or "").strip()
    candidates = [os.path.join(root, "JPEGImages", image_id + ".jpg")]
    if named:
        candidates += [os.path.join(folder, os.path.basename(named))]
        candidates += [
            os.path.join(root, images, os.path.basename(named)) for images in VOC_IMAGE_FOLDERS
        ]
    candidates += [
        os.path.join(place, image_id + ext)
        for ext in IMAGE_EXTENSIONS
        for place in (folder, *(os.path.join(root, i) for i in VOC_IMAGE_FOLDERS))
    ]
    found = next((c for c in candidates if os.path.isfile(c)), None)
    if found:
        return found
    if os.path.isdir(os.path.join(root, "JPEGImages")):
        return candidates[0]
    return os.path.join(folder, os.path.basename(named) or image_id + ".jpg")


def voc_class_names(xml_files) -> list[str]:
    names = set()
    for xml_file in xml_files:
        names.update(
            (obj.findtext("name") or "").strip() for obj in _parse_xml(xml_file).findall("object")
        )
    return sorted(names)


def voc_box(obj: ET.Element, xml_file: str) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a VOC <object>; DatasetError naming the file when its
    <bndbox> is missing or not numbers."""
    try:
        return tuple(
            float(obj.findtext(f"bndbox/{key}")) for key in ("xmin", "ymin", "xmax", "ymax")
        )
    except (TypeError, ValueError):
        name = (obj.findtext("name") or "").strip()
        raise DatasetError(
            f"VOC annotation {xml_file}: object {name!r} has no <bndbox> with "
            "numeric xmin, ymin, xmax, ymax"
        ) from None


def load_voc_records(
    root: str, annotations: dict[str, str], ids: list[str], classes: list[str]
) -> list[dict]:
    """Detectron2 records of the images `ids`, as detectron2's load_voc_instances makes them
    (1-based inclusive pixel boxes: xmin and ymin less 1; "difficult" objects kept)."""
    records = []
    for image_id in ids:
        xml_file = annotations[image_id]
        annotation = _parse_xml(xml_file)
        instances = []
        for obj in annotation.findall("object"):
            name = (obj.findtext("name") or "").strip()
            if name not in classes:
                raise DatasetError(
                    f"VOC annotation {xml_file}: class {name!r} is not one of "
                    f"the spec's classes {classes}"
                )
            xmin, ymin, xmax, ymax = voc_box(obj, xml_file)
            instances.append(
                {
                    "category_id": classes.index(name),
                    "bbox": [xmin - 1.0, ymin - 1.0, xmax, ymax],
                    "bbox_mode": BoxMode.XYXY_ABS,
                }
            )
        records.append(
            {
                "file_name": voc_image_file(root, image_id, xml_file, annotation),
                "image_id": image_id,
                "height": int(float(annotation.findtext("size/height") or 0)),
                "width": int(float(annotation.findtext("size/width") or 0)),
                "annotations": instances,
            }
        )
    return records


def write_voc_view(xml_of_id: dict[str, str], split: str) -> str:
    """A temporary folder in the standard layout Detectron2's PascalVOCDetectionEvaluator reads
    (Annotations/<id>.xml, ImageSets/Main/<split>.txt) for the images `xml_of_id`, removed when
    the process ends. Its xml files are rewritten with the fields the evaluator requires (pose,
    truncated, difficult, integer boxes), which many exports leave out."""
    view = tempfile.mkdtemp(prefix=f"voc-{split}-")
    atexit.register(shutil.rmtree, view, ignore_errors=True)
    os.makedirs(os.path.join(view, "Annotations"))
    os.makedirs(os.path.join(view, "ImageSets", "Main"))
    for image_id, xml_file in xml_of_id.items():
        out = ET.Element("annotation")
        for obj in _parse_xml(xml_file).findall("object"):
            item = ET.SubElement(out, "object")
            ET.SubElement(item, "name").text = (obj.findtext("name") or "").strip()
            ET.SubElement(item, "pose").text = obj.findtext("pose") or "Unspecified"
            for flag in ("truncated", "difficult"):
                ET.SubElement(item, flag).text = str(int(float(obj.findtext(flag) or 0)))
            box = ET.SubElement(item, "bndbox")
            for key, value in zip(("xmin", "ymin", "xmax", "ymax"), voc_box(obj, xml_file)):
                ET.SubElement(box, key).text = str(int(value))
        ET.ElementTree(out).write(os.path.join(view, "Annotations", image_id + ".xml"))
    with open(os.path.join(view, "ImageSets", "Main", split + ".txt"), "w") as f:
        f.writelines(image_id + "\n" for image_id in xml_of_id)
    return view


def register_voc(spec: str, fields: dict) -> None:
    root = _require(spec, fields.get("root", ""), "root", "dir")
    annotations = voc_annotation_files(root)
    if not annotations:
        raise DatasetSpecError(
            spec,
            f"root {root}: no .xml annotations in {root}/Annotations "
            "(or annots/, annotations/) or beside the images",
        )
    split = fields.get("split", "trainval")
    split_file = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
    if os.path.isfile(split_file):
        with open(split_file) as f:
            ids = [line.split()[0] for line in f if line.strip()]
        unknown = [i for i in ids if i not in annotations]
        if unknown:
            raise DatasetSpecError(
                spec,
                f"split list {split_file}: {len(unknown)} ids without "
                f"an annotation, e.g. {unknown[0]}",
            )
    elif "split" in fields and os.path.isdir(os.path.join(root, "ImageSets", "Main")):
        raise DatasetSpecError(spec, f"split list {split_file}: no such file")
    elif "split" in fields and float(fields.get("holdout", 0)) <= 0:
        # Without split lists every split= would be the same images: a test set equal to the
        # training set.
        raise DatasetSpecError(
            spec,
            f"split={split}: {root} has no ImageSets/Main lists to "
            "read it from; divide the images with holdout=F part=train|test "
            "(seed=S) instead",
        )
    else:  # no split lists: every annotated image, divided by holdout= if asked
        ids = list(annotations)
    kept = holdout_part(spec, fields, ids)
    if kept is not None:
        ids = [i for i in ids if i in kept]
    classes = (
        fields["classes"].split(",")
        if fields.get("classes")
        else voc_class_names(annotations[i] for i in ids)
    )
    name = fields["name"]
    DatasetCatalog.register(name, lambda: load_voc_records(root, annotations, ids, classes))
    standard = (
        os.path.isfile(split_file)
        and kept is None
        and os.path.dirname(annotations[ids[0]]) == os.path.join(root, "Annotations")
    )
    # The evaluator reads dirname/Annotations and dirname/ImageSets/Main/<split>.txt: the
    # dataset's own folder where it is laid out so, else a view of it in that layout.
    dirname = root if standard else write_voc_view({i: annotations[i] for i in ids}, split)
    MetadataCatalog.get(name).set(
        thing_classes=list(classes),
        dirname=dirname,
        year=int(fields.get("year", 2012)),
        split=split,
        evaluator_type="pascal_voc",
    )


# ---- COCO ----------------------------------------------------------------------------------


def coco_categories(coco: dict, json_file: str) -> tuple[list[dict], list[str]]:
    """(the categories to train on, sorted by id, each with a unique "name"; notes on what was
    changed). A category with no annotation whose name is another's supercategory is a
    placeholder (Roboflow exports one as id 0) and is left out; categories that share a name are
    renamed "name (id N)"."""
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    used = {a["category_id"] for a in coco.get("annotations", [])}
    notes = []
    kept = []
    for c in categories:
        parent_of_another = any(
            o["id"] != c["id"] and o.get("supercategory") == c["name"] for o in categories
        )
        if c["id"] not in used and parent_of_another:
            notes.append(
                f"{json_file}: category id {c['id']} {c['name']!r} has no annotations "
                "and names the others' supercategory: left out"
            )
        else:
            kept.append(dict(c))
    counts = Counter(c["name"] for c in kept)
    for c in kept:
        if counts[c["name"]] > 1:
            notes.append(
                f"{json_file}: category id {c['id']} {c['name']!r} shares its name: "
                f"called {c['name']} (id {c['id']})"
            )
            c["name"] = f"{c['name']} (id {c['id']})"
    return kept, notes


def register_coco(spec: str, fields: dict) -> None:
    json_file = _require(spec, fields.get("json", ""), "json")
    images = _require(spec, fields.get("images", ""), "images", "dir")
    name = fields["name"]
    try:
        with open(json_file) as f:
            coco = json.load(f)
        categories, notes = coco_categories(coco, json_file)
        image_ids = [im["id"] for im in coco["images"]]
    except (ValueError, KeyError, TypeError) as err:
        raise DatasetSpecError(spec, f"json {json_file}: not a COCO detection file ({err!r})")
    if "annotations" not in coco:
        raise DatasetSpecError(
            spec,
            f"json {json_file}: no \"annotations\" list (an image-info "
            "or test-dev file holds no boxes to train or evaluate on)",
        )
    repeated = [i for i, n in Counter(image_ids).items() if n > 1]
    if repeated:
        raise DatasetSpecError(
            spec,
            f"json {json_file}: {len(repeated)} image ids appear more "
            f"than once (e.g. id {repeated[0]}): its annotations would land "
            "on the wrong images; give each image its own id",
        )
    for note in notes:
        print(f"note: dataset {name}: {note}", file=sys.stderr)
    kept = holdout_part(spec, fields, image_ids)
    id_map = {c["id"]: i for i, c in enumerate(categories)}

    def load():
        # dataset_name None: Detectron2 would set thing_classes from the json's own names.
        dicts = load_coco_json(json_file, images, None)
        for record in dicts:
            for annotation in record["annotations"]:
                if annotation["category_id"] not in id_map:
                    raise DatasetError(
                        f"{json_file}: image {record['file_name']}: category_id "
                        f"{annotation['category_id']} is not among the categories"
                    )
                annotation["category_id"] = id_map[annotation["category_id"]]
        return dicts if kept is None else [d for d in dicts if d["image_id"] in kept]

    DatasetCatalog.register(name, load)
    meta = {
        "thing_classes": [c["name"] for c in categories],
        "thing_dataset_id_to_contiguous_id": id_map,
        "image_root": images,
        "evaluator_type": "coco",
    }
    if kept is None and not notes:
        # The evaluator may then read the ground truth straight from the original file; for a
        # split, or categories changed here, it converts the dataset's own records instead, so
        # the metrics count only them, under the names given here.
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
