import pytest
import torch
from PIL import Image

from pretrain.common.errors import UserError
from pretrain.data.images import ImageViews, collate_views, list_images
from pretrain.data.packed import FolderImages
from pretrain.data.views import ContrastiveViews, preset_augmentation


def write_images(folder, n, size=(40, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", size, (i * 20 % 255, 80, 160)).save(folder / f"img{i}.jpg")


def test_class_folders_flat_folders_and_lists(tmp_path):
    write_images(tmp_path / "imagenet" / "n01", 2)
    write_images(tmp_path / "imagenet" / "n02", 3)
    assert len(list_images(str(tmp_path / "imagenet"))) == 5
    listing = tmp_path / "list.txt"
    listing.write_text("imagenet/n01/img0.jpg\nimagenet/n02/img2.jpg\n")
    assert [p.split("imagenet/")[1] for p in list_images(str(listing))] == [
        "n01/img0.jpg",
        "n02/img2.jpg",
    ]


@pytest.mark.parametrize("root, message", [("", "DATA.ROOT"), ("/nonexistent/imgs", "no such")])
def test_missing_root_is_a_clear_error(root, message):
    with pytest.raises(UserError, match=message):
        list_images(root)


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    write_images(tmp_path, 3)
    (tmp_path / "img1.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    dataset = ImageViews(
        FolderImages(str(tmp_path)), ContrastiveViews(preset_augmentation("mocov2", 16, (0.2, 1.0)))
    )
    (views, skipped) = collate_views([dataset[(0, i)] for i in range(3)])
    assert [name for name, _ in skipped] == [str(tmp_path / "img1.jpg")]
    assert views[0].shape == views[1].shape == (3, 3, 16, 16)


def test_augmentation_depends_only_on_seed_epoch_and_index(tmp_path):
    write_images(tmp_path, 2)
    dataset = ImageViews(
        FolderImages(str(tmp_path)), ContrastiveViews(preset_augmentation("mocov2", 16, (0.2, 1.0)))
    )
    a, _ = dataset[(3, 1)]
    torch.manual_seed(1234)  # the caller's RNG state must not matter ...
    b, _ = dataset[(3, 1)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c, _ = dataset[(4, 1)]  # ... but the epoch does
    assert not torch.equal(a[0], c[0])


def test_a_16_bit_grayscale_png_is_scaled_not_clipped_to_white(tmp_path):
    """Pillow's convert("RGB") clips 16-bit values at 255: a 16-bit scan came out all white."""
    import numpy as np
    from PIL import Image

    from pretrain.data.images import to_rgb

    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65,520
    Image.fromarray(ramp).save(tmp_path / "scan16.png")
    with Image.open(tmp_path / "scan16.png") as img:
        rgb = np.asarray(to_rgb(img))
    assert rgb.shape == (64, 64, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    assert rgb.min() == 0 and rgb.max() == 255 and abs(rgb.mean() - 127) < 1
    assert (rgb[..., 0] == np.rint(ramp / 257.0)).all()
