import json

import torch
import torch.nn.functional as F

from pretrain.evaluation.knn import knn_predict
from tests.conftest import run_tool


def test_knn_votes_are_similarity_weighted():
    train = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.2, 0.8]]),
                        dim=1)
    labels = torch.tensor([0, 0, 1, 1, 1])
    test = F.normalize(torch.tensor([[1.0, 0.05], [0.05, 1.0]]), dim=1)
    # k = 5: class 1 has three neighbours, but class 0's two are far more similar to test[0].
    assert knn_predict(train, labels, test, num_classes=2, k=5, temperature=0.07).tolist() == [0, 1]


def test_knn_tool_reads_a_pretraining_checkpoint(cifar10, tmp_path):
    run_tool("tools/pretrain.py", "MODEL.ARCH", "resnet18", "MODEL.QUEUE_SIZE", "32",
             "DATA.CROP_SIZE", "32", "DATA.NUM_WORKERS", "0", "SOLVER.BATCH_SIZE", "8",
             "SOLVER.MAX_ITER", "1", "DATA.ROOT", str(cifar10 / "test"), "OUTPUT_DIR", str(tmp_path))
    out = run_tool("tools/knn.py", "--arch", "resnet18", "--checkpoint",
                   str(tmp_path / "model_final.pth"), "--train-root", str(cifar10 / "test"),
                   "--test-root", str(cifar10 / "test"), "--crop", "32", "--train-limit", "200",
                   "--test-limit", "100", "--workers", "0").stdout
    acc = float(out.split("top-1: ")[1].split("%")[0])
    assert 0.0 <= acc <= 100.0


def test_linear_readout_trains_logs_and_resumes(cifar10, tmp_path):
    common = ["tools/lincls.py", "MODEL.ARCH", "resnet18", "DATA.ROOT", str(cifar10 / "test"),
              "DATA.VAL_ROOT", str(cifar10 / "test"), "DATA.LIMIT", "256", "DATA.VAL_LIMIT", "128",
              "DATA.CROP_SIZE", "32", "SOLVER.BATCH_SIZE", "64", "DATA.NUM_WORKERS", "0",
              "SOLVER.MILESTONES", "(1,)", "OUTPUT_DIR", str(tmp_path)]
    run_tool(*common, "SOLVER.EPOCHS", "1")
    run_tool(common[0], "--resume", *common[1:], "SOLVER.EPOCHS", "2")
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]  # the second run continued, not restarted
    assert all(0.0 <= r["val_top1"] <= 100.0 and r["loss"] > 0 for r in records)
    state = torch.load(tmp_path / "checkpoint_00000002.pth", weights_only=False)
    assert state["scheduler"]["last_epoch"] == 2
    assert state["optimizer"]["param_groups"][0]["lr"] == 30.0 * 64 / 256 * 0.2  # x0.2 at epoch 1
