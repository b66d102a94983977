"""Image bytes from a folder or from a pack: one memory-mapped file of the encoded images, built
once by tools/pack_images.py, so that a data loader reads each image with one slice of a mapped
file instead of one open() per image on a shared filesystem.

A pack is a folder holding
  pack.json    {"format": PACK_FORMAT, "count": N, "bytes": total, "skipped": files left out}
  skipped.txt  (if any) the files that are not images, with the reason
  images.bin   the N encoded files back to back, unchanged
  index.npy    N + 1 int64 offsets into images.bin
  names.txt    the N source paths, relative to the packed root (for messages)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

import numpy as np

from ..common.errors import DatasetError
from .bad_data import read_tail
from .images import list_images

PACK_FORMAT = "infomin-det/pack/v1"
MANIFEST = "pack.json"
SKIPPED_FILE = "skipped.txt"  # files left out for not being images, with the reason


class FolderImages:
    """The images under a folder or in a .txt list (see images.list_images)."""

    def __init__(self, root: str):
        self.paths = list_images(root)

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, index: int) -> str:
        return self.paths[index]

    def read(self, index: int) -> bytes:
        with open(self.paths[index], "rb") as f:
            return f.read()

    def head(self, index: int, size: int) -> bytes:
        """The first `size` bytes (enough for an image header)."""
        with open(self.paths[index], "rb") as f:
            return f.read(size)

    def tail(self, index: int, size: int) -> bytes:
        """The last `size` bytes (where a format's end marker sits)."""
        with open(self.paths[index], "rb") as f:
            return read_tail(f, size)

    def stamp(self, index: int) -> str | None:
        """What identifies this version of the file (size and modification time), None when it
        cannot be read: a check's verdict on it holds while the stamp is the same."""
        try:
            stat = os.stat(self.paths[index])
        except OSError:
            return None
        return f"{stat.st_size}:{stat.st_mtime_ns}"

    def key(self, index: int) -> str:
        """The image's name in the check's verdict cache (check_cache.py)."""
        return os.path.abspath(self.paths[index])


class PackedImages:
    """A pack built by build_pack; the data file is mapped lazily, once per process, so the object
    pickles cheaply into DataLoader workers."""

    def __init__(self, root: str):
        self.root = root
        manifest_path = os.path.join(root, MANIFEST)
        try:
            with open(manifest_path) as f:
                manifest = json.load(f)
            self.offsets = np.load(os.path.join(root, "index.npy"))
            with open(os.path.join(root, "names.txt")) as f:
                self.names = f.read().splitlines()
        except (OSError, ValueError) as err:
            raise DatasetError(
                f"pack {root}: unreadable ({err}); rebuild it with tools/pack_images.py"
            ) from None
        if manifest.get("format") != PACK_FORMAT:
            raise DatasetError(
                f"{manifest_path}: format {manifest.get('format')!r}, expected {PACK_FORMAT!r}"
            )
        data_size = os.path.getsize(os.path.join(root, "images.bin"))
        if (
            len(self.offsets) != manifest["count"] + 1
            or len(self.names) != manifest["count"]
            or int(self.offsets[-1]) != data_size
        ):
            raise DatasetError(
                f"pack {root}: index, names and images.bin disagree "
                f"(truncated copy?); rebuild it with tools/pack_images.py"
            )
        self._data = None
        self._stamp = None

    def __len__(self) -> int:
        return len(self.names)

    def __getstate__(self):
        return {**self.__dict__, "_data": None}

    def name(self, index: int) -> str:
        return f"{self.root}:{self.names[index]}"

    def read(self, index: int) -> bytes:
        if self._data is None:
            self._data = np.memmap(os.path.join(self.root, "images.bin"), dtype=np.uint8, mode="r")
        return self._data[int(self.offsets[index]) : int(self.offsets[index + 1])].tobytes()

    def head(self, index: int, size: int) -> bytes:
        """The first `size` bytes of the image (only those pages of the pack are read)."""
        if self._data is None:
            self._data = np.memmap(os.path.join(self.root, "images.bin"), dtype=np.uint8, mode="r")
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        return self._data[start : min(end, start + size)].tobytes()

    def tail(self, index: int, size: int) -> bytes:
        if self._data is None:
            self._data = np.memmap(os.path.join(self.root, "images.bin"), dtype=np.uint8, mode="r")
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        return self._data[max(start, end - size) : end].tobytes()

    def stamp(self, index: int) -> str | None:
        """A pack is written once; its data file's size and time stand for every image in it."""
        if self._stamp is None:
            stat = os.stat(os.path.join(self.root, "images.bin"))
            self._stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
        return f"{self._stamp}:{int(self.offsets[index])}"

    def key(self, index: int) -> str:
        return f"{os.path.abspath(self.root)}:{self.names[index]}"


class ImageSubset:
    """Some images of a FolderImages / PackedImages, by index (the ones the check before training
    kept); same interface."""

    def __init__(self, images, keep):
        self.images = images
        self.keep = np.asarray(keep, dtype=np.int64)  # pickles compactly into DataLoader workers

    def __len__(self) -> int:
        return len(self.keep)

    def name(self, index: int) -> str:
        return self.images.name(int(self.keep[index]))

    def read(self, index: int) -> bytes:
        return self.images.read(int(self.keep[index]))

    def head(self, index: int, size: int) -> bytes:
        return self.images.head(int(self.keep[index]), size)

    def tail(self, index: int, size: int) -> bytes:
        return self.images.tail(int(self.keep[index]), size)

    def stamp(self, index: int) -> str | None:
        return self.images.stamp(int(self.keep[index]))

    def key(self, index: int) -> str:
        return self.images.key(int(self.keep[index]))


def is_pack(root: str) -> bool:
    return os.path.isfile(os.path.join(root, MANIFEST))


def open_images(root: str):
    """FolderImages or PackedImages for DATA.ROOT."""
    if root and is_pack(root):
        return PackedImages(root)
    return FolderImages(root)


def build_pack(root: str, output: str, log_every: int = 10_000) -> int:
    """Packs every image under `root` into the folder `output`, written beside it under a temporary
    name and renamed when complete, so an interrupted build never leaves a pack that looks whole.
    Returns the number of images. Files whose header is not an image's are left out and named
    (OUTPUT/skipped.txt); a root without one image is a DatasetError."""
    from .bad_data import file_problem, problems_of

    paths = list_images(root)
    skipped = problems_of(paths, lambda path: file_problem(path, decode=False))
    if skipped:
        bad = {path for path, _ in skipped}
        paths = [path for path in paths if path not in bad]
        if not paths:
            raise DatasetError(
                f"{root}: none of its {len(bad)} files is an image "
                f"(first: {skipped[0][0]}: {skipped[0][1]})"
            )
    base = os.path.abspath(root) if os.path.isdir(root) else os.path.dirname(os.path.abspath(root))
    parent = os.path.dirname(os.path.abspath(output)) or "."
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".pack-", dir=parent)
    try:
        offsets = [0]
        with open(os.path.join(staging, "images.bin"), "wb") as data:
            for count, path in enumerate(paths, 1):
                with open(path, "rb") as f:
                    offsets.append(offsets[-1] + data.write(f.read()))
                if count % log_every == 0:
                    print(f"packed {count}/{len(paths)} images", flush=True)
        np.save(os.path.join(staging, "index.npy"), np.asarray(offsets, dtype=np.int64))
        with open(os.path.join(staging, "names.txt"), "w") as f:
            f.writelines(os.path.relpath(p, base) + "\n" for p in paths)
        with open(os.path.join(staging, MANIFEST), "w") as f:
            json.dump(
                {
                    "format": PACK_FORMAT,
                    "count": len(paths),
                    "bytes": offsets[-1],
                    "source": os.path.abspath(root),
                    "skipped": len(skipped),
                },
                f,
            )
        if skipped:
            with open(os.path.join(staging, SKIPPED_FILE), "w") as f:
                f.writelines(f"{path}\t{reason}\n" for path, reason in skipped)
        if os.path.exists(output):
            shutil.rmtree(output)
        os.replace(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"packed {len(paths)} images ({offsets[-1] / 1e6:.1f} MB) into {output}", file=sys.stderr)
    if skipped:
        print(
            f"warning: left out {len(skipped)} files that are not images (first: "
            f"{skipped[0][0]}: {skipped[0][1]}; all in {os.path.join(output, SKIPPED_FILE)})",
            file=sys.stderr,
        )
    return len(paths)
