import json

import pytest
import torch
import torch.nn.functional as F

from pretrain.evaluation.knn import knn_predict, knn_probe
from tests.conftest import run_tool


def test_knn_votes_are_similarity_weighted():
    train = F.normalize(
        torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.2, 0.8]]), dim=1
    )
    labels = torch.tensor([0, 0, 1, 1, 1])
    test = F.normalize(torch.tensor([[1.0, 0.05], [0.05, 1.0]]), dim=1)
    # k = 5: class 1 has three neighbours, but class 0's two are far more similar to test[0].
    assert knn_predict(train, labels, test, num_classes=2, k=5, temperature=0.07).tolist() == [0, 1]


def test_knn_probe_of_a_seeded_random_backbone_repeats_and_says_what_it_measured(cifar10):
    def probe():
        return knn_probe(
            "resnet18",
            str(cifar10 / "test"),
            str(cifar10 / "test"),
            crop_size=32,
            train_limit=64,
            test_limit=32,
            k=5,
            seed=1,
            num_workers=0,
        )

    result = probe()
    assert result == probe()  # the random initialisation is drawn from the seed
    assert result["test_images"] == 32 and result["stem"] == "imagenet"
    assert result["checkpoint"] == "" and result["k"] == 5
    correct = result["top1"] / 100 * 32  # a whole number of the 32 test images
    assert correct == pytest.approx(round(correct))


@pytest.mark.integration
def test_knn_tool_reads_a_pretraining_checkpoint(cifar10, tmp_path):
    run_tool(
        "tools/pretrain.py",
        "MODEL.ARCH",
        "resnet18",
        "MODEL.STEM",
        "tinyimagenet",
        "MODEL.QUEUE_SIZE",
        "32",
        "DATA.CROP_SIZE",
        "32",
        "DATA.NUM_WORKERS",
        "0",
        "SOLVER.BATCH_SIZE",
        "8",
        "SOLVER.MAX_ITER",
        "1",
        "DATA.ROOT",
        str(cifar10 / "test"),
        "OUTPUT_DIR",
        str(tmp_path),
    )
    # No --arch, --stem or --crop: the checkpoint's own.
    run_tool(
        "tools/knn.py",
        "--checkpoint",
        str(tmp_path / "model_final.pth"),
        "--train-root",
        str(cifar10 / "test"),
        "--test-root",
        str(cifar10 / "test"),
        "--train-limit",
        "200",
        "--test-limit",
        "100",
        "--workers",
        "0",
        "--json",
        str(tmp_path / "knn.json"),
    )
    result = json.loads((tmp_path / "knn.json").read_text())
    assert 0.0 <= result["top1"] <= 100.0 and result["test_images"] == 100
    assert result["checkpoint"] == str(tmp_path / "model_final.pth")
    assert (result["arch"], result["stem"], result["crop"]) == ("resnet18", "tinyimagenet", 32)


def test_a_small_image_is_shown_whole_and_a_large_one_resized_then_centre_cropped():
    from PIL import Image

    from pretrain.evaluation.data import eval_transform

    small = Image.effect_noise((32, 32), 60).convert("RGB")
    whole = eval_transform(32, crop_fraction=1.0)(small)
    assert torch.equal(eval_transform(32)(small), whole)  # not resized to 37 and cropped back
    large = Image.effect_noise((64, 64), 60).convert("RGB")
    expected = eval_transform(32, 1.0)(large.resize((37, 37), Image.BILINEAR).crop((2, 2, 34, 34)))
    assert torch.allclose(eval_transform(32)(large), expected, atol=0.05)


@pytest.mark.integration
def test_linear_readout_trains_logs_and_resumes(cifar10, tmp_path):
    common = [
        "tools/lincls.py",
        "MODEL.ARCH",
        "resnet18",
        "DATA.ROOT",
        str(cifar10 / "test"),
        "DATA.VAL_ROOT",
        str(cifar10 / "test"),
        "DATA.LIMIT",
        "256",
        "DATA.VAL_LIMIT",
        "128",
        "DATA.CROP_SIZE",
        "32",
        "SOLVER.BATCH_SIZE",
        "64",
        "DATA.NUM_WORKERS",
        "0",
        "SOLVER.MILESTONES",
        "(1,)",
        "OUTPUT_DIR",
        str(tmp_path),
    ]
    run_tool(*common, "SOLVER.EPOCHS", "1")
    run_tool(common[0], "--resume", *common[1:], "SOLVER.EPOCHS", "2")
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]  # the second run continued, not restarted
    assert all(0.0 <= r["val_top1"] <= 100.0 and r["loss"] > 0 for r in records)
    state = torch.load(tmp_path / "checkpoint_00000008.pth", weights_only=False)  # 4 per epoch
    assert state["scheduler"]["last_epoch"] == 2 and state["epoch"] == 2
    assert state["optimizer"]["param_groups"][0]["lr"] == 30.0 * 64 / 256 * 0.2  # x0.2 at epoch 1
