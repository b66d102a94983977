"""DATA.VIEWS_FROM folder: the two views of a sample are two different images of one instance
folder, drawn reproducibly from the sample's seed."""

import numpy as np
import pytest
import torch
from PIL import Image

from pretrain.config import load_cfg
from pretrain.data.bad_data import BadImageLog
from pretrain.data.instances import InstanceError, InstanceViews
from pretrain.data.packed import FolderImages
from pretrain.data.pipelines import ViewPipeline
from pretrain.data.views import build_views


def instance_folders(root, counts):
    """Folder i holds counts[i] flat images of grey level 10 * i + k (k: the image's number)."""
    for i, count in enumerate(counts):
        folder = root / f"{i:03d}"
        folder.mkdir()
        for k in range(count):
            Image.fromarray(np.full((8, 8, 3), 10 * i + k, np.uint8)).save(folder / f"{k}.png")
    return root


def grey(view):
    """The image's grey level back from a normalised view (ImageNet mean / std of channel 0)."""
    return round((view[0, 0, 0].item() * 0.229 + 0.485) * 255)


def folder_cfg(root):
    return load_cfg(
        opts=[
            "DATA.ROOT",
            str(root),
            "DATA.VIEWS_FROM",
            "folder",
            "DATA.AUGMENTATION",
            "flip",
            "DATA.CROP_SIZE",
            "8",
        ]
    )


def test_views_are_two_different_images_of_one_instance(tmp_path):
    root = instance_folders(tmp_path, [3, 2, 1, 4])
    cfg = folder_cfg(root)
    dataset = InstanceViews(FolderImages(str(root)), build_views(cfg), seed=0)
    assert len(dataset) == 3  # the folder with one image gives no pair
    pairs = set()
    for epoch in range(6):
        for index, folder in enumerate((0, 1, 3)):
            (query, key), bad = dataset[(epoch, index)]
            a, b = grey(query), grey(key)
            assert bad == [] and a != b and a // 10 == b // 10 == folder
            pairs.add((a, b))
    assert len(pairs) > 3  # the pair changes with the epoch
    (q1, k1), _ = dataset[(4, 2)]
    (q2, k2), _ = dataset[(4, 2)]
    assert torch.equal(q1, q2) and torch.equal(k1, k2)  # a resume replays it


def test_an_unreadable_image_is_replaced_by_another_of_its_instance(tmp_path):
    root = instance_folders(tmp_path, [3])
    (root / "000" / "1.png").write_bytes(b"not an image")
    dataset = InstanceViews(FolderImages(str(root)), build_views(folder_cfg(root)), seed=0)
    named = []
    for epoch in range(8):
        (query, key), bad = dataset[(epoch, 0)]
        assert {grey(query), grey(key)} == {0, 2}
        named += bad
    # each draw of the bad file names it; the run's BadImageLog counts it once (below)
    assert len(named) > 1 and {name for name, _ in named} == {str(root / "000" / "1.png")}
    log = BadImageLog(str(tmp_path / "out"))
    assert log.add(named) == 1 and log.add(named) == 0
    assert (tmp_path / "out" / "bad_images.txt").read_text().count("1.png") == 1


def test_the_pipeline_refuses_folders_without_pairs_and_the_gpu_pipeline(tmp_path):
    root = instance_folders(tmp_path, [1, 1])
    with pytest.raises(InstanceError, match="no folder holds two or more images"):
        ViewPipeline(folder_cfg(root), FolderImages(str(root)), "cpu")
    cfg = load_cfg(opts=["DATA.VIEWS_FROM", "folder", "DATA.PIPELINE", "gpu"])
    with pytest.raises(ValueError, match="DATA.VIEWS_FROM folder needs DATA.PIPELINE cpu"):
        ViewPipeline(cfg, FolderImages(str(root)), "cpu")
    cfg = load_cfg(opts=["DATA.VIEWS_FROM", "frames"])
    with pytest.raises(ValueError, match="DATA.VIEWS_FROM 'frames'"):
        ViewPipeline(cfg, FolderImages(str(root)), "cpu")
