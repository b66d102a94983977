"""Multi-process behaviour on CPU (gloo), through the same launcher and CLI users run."""

import json
import os

import pytest
import torch

from pretrain.common.launch import launch
from tests.conftest import run_tool, run_tool_until_killed

TINY = [
    "MODEL.ARCH",
    "resnet18",
    "MODEL.HEAD_HIDDEN_DIM",
    "64",
    "MODEL.QUEUE_SIZE",
    "32",
    "DATA.CROP_SIZE",
    "32",
    "DATA.NUM_WORKERS",
    "0",
    "SOLVER.BATCH_SIZE",
    "8",
    "LOG_PERIOD",
    "1",
]


def losses(output_dir):
    """Loss per iteration."""
    with open(os.path.join(output_dir, "metrics.jsonl")) as f:
        return {r["iteration"]: r["loss"] for r in map(json.loads, f)}


def iterations(output_dir):
    with open(os.path.join(output_dir, "metrics.jsonl")) as f:
        return [r["iteration"] for r in map(json.loads, f)]


def final_weights(output_dir):
    return torch.load(
        os.path.join(output_dir, "model_final.pth"), map_location="cpu", weights_only=False
    )["model"]


@pytest.mark.integration
def test_two_gloo_processes_match_one_process_on_the_same_global_batch(cifar10, tmp_path):
    # Every view blurred (0.5-1 px at 32 px): unblurred 32 px crops of CIFAR have flat, clipped
    # regions, likely exact ties in max-pooling that route the gradient by the last bit of a sum:
    # without blur the two runs part by 1e-3 within two steps (measured), for no fault of the code.
    # Two steps: the second reads the first's update, queue and EMA. On an AMD EPYC the runs are
    # 3.7e-6 apart after two steps and 2.4e-4 after a third (the summation order's last bits,
    # amplified), so a third step would test the CPU, not the code.
    common = [
        *TINY,
        "MODEL.SYNC_BN",
        "True",
        "SOLVER.MAX_ITER",
        "2",
        "DATA.VIEWS.BLUR_P",
        "1.0",
        "DATA.VIEWS.BLUR_SIGMA",
        "(3.5, 7.0)",
        "DATA.ROOT",
        str(cifar10 / "test"),
    ]
    run_tool("tools/pretrain.py", *common, "OUTPUT_DIR", str(tmp_path / "one"))
    run_tool(
        "tools/pretrain.py", "--num-processes", "2", *common, "OUTPUT_DIR", str(tmp_path / "two")
    )
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert list(one) == [1, 2]
    for it in one:
        assert abs(one[it] - two[it]) < 1e-4 * max(1.0, abs(one[it])), (it, one[it], two[it])
    w1, w2 = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    # Every weight, buffer and queued key, up to float summation order (measured: 3.7e-6 at most).
    for name in w1:
        assert torch.allclose(w1[name].double(), w2[name].double(), rtol=0, atol=5e-5), name


def _check_shuffle_bn(tmp_dir):
    import pretrain.common.distributed as du
    from pretrain.config import load_cfg
    from pretrain.models.moco import build_moco

    du.init_from_env("cpu")
    torch.manual_seed(0)
    model = build_moco(load_cfg(opts=TINY[:6]))
    model.key_encoder.eval()  # per-sample outputs, so any mix-up of the order would show
    torch.manual_seed(100 + du.get_rank())
    images = torch.randn(4, 3, 32, 32)
    shuffled = model.encode_keys(images)
    direct = model.key_encoder(images)
    torch.save(
        {"max_diff": (shuffled - direct).abs().max().item()},
        os.path.join(tmp_dir, f"rank{du.get_rank()}.pt"),
    )


def test_shuffle_bn_gives_each_process_back_its_own_keys(tmp_path):
    launch(_check_shuffle_bn, 2, (str(tmp_path),))
    for rank in (0, 1):
        assert torch.load(tmp_path / f"rank{rank}.pt")["max_diff"] < 1e-5


@pytest.mark.integration
def test_killed_run_resumes_the_exact_trajectory(cifar10, tmp_path):
    common = [
        "tools/pretrain.py",
        *TINY,
        "SOLVER.MAX_ITER",
        "12",
        "SOLVER.CHECKPOINT_PERIOD",
        "4",
        "DATA.ROOT",
        str(cifar10 / "test"),
    ]
    run_tool(*common, "OUTPUT_DIR", str(tmp_path / "whole"))

    broken = tmp_path / "killed"
    run_tool_until_killed(
        *common, "OUTPUT_DIR", str(broken), marker=broken / "checkpoint_00000004.pth"
    )
    assert not (broken / "model_final.pth").exists(), "the run ended before it could be killed"
    run_tool(common[0], "--resume", *common[1:], "OUTPUT_DIR", str(broken))

    whole, resumed = losses(tmp_path / "whole"), losses(broken)
    assert iterations(broken) == list(range(1, 13))  # rows past the checkpoint were dropped
    assert resumed == whole
    w1, w2 = final_weights(tmp_path / "whole"), final_weights(broken)
    assert w1.keys() == w2.keys()
    for name in w1:
        assert torch.equal(w1[name], w2[name]), name
