import pickle

import pytest
import torch
import torchvision

from tests.conftest import run_tool


@pytest.fixture()
def moco_checkpoint(tmp_path):
    """A facebookresearch/moco-style checkpoint of a real torchvision ResNet-18, MLP fc included."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18()
    net.fc = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 128))
    state = {}
    for prefix in ("module.encoder_q.", "module.encoder_k."):
        state.update({prefix + k: v.clone() for k, v in net.state_dict().items()})
    state["module.queue"] = torch.randn(128, 16)
    state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    path = tmp_path / "moco.pth.tar"
    torch.save({"epoch": 200, "arch": "resnet18", "state_dict": state, "optimizer": {}}, path)
    return path, net.state_dict()


def test_moco_checkpoint_converts_to_backbone_only(moco_checkpoint, tmp_path):
    path, source = moco_checkpoint
    out = tmp_path / "out.pkl"
    log = run_tool("tools/convert.py", str(path), str(out)).stdout
    assert "as moco" in log
    with open(out, "rb") as f:
        data = pickle.load(f)
    weights = data["model"]
    assert data["matching_heuristics"] is True and "__author__" in data
    assert not any(k.startswith(("fc", "res1", "queue")) or "num_batches" in k for k in weights)
    assert len(weights) == 100
    assert (weights["res2.0.conv1.norm.running_var"]
            == source["layer1.0.bn1.running_var"].numpy()).all()
    assert (weights["res3.0.shortcut.weight"] == source["layer2.0.downsample.0.weight"].numpy()).all()
    assert (weights["stem.conv1.weight"] == source["conv1.weight"].numpy()).all()


@pytest.mark.parametrize("content, message", [
    (b"garbage", "cannot be read"),
])
def test_unreadable_input_is_a_one_line_error(tmp_path, content, message):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(content)
    out = tmp_path / "out.pkl"
    with pytest.raises(AssertionError, match=message):
        run_tool("tools/convert.py", str(bad), str(out))
    assert not out.exists()


def test_unknown_layout_and_existing_output(tmp_path, moco_checkpoint):
    odd = tmp_path / "odd.pth"
    torch.save({"weights": {"a": torch.zeros(1)}}, odd)
    with pytest.raises(AssertionError, match="unknown checkpoint layout"):
        run_tool("tools/convert.py", str(odd), str(tmp_path / "o.pkl"))
    path, _ = moco_checkpoint
    existing = tmp_path / "exists.pkl"
    existing.write_bytes(b"keep me")
    with pytest.raises(AssertionError, match="--force"):
        run_tool("tools/convert.py", str(path), str(existing))
    assert existing.read_bytes() == b"keep me"
