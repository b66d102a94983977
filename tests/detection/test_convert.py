"""tools/convert.py on checkpoints built in every source format from real torchvision models,
loaded back through Detectron2 (FPN and C4) and compared tensor by tensor."""

import pickle
import runpy
import subprocess
import sys
import tarfile

import pytest
import torch

from tests.conftest import REPO, run_tool
from tests.helpers import expected_detectron2_name, random_resnet

# tools/convert.py as a process (Detectron2's own converter too)
pytestmark = pytest.mark.integration

R18_C4 = "configs/detection/small/bccd_R_18_C4.yaml"
R18_FPN = "configs/detection/small/fruits_nuts_R_18_FPN.yaml"
R50_C4 = "configs/detection/Base-RCNN-C4-BN.yaml"
R50_FPN = "configs/detection/Base-RCNN-FPN-SyncBN.yaml"


def torchvision_backbone(arch: str, seed: int = 0) -> dict:
    return random_resnet(arch, seed).state_dict()


def with_mlp_fc(state: dict, prefix: str) -> dict:
    out = {prefix + k: v.clone() for k, v in state.items() if not k.startswith("fc.")}
    dim = state["fc.weight"].shape[1]
    out.update(
        {
            prefix + "fc.0.weight": torch.randn(dim, dim),
            prefix + "fc.0.bias": torch.zeros(dim),
            prefix + "fc.2.weight": torch.randn(128, dim),
            prefix + "fc.2.bias": torch.zeros(128),
        }
    )
    return out


def moco(query: dict, key: dict) -> dict:
    state = {
        **with_mlp_fc(query, "module.encoder_q."),
        **with_mlp_fc(key, "module.encoder_k."),
        "module.queue": torch.randn(128, 4096),
        "module.queue_ptr": torch.zeros(1, dtype=torch.long),
    }
    return {"epoch": 200, "arch": "resnet50", "state_dict": state, "optimizer": {}}


def pycontrast(query: dict, key: dict) -> dict:
    model = with_mlp_fc(query, "module.encoder.")
    model.update(
        {
            "module.head.fc.0.weight": torch.randn(8, 8),
            "module.head_jig.fc2.weight": torch.randn(128, 1152),
        }
    )
    ema = with_mlp_fc(key, "encoder.")
    ema["head.fc.0.weight"] = torch.randn(8, 8)
    return {
        "model": model,
        "model_ema": ema,
        "contrast": {"memory": torch.randn(16, 128)},
        "optimizer": {},
        "epoch": 200,
    }


def convert(tmp_path, checkpoint, *flags, name="out.pkl"):
    src = tmp_path / "source.pth"
    torch.save(checkpoint, src)
    out = tmp_path / name
    log = run_tool("tools/convert.py", str(src), str(out), *flags).stdout
    with open(out, "rb") as f:
        return pickle.load(f), log


def assert_exact_reference_conversion(weights: dict, source: dict) -> None:
    expected = {
        expected_detectron2_name(k): v
        for k, v in source.items()
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    }
    assert set(weights) == set(expected)
    for name, value in expected.items():
        assert (weights[name] == value.numpy()).all(), name


@pytest.mark.parametrize("encoder", ["query", "key"])
def test_moco_checkpoint_gives_exactly_the_backbone_of_the_chosen_encoder(tmp_path, encoder):
    query, key = torchvision_backbone("resnet18", 0), torchvision_backbone("resnet18", 1)
    data, log = convert(tmp_path, moco(query, key), "--encoder", encoder, "--verify", R18_FPN)
    assert "as moco" in log and "verified" in log
    assert data["matching_heuristics"] is True and "__author__" in data
    assert_exact_reference_conversion(data["model"], query if encoder == "query" else key)
    assert "module.queue" in log and "module.encoder_q.fc.* (4)" in log


@pytest.mark.parametrize("encoder", ["query", "key"])
def test_pycontrast_model_and_model_ema(tmp_path, encoder):
    query, key = torchvision_backbone("resnet50", 0), torchvision_backbone("resnet50", 1)
    data, log = convert(tmp_path, pycontrast(query, key), "--encoder", encoder, "--verify", R50_C4)
    assert "as pycontrast" in log
    assert_exact_reference_conversion(data["model"], query if encoder == "query" else key)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_torchvision_state_dict_into_fpn_and_c4(tmp_path, prefix):
    source = torchvision_backbone("resnet50")
    for config in (R50_FPN, R50_C4):
        data, log = convert(
            tmp_path, {prefix + k: v for k, v in source.items()}, "--force", "--verify", config
        )
        assert "as torchvision" in log and "loads all 265 backbone tensors" in log
        assert_exact_reference_conversion(data["model"], source)


def test_resnext_into_a_grouped_detectron2_backbone(tmp_path):
    from detection.verify import verify_weights

    source = torchvision_backbone("resnext50_32x4d")
    data, _ = convert(tmp_path, source)
    assert_exact_reference_conversion(data["model"], source)
    checked = verify_weights(
        str(tmp_path / "out.pkl"),
        R50_FPN,
        ["MODEL.RESNETS.NUM_GROUPS", "32", "MODEL.RESNETS.WIDTH_PER_GROUP", "4"],
    )
    assert checked == 265


def test_detectron2_file_passes_through(tmp_path):
    source = torchvision_backbone("resnet18")
    first, _ = convert(tmp_path, source, name="first.pkl")
    again = tmp_path / "again.pkl"
    log = run_tool(
        "tools/convert.py", str(tmp_path / "first.pkl"), str(again), "--verify", R18_C4
    ).stdout
    assert "as detectron2" in log
    with open(again, "rb") as f:
        second = pickle.load(f)["model"]
    assert second.keys() == first["model"].keys()
    assert all((second[k] == first["model"][k]).all() for k in second)


def test_agrees_with_detectron2s_own_torchvision_converter(tmp_path):
    """Detectron2 ships tools/convert-torchvision-to-d2.py (in the registry sdist)."""
    # The installer is a script (tools/), not library code: its function read from the file.
    registry_sdist = runpy.run_path(str(REPO / "tools" / "install_detectron2.py"))["registry_sdist"]

    with tarfile.open(registry_sdist()) as tar:
        member = next(
            m for m in tar.getmembers() if m.name.endswith("tools/convert-torchvision-to-d2.py")
        )
        reference = tmp_path / "convert-torchvision-to-d2.py"
        reference.write_bytes(tar.extractfile(member).read())
    source = torchvision_backbone("resnet50")
    src = tmp_path / "r50.pth"
    torch.save(source, src)
    subprocess.run(
        [sys.executable, str(reference), str(src), str(tmp_path / "theirs.pkl")],
        check=True,
        capture_output=True,
    )
    run_tool("tools/convert.py", str(src), str(tmp_path / "ours.pkl"))
    theirs = pickle.load(open(tmp_path / "theirs.pkl", "rb"))["model"]
    ours = pickle.load(open(tmp_path / "ours.pkl", "rb"))["model"]
    # Theirs also keeps the classifier (as stem.fc.*) and the BN counters; ours keeps the backbone.
    extra = set(theirs) - set(ours)
    assert extra and all(
        k.startswith("stem.fc.") or k.endswith("num_batches_tracked") for k in extra
    )
    assert set(ours) <= set(theirs)
    for name in ours:
        assert (ours[name] == theirs[name]).all(), name


def test_truncated_file_is_a_one_line_error_and_leaves_no_output(tmp_path):
    whole = tmp_path / "whole.pth"
    torch.save(torchvision_backbone("resnet18"), whole)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(AssertionError, match=r"error: .*cut.pth: cannot be read"):
        run_tool("tools/convert.py", str(cut), str(tmp_path / "out.pkl"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.pth", "whole.pth"]


def test_depth_mismatch_under_verify_fails_and_writes_nothing(tmp_path):
    src = tmp_path / "r18.pth"
    torch.save(torchvision_backbone("resnet18"), src)
    with pytest.raises(AssertionError, match="shape .*a depth or width that does not match"):
        run_tool("tools/convert.py", str(src), str(tmp_path / "out.pkl"), "--verify", R50_FPN)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r18.pth"]


def test_unknown_layout_and_existing_output(tmp_path):
    odd = tmp_path / "odd.pth"
    torch.save({"weights": {"a": torch.zeros(1)}}, odd)
    with pytest.raises(AssertionError, match="unknown checkpoint layout"):
        run_tool("tools/convert.py", str(odd), str(tmp_path / "o.pkl"))
    src = tmp_path / "r18.pth"
    torch.save(torchvision_backbone("resnet18"), src)
    existing = tmp_path / "exists.pkl"
    existing.write_bytes(b"keep me")
    with pytest.raises(AssertionError, match="--force"):
        run_tool("tools/convert.py", str(src), str(existing))
    assert existing.read_bytes() == b"keep me"


def test_a_backbone_holding_nan_is_refused_and_nothing_written(tmp_path):
    """The weights of a run that diverged: refused by name, not converted into a model that
    fine-tunes to nothing."""
    state = torchvision_backbone("resnet18")
    state["layer2.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    src = tmp_path / "diverged.pth"
    torch.save(state, src)
    with pytest.raises(
        AssertionError,
        match=r"diverged.pth: 1 tensors hold NaN or infinite "
        r"values \(first: res3.0.conv1.weight\)",
    ):
        run_tool("tools/convert.py", str(src), str(tmp_path / "out.pkl"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diverged.pth"]


def test_a_detectron2_training_checkpoint_gives_its_resnet(tmp_path):
    """detection/train_net.py's model_final.pth (a Detectron2 model with FPN, RPN and heads):
    its bottom-up ResNet comes out under a backbone file's names, the rest is left out."""
    import detection  # noqa: F401  (before detectron2)
    from detectron2.modeling import build_model

    from detection.config import load_detection_cfg

    cfg = load_detection_cfg(
        str(REPO / "configs/detection/small/fruits_nuts_R_18_FPN.yaml"),
        ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""],
    )
    torch.manual_seed(0)
    model = build_model(cfg).state_dict()
    src = tmp_path / "model_final.pth"
    torch.save({"model": model, "iteration": 3, "optimizer": {}}, src)
    out = tmp_path / "backbone.pkl"
    log = run_tool("tools/convert.py", str(src), str(out)).stdout
    assert "as detectron2" in log
    with open(out, "rb") as f:
        weights = pickle.load(f)["model"]
    resnet = {
        k[len("backbone.bottom_up.") :]: v
        for k, v in model.items()
        if k.startswith("backbone.bottom_up.") and not k.endswith("num_batches_tracked")
    }
    assert weights.keys() == resnet.keys() and "res5.1.conv2.weight" in weights
    assert all((weights[k] == resnet[k].numpy()).all() for k in weights)
