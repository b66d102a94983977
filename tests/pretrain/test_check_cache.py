"""The image check's verdicts kept between runs (pretrain/data/check_cache.py): a run on images
another run checked reads only the files that changed, and a deeper check looks again. Real
CIFAR-10 JPEGs; the user's cache is a folder of the test's own."""

import os

import pytest

from pretrain.data.check_cache import cache_path, load_verdicts, save_verdicts
from pretrain.data.checks import checked_images, find_bad_images
from pretrain.data.packed import FolderImages
from tests.pretrain.test_bad_images import cfg_for, cifar_class_folders, truncate


@pytest.fixture
def images(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user_cache"))
    cifar_class_folders(shared_data, tmp_path / "images", {"bird": 6, "frog": 6})
    return tmp_path / "images"


def same_stamp_other_bytes(path) -> None:
    """Truncates `path`'s content in place but pads it back to its size and restores its
    modification time: a change the cache cannot see, which shows whether the file was read."""
    stat = os.stat(path)
    truncate(path)
    data = path.read_bytes()
    path.write_bytes(data + b"\0" * (stat.st_size - len(data)))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(path).st_size == stat.st_size


def test_a_second_run_on_the_same_images_takes_the_verdicts_and_rechecks_a_changed_file(
    images, tmp_path
):
    assert checked_images(cfg_for(images, tmp_path / "run1")) is not None
    assert len(load_verdicts(str(images))) == 12
    assert os.path.isfile(cache_path(str(images)))
    frogs = sorted((images / "frog").iterdir())
    same_stamp_other_bytes(frogs[0])  # unseen by a run that trusts the cache
    truncate(frogs[1])  # a new size: checked again
    kept = checked_images(cfg_for(images, tmp_path / "run2"))  # a new run folder: no data_check
    names = {kept.name(i) for i in range(len(kept))}
    assert str(frogs[1]) not in names and str(frogs[0]) in names and len(names) == 11
    assert load_verdicts(str(images))[os.path.abspath(frogs[1])][2].startswith("OSError")
    # Without the cache, every file is read: the hidden change is found.
    kept = checked_images(cfg_for(images, tmp_path / "run3", "DATA.CHECK_CACHE", "False"))
    assert len(kept) == 10


def test_a_deeper_check_does_not_take_a_shallower_verdict(images):
    folder = FolderImages(str(images))
    bad, fresh = find_bad_images(folder, "header")
    assert bad == [] and len(fresh) == 12
    save_verdicts(str(images), fresh)
    cache = load_verdicts(str(images))
    assert find_bad_images(folder, "header", cache=cache)[1] == {}  # all taken from the cache
    bad, fresh = find_bad_images(folder, "decode", cache=cache)
    assert bad == [] and len(fresh) == 12 and {v[1] for v in fresh.values()} == {"decode"}
    save_verdicts(str(images), fresh)
    assert find_bad_images(folder, "header", cache=load_verdicts(str(images)))[1] == {}


def test_an_unwritable_cache_costs_only_time(images, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))  # a file: no folder below it
    assert len(checked_images(cfg_for(images, tmp_path / "run"))) == 12
    assert load_verdicts(str(images)) == {}


def test_a_pack_is_checked_once_and_a_cut_file_never_enters_it(images, tmp_path):
    from pretrain.data.packed import SKIPPED_FILE, PackedImages, build_pack

    truncate(sorted((images / "frog").iterdir())[0])
    assert build_pack(str(images), str(tmp_path / "pack")) == 11
    assert "truncated" in (tmp_path / "pack" / SKIPPED_FILE).read_text()
    pack = PackedImages(str(tmp_path / "pack"))
    assert pack.tail(0, 2) == b"\xff\xd9"  # each image's own last bytes
    bad, fresh = find_bad_images(pack, "decode")
    assert bad == [] and len(fresh) == 11 and len(set(fresh)) == 11
    save_verdicts(str(tmp_path / "pack"), fresh)
    assert find_bad_images(pack, "decode", cache=load_verdicts(str(tmp_path / "pack")))[1] == {}
