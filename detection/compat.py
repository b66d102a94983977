"""Which Detectron2 this process uses, and what it takes to make the Python-only build work.

Two builds are supported:
  * "compiled": the official detectron2 built from source, with `detectron2._C` (CUDA/C++ ops);
  * "python-only": the official v0.6 Python sources from the registry (tools/install_detectron2.py),
    which lack `_C`. We register a placeholder `_C` whose every attribute raises an error naming the
    op, so the standard models (Faster/Mask/Cascade R-CNN, RetinaNet) run and anything that needs a
    compiled op fails loudly instead of silently.

`enable()` runs just before Detectron2 is first imported (an import hook set by `import detection`
and, in the project's .venv, by a .pth file at start-up, so import order never matters); it also
restores the few names that Detectron2 v0.6 takes from old numpy / Pillow releases.

    python -m detection            # prints the build in use
"""

from __future__ import annotations

import glob
import importlib.abc
import importlib.machinery
import os
import sys
import types

_OP_NAMES = {
    "deform_conv": "deformable convolution (MODEL.RESNETS.DEFORM_ON_PER_STAGE)",
    "modulated_deform_conv": "modulated deformable convolution (MODEL.RESNETS.DEFORM_MODULATED)",
    "nms_rotated": "rotated-box NMS",
    "box_iou_rotated": "rotated-box IoU",
    "roi_align_rotated": "ROIAlignRotated",
    "COCOevalMaxDets": "the compiled COCO evaluation (use_fast_impl)",
    "InstanceAnnotation": "the compiled COCO evaluation (use_fast_impl)",
}

BUILD = "missing"  # "compiled" | "python-only" | "missing"; set by enable()


class CompiledOpMissing(RuntimeError):
    """A Detectron2 feature needs `detectron2._C`, which this build does not have."""


def _missing_op_error(name: str) -> CompiledOpMissing:
    what = next((desc for prefix, desc in _OP_NAMES.items() if name.startswith(prefix)), name)
    return CompiledOpMissing(
        f"{what} needs Detectron2's compiled ops (detectron2._C.{name}), and this Detectron2 "
        "is the Python-only build. Build the official detectron2 from source to use it."
    )


class _PlaceholderOps(types.ModuleType):
    """Stands in for `detectron2._C`: importable, but every op raises CompiledOpMissing."""

    # Build-information queries (detectron2.utils.collect_env) answer instead of raising.
    @staticmethod
    def get_compiler_version() -> str:
        return "none (Python-only detectron2, no detectron2._C)"

    @staticmethod
    def get_cuda_version() -> str:
        return "none (Python-only detectron2, no detectron2._C)"

    @staticmethod
    def has_cuda() -> bool:
        return False

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise _missing_op_error(name)


def _restore_removed_aliases() -> None:
    import numpy as np
    from PIL import Image

    # Detectron2 v0.6 still spells numpy's scalar aliases removed in numpy 1.24 and Pillow's
    # resampling names removed in Pillow 10.
    for alias, target in {
        "str": str,
        "bool": bool,
        "int": int,
        "float": float,
        "object": object,
        "complex": complex,
    }.items():
        if alias not in np.__dict__:
            setattr(np, alias, target)
    if not hasattr(Image, "LINEAR"):
        Image.LINEAR = Image.BILINEAR
    for name in ("NEAREST", "BILINEAR", "BICUBIC", "LANCZOS", "BOX", "HAMMING"):
        if not hasattr(Image, name):
            setattr(Image, name, getattr(Image.Resampling, name))


def _compiled_ops_present() -> bool | None:
    """True / False whether detectron2 ships `_C`; None if detectron2 is absent. Looks at the files,
    without importing detectron2."""
    spec = importlib.machinery.PathFinder.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return any(
        glob.glob(os.path.join(folder, "_C*" + suffix))
        for folder in spec.submodule_search_locations
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
    )


def enable() -> str:
    """Make Detectron2 importable in this process; returns the build found."""
    global BUILD
    if BUILD != "missing":
        return BUILD
    present = _compiled_ops_present()
    if present is None:
        return BUILD
    _restore_removed_aliases()
    if present:
        BUILD = "compiled"
    else:
        sys.modules.setdefault("detectron2._C", _PlaceholderOps("detectron2._C"))
        BUILD = "python-only"
    return BUILD


class _EnableBeforeDetectron2(importlib.abc.MetaPathFinder):
    """Runs `enable()` just before the first `import detectron2`, whatever imports it first."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "detectron2":
            sys.meta_path.remove(self)
            enable()
        return None  # the regular finders import it


def install_import_hook() -> None:
    """Called on `import detection` and, through a .pth file the installer writes, at interpreter
    start-up in the project's environment. Cheap: stdlib only until detectron2 is imported."""
    if "detectron2" in sys.modules:
        enable()
    elif not any(isinstance(f, _EnableBeforeDetectron2) for f in sys.meta_path):
        sys.meta_path.insert(0, _EnableBeforeDetectron2())


def has_compiled_ops() -> bool:
    return enable() == "compiled"


def check_config_ops(cfg) -> None:
    """Raise CompiledOpMissing, naming the op, if `cfg` needs one this build lacks."""
    if has_compiled_ops():
        return
    model = cfg.MODEL
    needs = []
    if any(model.RESNETS.DEFORM_ON_PER_STAGE):
        needs.append("deform_conv")
    rotated = {
        "MODEL.PROPOSAL_GENERATOR.NAME": (model.PROPOSAL_GENERATOR.NAME, "RRPN"),
        "MODEL.ROI_HEADS.NAME": (model.ROI_HEADS.NAME, "RROIHeads"),
        "MODEL.ANCHOR_GENERATOR.NAME": (model.ANCHOR_GENERATOR.NAME, "RotatedAnchorGenerator"),
        "MODEL.ROI_BOX_HEAD.POOLER_TYPE": (model.ROI_BOX_HEAD.POOLER_TYPE, "ROIAlignRotated"),
    }
    for key, (value, rotated_value) in rotated.items():
        if value == rotated_value:
            needs.append(f"box_iou_rotated (from {key} {value})")
    if needs:
        raise _missing_op_error(needs[0])


def describe() -> str:
    build = enable()
    if build == "missing":
        return "detectron2: not installed (run `make install`)"
    import detectron2

    where = detectron2.__file__.rsplit("/", 2)[0]
    if build == "compiled":
        return f"detectron2 {detectron2.__version__}: compiled build with detectron2._C, at {where}"
    return (
        f"detectron2 {detectron2.__version__}: Python-only build (no detectron2._C) "
        f"at {where}; deformable conv and rotated-box ops raise a clear error, COCO evaluation "
        "uses pycocotools"
    )
