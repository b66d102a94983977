"""A small-image backbone end to end: pretrain with the cifar stem on 32 px CIFAR-10 JPEGs ->
readouts rebuild that stem -> convert with --verify against the cifar-stem Detectron2 config ->
the Detectron2 model loads every tensor and takes a training step on fruits_nuts."""

import json
import pickle

import pytest
import torch

from pretrain.common.errors import ConfigError
from tests.conftest import REPO, run_tool
from tests.helpers import expected_detectron2_name

CIFAR_FPN = "configs/detection/small/fruits_nuts_R_18_FPN_cifar_stem.yaml"
TINY_FPN = "configs/detection/small/synthetic_R_18_FPN_tinyimagenet_stem.yaml"
STOCK_FPN = "configs/detection/small/fruits_nuts_R_18_FPN.yaml"

pytestmark = pytest.mark.integration  # every test starts from a pretraining by tools/pretrain.py


@pytest.fixture(scope="module")
def cifar_stem_run(cifar10, tmp_path_factory):
    """(checkpoint, converted .pkl, convert's output) of two pretraining steps with the cifar
    stem."""
    out = tmp_path_factory.mktemp("cifar_stem")
    run_tool(
        "tools/pretrain.py",
        "MODEL.ARCH",
        "resnet18",
        "MODEL.STEM",
        "cifar",
        "MODEL.QUEUE_SIZE",
        "32",
        "DATA.CROP_SIZE",
        "32",
        "DATA.NUM_WORKERS",
        "0",
        "SOLVER.BATCH_SIZE",
        "8",
        "SOLVER.MAX_ITER",
        "2",
        "DATA.ROOT",
        str(cifar10 / "test"),
        "OUTPUT_DIR",
        str(out),
    )
    checkpoint, converted = out / "model_final.pth", out / "backbone_d2.pkl"
    log = run_tool(
        "tools/convert.py", str(checkpoint), str(converted), "--verify", CIFAR_FPN
    ).stdout
    return checkpoint, converted, log


def test_checkpoint_records_the_stem_and_converts_verified(cifar_stem_run):
    checkpoint, converted, log = cifar_stem_run
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert "STEM: cifar" in state["cfg"]
    assert state["model"]["query_encoder.backbone.conv1.weight"].shape == (64, 3, 3, 3)
    assert "stem: cifar" in log and f"verified: {CIFAR_FPN} loads all 100 backbone tensors" in log
    assert pickle.load(open(converted, "rb"))["stem"] == "cifar"


def test_knn_and_fresh_key_readouts_rebuild_the_cifar_stem(cifar_stem_run, cifar10, tmp_path):
    checkpoint, _, _ = cifar_stem_run
    run_tool(
        "tools/knn.py",
        "--arch",
        "resnet18",
        "--checkpoint",
        str(checkpoint),
        "--train-root",
        str(cifar10 / "test"),
        "--test-root",
        str(cifar10 / "test"),
        "--crop",
        "32",
        "--train-limit",
        "200",
        "--test-limit",
        "100",
        "--workers",
        "0",
        "--json",
        str(tmp_path / "knn.json"),
    )
    knn = json.loads((tmp_path / "knn.json").read_text())
    assert knn["stem"] == "cifar" and 0.0 <= knn["top1"] <= 100.0 and knn["test_images"] == 100
    # fresh_keys rebuilds the whole MoCo model from the stored config; a wrong stem fails to load.
    run_tool(
        "tools/fresh_keys.py",
        str(checkpoint),
        "--images",
        str(cifar10 / "test"),
        "--n",
        "8",
        "--json",
        str(tmp_path / "probe.json"),
    )
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert probe["probe_images"] == 8 and probe["rows"][0]["checkpoint"] == str(checkpoint)


def test_detectron2_model_loads_every_tensor_and_takes_a_training_step(cifar_stem_run, shared_data):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.data import build_detection_train_loader
    from detectron2.engine import default_argument_parser
    from detectron2.modeling import build_model
    from detectron2.solver import build_optimizer
    from detectron2.utils.events import EventStorage

    from detection import train_net

    checkpoint, converted, _ = cifar_stem_run
    args = default_argument_parser().parse_args(
        [
            "--config-file",
            str(REPO / CIFAR_FPN),
            "MODEL.WEIGHTS",
            str(converted),
            "DATALOADER.NUM_WORKERS",
            "0",
            "OUTPUT_DIR",
            str(converted.parent / "finetune"),
        ]
    )
    cfg = train_net.setup(args)
    model = build_model(cfg)
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    loaded = model.state_dict()
    source = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    prefix = "query_encoder.backbone."
    backbone = {
        k[len(prefix) :]: v
        for k, v in source.items()
        if k.startswith(prefix) and not k.endswith("num_batches_tracked")
    }
    assert len(backbone) == 100
    for key, tensor in backbone.items():
        model_key = f"backbone.bottom_up.{expected_detectron2_name(key)}"
        assert torch.equal(loaded[model_key], tensor), f"{model_key} differs from {key}"

    model.train()
    batch = next(iter(build_detection_train_loader(cfg)))
    assert max(max(x["image"].shape[-2:]) for x in batch) <= 171  # the config's CIFAR scale
    with EventStorage(0):  # where the trainer keeps the heads' statistics
        losses = model(batch)
    total = sum(losses.values())
    assert torch.isfinite(total) and {"loss_rpn_cls", "loss_mask"} <= set(losses)
    optimizer = build_optimizer(cfg, model)
    optimizer.zero_grad()
    total.backward()
    stem = model.backbone.bottom_up.stem.conv1.weight
    assert stem.grad is not None and stem.grad.abs().sum() > 0
    optimizer.step()
    assert not torch.equal(stem.detach(), backbone["conv1.weight"])


def test_configs_of_another_stem_refuse_the_weights(cifar_stem_run, tmp_path):
    from detection.config import load_detection_cfg

    checkpoint, converted, _ = cifar_stem_run
    # Detectron2 itself would skip the 3x3 conv1 against a 7x7 one with only a warning.
    with pytest.raises(
        ConfigError,
        match="pretrained with stem 'cifar', the model builds MODEL.RESNETS.STEM_TYPE 'imagenet'",
    ):
        load_detection_cfg(STOCK_FPN, ["MODEL.WEIGHTS", str(converted)])
    # Same shapes as cifar's: only the recorded stem tells them apart.
    with pytest.raises(
        AssertionError, match="trained with stem 'cifar', the model of .* builds 'tinyimagenet'"
    ):
        run_tool(
            "tools/convert.py", str(checkpoint), str(tmp_path / "out.pkl"), "--verify", TINY_FPN
        )
    assert not list(tmp_path.iterdir())
