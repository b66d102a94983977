"""The whole path on real images: pretrain on CIFAR-10 JPEGs -> convert -> load into Detectron2 ->
fine-tune and evaluate on BCCD (VOC layout) and fruits_nuts (COCO json with masks)."""

import json
import math
import re
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO, run_tool
from tests.helpers import expected_detectron2_name

pytestmark = pytest.mark.integration  # every test starts from a pretraining by tools/pretrain.py

PRETRAIN_ARGS = [
    "MODEL.ARCH",
    "resnet18",
    "MODEL.QUEUE_SIZE",
    "64",
    "DATA.CROP_SIZE",
    "64",
    "DATA.NUM_WORKERS",
    "2",
    "SOLVER.BATCH_SIZE",
    "16",
    "SOLVER.MAX_ITER",
    "4",
    "LOG_PERIOD",
    "2",
]
# Few iterations and a zero score threshold, so the evaluators score real (if small) predictions.
# Small images and 10 proposals keep evaluation quick: the C4 head runs res5 once per proposal,
# and at 320 px with 30 proposals BCCD's 72 test images took 44 s per evaluation (15 s now).
FINETUNE_ARGS = [
    "SOLVER.MAX_ITER",
    "3",
    "SOLVER.WARMUP_ITERS",
    "1",
    "TEST.PRECISE_BN.NUM_ITER",
    "1",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "0.0",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "10",
    "INPUT.MIN_SIZE_TRAIN",
    "(192,)",
    "INPUT.MAX_SIZE_TRAIN",
    "256",
    "INPUT.MIN_SIZE_TEST",
    "192",
    "INPUT.MAX_SIZE_TEST",
    "256",
    "DATALOADER.NUM_WORKERS",
    "1",
]
SMALL_CONFIGS = {
    "voc": "configs/detection/small/bccd_R_18_C4.yaml",
    "coco": "configs/detection/small/fruits_nuts_R_18_FPN.yaml",
}


@pytest.fixture(scope="module")
def pretrained(cifar10, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    log = run_tool(
        "tools/pretrain.py",
        *PRETRAIN_ARGS,
        "DATA.ROOT",
        str(cifar10 / "train"),
        "OUTPUT_DIR",
        str(out),
    ).stdout
    (out.parent / f"{out.name}_stdout.txt").write_text(log)
    checkpoint = out / "model_final.pth"
    converted = out / "backbone_d2.pkl"
    log = run_tool("tools/convert.py", str(checkpoint), str(converted)).stdout
    assert "read" in log and "as pretrain" in log
    return checkpoint, converted


def test_pretraining_logged_progress_and_checkpoint(pretrained):
    checkpoint, _ = pretrained
    lines = [
        json.loads(line) for line in (checkpoint.parent / "metrics.jsonl").read_text().splitlines()
    ]
    assert [row["iteration"] for row in lines] == [2, 4]
    assert all(row["loss"] > 0 and "I_NCE" in row and row["img_per_s"] > 0 for row in lines)
    # The progress line's I_NCE is explained once, before the first line that shows it.
    stdout = (checkpoint.parent.parent / f"{checkpoint.parent.name}_stdout.txt").read_text()
    assert stdout.count("I_NCE = log(K + 1) - the InfoNCE loss") == 1
    assert stdout.index("I_NCE = log(K + 1)") < stdout.index(" I_NCE ")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert state["iteration"] == 4 and state["arch"] == "resnet18"


def test_fresh_key_probe_scores_the_checkpoint_and_its_initialisation(
    pretrained, cifar10, tmp_path
):
    checkpoint, _ = pretrained
    scores = tmp_path / "scores.json"
    run_tool(
        "tools/fresh_keys.py",
        str(checkpoint),
        "--images",
        str(cifar10 / "test"),
        "--n",
        "40",
        "--with-init",
        "--json",
        str(scores),
    )  # 40 -> 32: two batches of 16
    probe = json.loads(scores.read_text())
    assert [row["checkpoint"] for row in probe["rows"]] == ["init", str(checkpoint)]
    for row in probe["rows"]:
        assert 0 <= row["queue_acc"] <= 1 and 0 <= row["fresh_acc"] <= 1
        assert -1 <= row["query_cosine"] <= 1
        assert row["chance_loss"] == pytest.approx(math.log(32))
    assert probe["probe_images"] == 32 and probe["chance_fresh_acc"] == pytest.approx(1 / 32)

    not_ours = tmp_path / "weights.pth"
    torch.save({"state_dict": {}}, not_ours)
    proc = subprocess.run(
        [sys.executable, "tools/fresh_keys.py", str(not_ours), "--images", str(cifar10 / "test")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert f"{not_ours}: not a checkpoint of tools/pretrain.py" in proc.stderr


@pytest.mark.parametrize("kind", ["voc", "coco"])
def test_detectron2_loads_every_pretrained_backbone_tensor(pretrained, kind):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.engine import default_argument_parser
    from detectron2.modeling import build_model

    from detection import train_net

    checkpoint, converted = pretrained
    args = default_argument_parser().parse_args(
        [
            "--config-file",
            str(REPO / SMALL_CONFIGS[kind]),
            "MODEL.WEIGHTS",
            str(converted),
            "OUTPUT_DIR",
            str(converted.parent / f"load_{kind}"),
        ]
    )
    model = build_model(train_net.setup(args))
    DetectionCheckpointer(model).load(str(converted))
    loaded = model.state_dict()

    source = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    prefix = "query_encoder.backbone."
    backbone = {
        k[len(prefix) :]: v
        for k, v in source.items()
        if k.startswith(prefix) and not k.endswith("num_batches_tracked")
    }
    assert len(backbone) == 100  # ResNet-18: 20 convs with their BN (4 tensors) + 3 shortcuts
    for key, tensor in backbone.items():
        d2_name = expected_detectron2_name(key)
        if kind == "coco":
            model_key = f"backbone.bottom_up.{d2_name}"
        else:  # C4: res5 lives in the ROI head
            model_key = (
                f"roi_heads.{d2_name}" if d2_name.startswith("res5") else f"backbone.{d2_name}"
            )
        assert model_key in loaded, f"{model_key} missing from the Detectron2 model"
        assert torch.equal(loaded[model_key].cpu(), tensor), f"{model_key} differs from {key}"


@pytest.mark.parametrize("kind", [pytest.param("voc", marks=pytest.mark.slow), "coco"])
def test_finetune_and_evaluate(pretrained, kind, tmp_path):  # VOC's (68 s) in the slow tier
    _, converted = pretrained
    run_tool(
        "detection/train_net.py",
        "--config-file",
        SMALL_CONFIGS[kind],
        "MODEL.WEIGHTS",
        str(converted),
        "OUTPUT_DIR",
        str(tmp_path),
        *FINETUNE_ARGS,
    )
    results = json.loads((tmp_path / "metrics_eval.json").read_text())
    dataset = {"voc": "bccd_test", "coco": "fruits_nuts_test"}[kind]
    tasks = results[dataset]
    expected_tasks = {"voc": {"bbox"}, "coco": {"bbox", "segm"}}[kind]
    assert set(tasks) == expected_tasks
    for metrics in tasks.values():
        for name in ("AP", "AP50", "AP75"):
            assert isinstance(metrics[name], float) and 0.0 <= metrics[name] <= 100.0, (
                name,
                metrics,
            )
    log = (tmp_path / "log.txt").read_text()
    assert re.search(r"Starting training from iteration 0", log)

    # --eval-only on the fine-tuned model reproduces the numbers.
    again = tmp_path / "eval_only"
    run_tool(
        "detection/train_net.py",
        "--config-file",
        SMALL_CONFIGS[kind],
        "--eval-only",
        "MODEL.WEIGHTS",
        str(tmp_path / "model_final.pth"),
        "OUTPUT_DIR",
        str(again),
        *FINETUNE_ARGS,
    )
    assert json.loads((again / "metrics_eval.json").read_text()) == results


def test_two_gloo_processes_fine_tune_with_synchronised_bn(pretrained, tmp_path):
    _, converted = pretrained
    out = run_tool(
        "detection/train_net.py",
        "--config-file",
        SMALL_CONFIGS["coco"],
        "--num-gpus",
        "2",
        "MODEL.WEIGHTS",
        str(converted),
        "OUTPUT_DIR",
        str(tmp_path),
        *FINETUNE_ARGS,
        "SOLVER.MAX_ITER",
        "2",
    )
    log = (tmp_path / "log.txt").read_text()
    assert "World size: 2" in out.stdout + out.stderr + log
    assert "NaiveSyncBatchNorm" in log  # the model printout: all-reduce BN across the processes
    assert "fruits_nuts_test" in json.loads((tmp_path / "metrics_eval.json").read_text())
