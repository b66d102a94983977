import subprocess
import sys

import pytest

import detection  # noqa: F401
from detection import compat
from tests.conftest import REPO


@pytest.mark.integration
def test_reports_the_build_in_use():
    out = subprocess.run(
        [sys.executable, "-m", "detection"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("detectron2 0.6: ")
    assert ("Python-only" in out) == (compat.enable() == "python-only")


@pytest.mark.integration
def test_detectron2_imports_whatever_is_imported_first():
    # A fresh interpreter that imports Detectron2 modules before anything of ours.
    code = (
        "from detectron2.data import transforms; from detectron2.layers import DeformConv; "
        "from detectron2.evaluation import fast_eval_api; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def needs_python_only_build():
    if compat.enable() != "python-only":
        pytest.skip("this Detectron2 has its compiled ops")


def test_missing_compiled_op_raises_an_error_naming_it():
    needs_python_only_build()
    import torch
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    boxes = torch.tensor([[10.0, 10.0, 4.0, 6.0, 30.0]])
    with pytest.raises(compat.CompiledOpMissing, match="rotated-box IoU.*Python-only"):
        pairwise_iou_rotated(boxes, boxes)


@pytest.mark.parametrize(
    "key, value, op",
    [
        ("MODEL.RESNETS.DEFORM_ON_PER_STAGE", [False, True, True, True], "deformable convolution"),
        ("MODEL.PROPOSAL_GENERATOR.NAME", "RRPN", "rotated"),
        ("MODEL.ROI_HEADS.NAME", "RROIHeads", "rotated"),
    ],
)
def test_config_needing_a_compiled_op_is_refused_up_front(key, value, op):
    needs_python_only_build()
    from detectron2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_list([key, value])
    with pytest.raises(compat.CompiledOpMissing, match=op):
        compat.check_config_ops(cfg)


def test_standard_config_passes_the_check():
    from detectron2.config import get_cfg

    compat.check_config_ops(get_cfg())
