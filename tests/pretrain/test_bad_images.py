"""Bad pretraining images (issue 19): truncated, missing and whole folders of unreadable files are
skipped and named in OUTPUT_DIR/bad_images.txt, or stop the run with one line naming the file
(DATA.ON_BAD_IMAGE); the check before training (DATA.CHECK, --check-data) finds them first.
Real CIFAR-10 JPEGs, truncated copies made here."""

import json
import shutil
import tarfile
from pathlib import Path

import pytest
import torch

from pretrain.config import load_cfg
from pretrain.data.bad_data import BAD_IMAGES_FILE, BadImageError
from pretrain.data.checks import checked_images, find_bad_images
from pretrain.data.images import ImageViews, collate_views
from pretrain.data.packed import FolderImages
from pretrain.data.pipelines import ViewPipeline
from pretrain.data.views import build_views
from pretrain.engine.progress import read_metrics
from tests.conftest import run_tool
from tests.pretrain.test_distributed import TINY


@pytest.fixture(scope="module")
def cifar_sample(shared_data, tmp_path_factory) -> Path:
    """20 bird and 17 frog JPEGs of CIFAR-10 train, read once from the archive."""
    dest = tmp_path_factory.mktemp("cifar_sample")
    cifar_class_folders(shared_data, dest, {"bird": 20, "frog": 17})
    return dest


def cifar_class_folders(shared_data, dest: Path, per_class: dict) -> dict:
    """Copies the first per_class[c] JPEGs of CIFAR-10 train class c into dest/c; {c: [paths]}."""
    wanted = {f"train/{c}/": n for c, n in per_class.items()}
    found = {c: [] for c in per_class}
    with tarfile.open(shared_data / "cifar10-images.tar.gz") as tar:
        for member in tar:
            prefix = member.name[: member.name.rfind("/") + 1]
            cls = prefix[len("train/") : -1]
            if member.isfile() and prefix in wanted and len(found[cls]) < wanted[prefix]:
                path = dest / cls / Path(member.name).name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(tar.extractfile(member).read())
                found[cls].append(path)
            if all(len(found[c]) == n for c, n in per_class.items()):
                return found
    raise AssertionError(f"CIFAR-10 archive lacks {per_class}")


def truncate(path: Path) -> None:
    """Cuts a JPEG a few bytes into its scan, as an interrupted copy does: Pillow still reads
    the header, decoding fails."""
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\xff\xda") + 40])


def cfg_for(root, out, *opts):
    return load_cfg(opts=[*TINY, "DATA.ROOT", str(root), "OUTPUT_DIR", str(out), *opts])


@pytest.fixture
def bad_folder(cifar_sample, tmp_path):
    """20 good bird images and a class folder 'frog' of 17 truncated ones (the issue's bad
    folder: 16 unreadable files in a row ended the run)."""
    shutil.copytree(cifar_sample, tmp_path / "images")
    folders = {c: sorted((tmp_path / "images" / c).iterdir()) for c in ("bird", "frog")}
    for path in folders["frog"]:
        truncate(path)
    return tmp_path / "images", folders


def test_truncated_files_are_found_by_the_default_check_from_their_missing_end(bad_folder):
    """A JPEG cut short lacks its end marker: the cheap check reads each file's last bytes and
    decodes only the files without it."""
    root, folders = bad_folder
    images = FolderImages(str(root))
    for depth in ("header", "decode"):
        bad, _ = find_bad_images(images, depth)
        assert sorted(images.name(i) for i, _ in bad) == sorted(map(str, folders["frog"]))
        assert all("truncated" in reason for _, reason in bad)


def test_the_end_check_spares_trailing_bytes_and_decode_finds_damage_inside(cifar_sample, tmp_path):
    good = sorted((cifar_sample / "bird").iterdir())[0].read_bytes()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "camera.jpg").write_bytes(good + b"MAKERNOTE" * 8)  # data after the end
    (tmp_path / "c" / "inside.jpg").write_bytes(b"\xff\xd8\xff" + b"\x13" * 300 + b"\xff\xd9")
    images = FolderImages(str(tmp_path / "c"))
    assert find_bad_images(images, "header")[0] == []  # signature and end marker are there
    bad, _ = find_bad_images(images, "decode")
    assert [images.name(i) for i, _ in bad] == [str(tmp_path / "c" / "inside.jpg")]


def test_a_whole_bad_class_folder_is_survived_and_counted_once_per_file(bad_folder, tmp_path):
    root, folders = bad_folder
    cfg = cfg_for(root, tmp_path / "out", "DATA.CHECK", "off")
    pipeline = ViewPipeline(cfg, checked_images(cfg), "cpu")  # unchecked: the loader meets them
    assert len(pipeline.dataset) == 37
    counted = 0
    for epoch in range(2):  # the second epoch meets the same files again: counted once
        for start in range(0, 37, 8):
            batch, bad = collate_views(
                [pipeline.dataset[(epoch, i)] for i in range(start, min(37, start + 8))]
            )
            assert batch[0].shape[1:] == (3, 32, 32)
            counted += pipeline.record_bad(bad)
    assert counted == 17
    listed = (tmp_path / "out" / BAD_IMAGES_FILE).read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in listed) == sorted(map(str, folders["frog"]))


def test_a_bad_file_stops_the_run_naming_it_when_configured(bad_folder, tmp_path):
    root, folders = bad_folder
    cfg = cfg_for(root, tmp_path / "out", "DATA.ON_BAD_IMAGE", "error", "DATA.CHECK", "off")
    pipeline = ViewPipeline(cfg, checked_images(cfg), "cpu")
    index = sorted(map(str, folders["frog"] + folders["bird"])).index(str(folders["frog"][0]))
    _, bad = collate_views([pipeline.dataset[(0, index)]])
    with pytest.raises(BadImageError, match=f"{folders['frog'][0]}: .*truncated"):
        pipeline.record_bad(bad)
    # The check before training stops at the first bad file, all of them listed.
    cfg = cfg_for(root, tmp_path / "out2", "DATA.ON_BAD_IMAGE", "error", "DATA.CHECK", "decode")
    with pytest.raises(BadImageError, match=r"frog/\S+\.jpg: .*\(17 bad images, listed in"):
        checked_images(cfg)
    assert len((tmp_path / "out2" / BAD_IMAGES_FILE).read_text().splitlines()) == 17


def test_missing_listed_file_is_caught_before_training(bad_folder, tmp_path):
    root, folders = bad_folder
    listing = tmp_path / "list.txt"
    (root / "bird/page.jpg").write_text("<html>403 Forbidden</html>")  # a failed download
    listing.write_text(
        "images/bird/" + folders["bird"][0].name + "\nimages/bird/gone.jpg\nimages/bird/page.jpg\n"
    )
    cfg = cfg_for(listing, tmp_path / "out", "DATA.ON_BAD_IMAGE", "error")
    with pytest.raises(BadImageError, match=r"bird/gone\.jpg: no such file"):
        checked_images(cfg)
    cfg = cfg_for(listing, tmp_path / "out_skip")
    assert len(checked_images(cfg)) == 1
    listed = (tmp_path / "out_skip" / BAD_IMAGES_FILE).read_text()
    assert "gone.jpg\tno such file" in listed and "page.jpg\tnot an image file" in listed


def test_unreadable_draws_in_a_worker_end_in_one_line_naming_a_file(bad_folder, tmp_path):
    root, folders = bad_folder
    cfg = cfg_for(root / "frog", tmp_path / "out")  # nothing but truncated files
    dataset = ImageViews(FolderImages(str(root / "frog")), build_views(cfg))
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=1, sampler=[(0, 0)])
    with pytest.raises(BadImageError) as caught:
        next(iter(loader))
    message = str(caught.value)
    assert "\n" not in message and "16 images drawn in a row were unreadable" in message
    assert "frog/" in message


def test_a_deeper_earlier_check_is_reused_so_a_resume_samples_the_same_images(
    bad_folder, tmp_path, capsys
):
    root, folders = bad_folder
    first = checked_images(cfg_for(root, tmp_path / "out", "DATA.CHECK", "decode"))
    assert "checking 37 images" in capsys.readouterr().err
    again = checked_images(cfg_for(root, tmp_path / "out"))  # a resume: header check asked
    assert "checking" not in capsys.readouterr().err
    assert [again.name(i) for i in range(len(again))] == [first.name(i) for i in range(20)]
    assert len(first) == 20 and all("/bird/" in first.name(i) for i in range(20))


@pytest.mark.slow
def test_check_data_leaves_bad_files_out_and_a_resume_keeps_the_same_list(bad_folder, tmp_path):
    root, folders = bad_folder
    out = tmp_path / "out"
    common = ["tools/pretrain.py", *TINY, "DATA.ROOT", str(root), "OUTPUT_DIR", str(out)]
    first = run_tool(common[0], "--check-data", *common[1:], "SOLVER.MAX_ITER", "2")
    assert "17 of 37 images are unusable and left out" in first.stderr
    listed = (out / BAD_IMAGES_FILE).read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in listed) == sorted(map(str, folders["frog"]))
    assert json.loads((out / "data_check.json").read_text())["depth"] == "decode"
    # A resume asks only for the header check: the earlier, deeper one is reused, so the run
    # samples from the same 20 images and meets no bad file.
    resumed = run_tool(common[0], "--resume", *common[1:], "SOLVER.MAX_ITER", "3")
    assert "checking" not in resumed.stderr
    assert read_metrics(out)[-1]["skipped_images"] == 0


def test_readout_folders_leave_out_bad_files_and_name_undecodable_ones(bad_folder):
    from pretrain.evaluation.data import eval_transform, labelled_folder

    root, folders = bad_folder
    folders["bird"][0].write_bytes(b"")  # no header at all: left out up front
    inside = folders["bird"][1]  # damaged inside, its ends intact: only decoding finds it
    inside.write_bytes(b"\xff\xd8\xff" + b"\x13" * 300 + b"\xff\xd9")
    dataset = labelled_folder(str(root), eval_transform(32))
    # The empty file and the 17 truncated frogs (no end marker) are left out up front.
    assert len(dataset) == 19 and {label for _, label in dataset.samples} == {0}
    with pytest.raises(BadImageError, match=f"{folders['bird'][0]}: empty file"):
        labelled_folder(str(root), eval_transform(32), on_bad="error")
    index = [path for path, _ in dataset.samples].index(str(inside))
    with pytest.raises(BadImageError, match=f"{inside}: "):
        dataset[index]  # decoding fails, the error names the file


def _check_in_two_processes(root: str, out: str) -> None:
    from pretrain.common import distributed as du

    du.init_from_env("cpu")
    images = checked_images(
        cfg_for(root, out, "DATA.CHECK", "decode"), du.get_rank(), du.get_world_size()
    )
    with open(Path(out) / f"kept{du.get_rank()}.txt", "w") as f:
        f.write("\n".join(images.name(i) for i in range(len(images))))


@pytest.mark.slow  # two spawned processes: about a minute on 2 busy cores
def test_processes_share_the_check_and_keep_the_same_images(bad_folder, tmp_path):
    from pretrain.common.launch import launch

    root, folders = bad_folder
    launch(_check_in_two_processes, 2, (str(root), str(tmp_path)))
    kept = [(tmp_path / f"kept{rank}.txt").read_text().splitlines() for rank in (0, 1)]
    assert kept[0] == kept[1] == sorted(map(str, folders["bird"]))
    assert len((tmp_path / BAD_IMAGES_FILE).read_text().splitlines()) == 17
