import pytest

import detection  # noqa: F401
from pretrain.common.errors import ConfigError
from detection.datasets import parse_spec, register_from_specs


def test_spec_parsing_and_errors():
    assert parse_spec("name=a format=voc root='/x y' split=val") == {
        "name": "a",
        "format": "voc",
        "root": "/x y",
        "split": "val",
    }
    with pytest.raises(ConfigError, match="missing format="):
        parse_spec("name=a root=/x")
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        parse_spec("name=a format=voc /x")


@pytest.mark.parametrize(
    "spec, problem",
    [
        (
            "name=t_missing_root format=voc root=/nonexistent split=train",
            "root /nonexistent: no such dir",
        ),
        (
            "name=t_missing_json format=coco json=/nonexistent.json images=/tmp",
            "json /nonexistent.json",
        ),
        ("name=t_bad_format format=yolo root=/tmp", "format=yolo"),
    ],
)
def test_missing_paths_fail_before_training(spec, problem):
    with pytest.raises(ConfigError, match=problem):
        register_from_specs([spec])


def test_voc_split_and_class_names_from_annotations(shared_data):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    root = shared_data / "bccd"
    (name,) = register_from_specs([f"name=t_bccd_val format=voc root={root} split=val"])
    assert MetadataCatalog.get(name).thing_classes == ["Platelets", "RBC", "WBC"]
    records = DatasetCatalog.get(name)
    assert len(records) == 87 and all(r["annotations"] for r in records)


def test_coco_holdout_split_is_disjoint_and_complete(shared_data):
    from detectron2.data import DatasetCatalog

    root = shared_data / "fruits_nuts"
    common = f"format=coco json={root}/trainval.json images={root}/images holdout=0.25 seed=3"
    train, test = register_from_specs(
        [f"name=t_fn_train {common} part=train", f"name=t_fn_test {common} part=test"]
    )
    train_ids = {r["image_id"] for r in DatasetCatalog.get(train)}
    test_ids = {r["image_id"] for r in DatasetCatalog.get(test)}
    assert len(test_ids) == round(0.25 * 18) and not train_ids & test_ids
    assert len(train_ids | test_ids) == 18
    assert all("segmentation" in a for r in DatasetCatalog.get(test) for a in r["annotations"])
