"""The public checkpoint layouts of pretrain/formats.py, each built as its release's code builds and
saves it: real torchvision ResNet-18s wrapped in the method's modules (projectors, predictors,
prototypes, heads with the real layer structure; hidden and output widths shrunk to keep the files
small), DDP's `module.` from a real wrapper, written with torch.save and read back from disk."""

import re

import pytest
import torch
import torch.nn as nn

from detection.convert import to_detectron2
from pretrain.formats import FORMATS, ConversionError, detect_format, load_any, read_backbone
from tests.conftest import run_tool
from tests.helpers import random_resnet

R18_FPN = "configs/detection/small/fruits_nuts_R_18_FPN.yaml"
_BACKBONE = re.compile(r"^(conv1|bn1|layer[1-4])\.")


class DDP(nn.Module):
    """What DistributedDataParallel / DataParallel add to a state dict: the `module.` prefix."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def backbone_of(net: nn.Module) -> dict:
    return {
        k: v.clone()
        for k, v in net.state_dict().items()
        if _BACKBONE.match(k) and not k.endswith("num_batches_tracked")
    }


def mlp(*dims: int, bias: bool = True, bn_last: bool | None = None) -> nn.Sequential:
    """Linear (BN ReLU Linear)*: the projector / predictor shape most methods share; `bn_last`
    appends a final BatchNorm1d (False: without affine parameters, as moco-v3 and simsiam do)."""
    layers = [nn.Linear(dims[0], dims[1], bias=bias)]
    for d_in, d_out in zip(dims[1:-1], dims[2:]):
        layers += [nn.BatchNorm1d(d_in), nn.ReLU(inplace=True), nn.Linear(d_in, d_out, bias=bias)]
    if bn_last is not None:
        layers.append(nn.BatchNorm1d(dims[-1], affine=bn_last))
    return nn.Sequential(*layers)


def save_and_load(tmp_path, ckpt, name="ckpt.pth", **save_kwargs):
    path = tmp_path / name
    torch.save(ckpt, path, **save_kwargs)
    return load_any(str(path))


def assert_reads(ckpt, fmt: str, expected: dict, dropped: set, encoder: str = "query") -> None:
    assert detect_format(ckpt) == fmt
    backbone, left_out = read_backbone(ckpt, fmt, encoder)
    assert backbone.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(backbone[key], value), key
    assert set(left_out) == dropped


def tracked(prefix: str, net: nn.Module) -> set:
    return {prefix + k for k in net.state_dict() if k.endswith("num_batches_tracked")}


def keys(prefix: str, module: nn.Module) -> set:
    return {prefix + k for k in module.state_dict()}


# --- moco-v3 -----------------------------------------------------------------------------------


class MoCoV3(nn.Module):
    """moco-v3 moco/builder.py, ResNet set-up: fc of both encoders is a 2-layer MLP ending in a
    non-affine BN, the predictor a 2-layer MLP (dim 256, mlp_dim 4096 there; 32 / 64 here)."""

    def __init__(self, dim: int = 32, mlp_dim: int = 64) -> None:
        super().__init__()
        self.base_encoder = random_resnet(
            "resnet18", 0, num_classes=mlp_dim, zero_init_residual=True
        )
        self.momentum_encoder = random_resnet("resnet18", 1, num_classes=mlp_dim)
        for encoder in (self.base_encoder, self.momentum_encoder):
            encoder.fc = mlp(512, mlp_dim, dim, bias=False, bn_last=False)
        self.predictor = mlp(dim, mlp_dim, dim, bias=False, bn_last=False)


def moco_v3_checkpoint(model: MoCoV3) -> dict:
    return {
        "epoch": 100,
        "arch": "resnet18",
        "state_dict": DDP(model).state_dict(),
        "optimizer": {},
        "scaler": {"scale": 65536.0},
    }


@pytest.mark.parametrize("encoder", ["query", "key"])
def test_moco_v3(tmp_path, encoder):
    model = MoCoV3()
    ckpt = save_and_load(tmp_path, moco_v3_checkpoint(model))
    chosen = "base_encoder" if encoder == "query" else "momentum_encoder"
    net = getattr(model, chosen)
    dropped = keys("", DDP(model)) - {f"module.{chosen}.{k}" for k in backbone_of(net)}
    assert_reads(ckpt, "moco-v3", backbone_of(net), dropped, encoder)
    assert (
        f"module.{chosen}.fc.4.running_mean" in dropped and "module.predictor.0.weight" in dropped
    )


# --- simsiam -----------------------------------------------------------------------------------


class SimSiam(nn.Module):
    """simsiam/builder.py: the encoder's fc becomes a 3-layer projector (the original fc, bias
    frozen, between BNs; output BN non-affine), the predictor a bottleneck MLP."""

    def __init__(self, dim: int = 32, pred_dim: int = 16) -> None:
        super().__init__()
        self.encoder = random_resnet("resnet18", 0, num_classes=dim, zero_init_residual=True)
        prev = self.encoder.fc.weight.shape[1]
        self.encoder.fc = nn.Sequential(
            nn.Linear(prev, prev, bias=False),
            nn.BatchNorm1d(prev),
            nn.ReLU(inplace=True),
            nn.Linear(prev, prev, bias=False),
            nn.BatchNorm1d(prev),
            nn.ReLU(inplace=True),
            self.encoder.fc,
            nn.BatchNorm1d(dim, affine=False),
        )
        self.predictor = nn.Sequential(
            nn.Linear(dim, pred_dim, bias=False),
            nn.BatchNorm1d(pred_dim),
            nn.ReLU(inplace=True),
            nn.Linear(pred_dim, dim),
        )


def test_simsiam_and_its_missing_key_network(tmp_path):
    model = SimSiam()
    ckpt = save_and_load(
        tmp_path,
        {"epoch": 100, "arch": "resnet18", "state_dict": DDP(model).state_dict(), "optimizer": {}},
    )
    dropped = (
        keys("module.encoder.fc.", model.encoder.fc)
        | keys("module.predictor.", model.predictor)
        | tracked("module.encoder.", model.encoder)
    )
    assert_reads(ckpt, "simsiam", backbone_of(model.encoder), dropped)
    with pytest.raises(ConversionError, match="simsiam checkpoint has no momentum encoder"):
        read_backbone(ckpt, "simsiam", "key")


# --- simclr ------------------------------------------------------------------------------------


def test_simclr_converted_from_the_tf_release(tmp_path):
    """tonylins/simclr-converter saves {'state_dict': resnet50x1().state_dict()}: torchvision
    names with the supervised fc of the TF checkpoint."""
    net = random_resnet("resnet18", 3)
    ckpt = save_and_load(tmp_path, {"state_dict": net.state_dict()})
    assert_reads(ckpt, "simclr", backbone_of(net), {"fc.weight", "fc.bias"} | tracked("", net))


def test_simclr_spijkervet(tmp_path):
    """Spijkervet/SimCLR saves the SimCLR module: encoder (fc Identity) and a bias-free
    projector."""
    model = nn.Module()
    model.encoder = random_resnet("resnet18", 4)
    model.encoder.fc = nn.Identity()
    model.projector = nn.Sequential(
        nn.Linear(512, 512, bias=False), nn.ReLU(), nn.Linear(512, 64, bias=False)
    )
    ckpt = save_and_load(tmp_path, model.state_dict())
    dropped = {"projector.0.weight", "projector.2.weight"} | tracked("encoder.", model.encoder)
    assert_reads(ckpt, "simclr", backbone_of(model.encoder), dropped)


# --- solo-learn ----------------------------------------------------------------------------------


def solo_learn_checkpoint(momentum: bool, legacy_names: bool = False) -> tuple[dict, nn.Module]:
    """A Lightning checkpoint of solo/methods (simclr.py without, byol.py with momentum networks):
    backbone with fc = Identity, online classifier, projector (and predictor, momentum_*)."""
    name = "encoder" if legacy_names else "backbone"
    model = nn.Module()
    setattr(model, name, random_resnet("resnet18", 5))
    getattr(model, name).fc = nn.Identity()
    model.classifier = nn.Linear(512, 10)
    model.projector = nn.Sequential(
        nn.Linear(512, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32)
    )
    if momentum:
        setattr(model, f"momentum_{name}", random_resnet("resnet18", 6))
        getattr(model, f"momentum_{name}").fc = nn.Identity()
        model.momentum_projector = nn.Sequential(
            nn.Linear(512, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32)
        )
        model.predictor = nn.Sequential(
            nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32)
        )
    ckpt = {
        "epoch": 399,
        "global_step": 1000,
        "pytorch-lightning_version": "1.6.4",
        "state_dict": model.state_dict(),
        "loops": {},
        "callbacks": {},
        "optimizer_states": [{}],
        "lr_schedulers": [{}],
        "hparams_name": "kwargs",
        "hyper_parameters": {"method": "byol" if momentum else "simclr"},
    }
    return ckpt, model


@pytest.mark.parametrize("encoder", ["query", "key"])
def test_solo_learn_byol(tmp_path, encoder):
    ckpt, model = solo_learn_checkpoint(momentum=True)
    ckpt = save_and_load(tmp_path, ckpt)
    name = "backbone" if encoder == "query" else "momentum_backbone"
    net = getattr(model, name)
    dropped = keys("", model) - {f"{name}.{k}" for k in backbone_of(net)}
    assert_reads(ckpt, "solo-learn", backbone_of(net), dropped, encoder)


def test_solo_learn_simclr_and_the_encoder_names_of_before_july_2022(tmp_path):
    ckpt, model = solo_learn_checkpoint(momentum=False, legacy_names=True)
    ckpt = save_and_load(tmp_path, ckpt)
    dropped = keys("", model) - {f"encoder.{k}" for k in backbone_of(model.encoder)}
    assert_reads(ckpt, "solo-learn", backbone_of(model.encoder), dropped)
    with pytest.raises(ConversionError, match="no momentum encoder"):
        read_backbone(ckpt, "solo-learn", "key")


# --- byol ----------------------------------------------------------------------------------------


class EncoderWithProjection(nn.Module):
    """yaox12/BYOL-PyTorch model/basic_modules.py: torchvision's children but fc, then an MLP."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(*list(random_resnet("resnet18", seed).children())[:-1])
        self.projetion = nn.Module()  # sic: the release's attribute name
        self.projetion.l1, self.projetion.bn1 = nn.Linear(512, 64), nn.BatchNorm1d(64)
        self.projetion.l2 = nn.Linear(64, 32)


@pytest.mark.parametrize("encoder", ["query", "key"])
def test_byol_pytorch_port(tmp_path, encoder):
    model = nn.Module()
    model.online_network, model.target_network = EncoderWithProjection(7), EncoderWithProjection(8)
    model.predictor = nn.Module()
    model.predictor.predictor = nn.Linear(32, 32)
    ckpt = save_and_load(
        tmp_path,
        {
            "config": {},
            "epoch": 300,
            "steps": 1000,
            "model": DDP(model).state_dict(),
            "optimizer": {},
            "amp": {},
        },
    )
    name = "online_network" if encoder == "query" else "target_network"
    source = random_resnet("resnet18", 7 if encoder == "query" else 8)
    kept = {
        k
        for k in DDP(model).state_dict()
        if k.startswith(f"module.{name}.encoder.") and not k.endswith("num_batches_tracked")
    }
    assert_reads(ckpt, "byol", backbone_of(source), set(DDP(model).state_dict()) - kept, encoder)


# --- mmselfsup ---------------------------------------------------------------------------------


@pytest.mark.parametrize("encoder", ["query", "key"])
def test_mmselfsup_byol(tmp_path, encoder):
    """OpenSelfSup / mmselfsup 0.x BYOL: online_net and target_net are (backbone, neck), and
    `backbone` aliases online_net[0], so its tensors are saved under both names."""

    def backbone_and_neck(seed):
        net = random_resnet("resnet18", seed)
        del net.fc  # mmcv's ResNet has no classifier
        return nn.Sequential(net, mlp(512, 64, 32))

    model = nn.Module()
    model.online_net, model.target_net = backbone_and_neck(9), backbone_and_neck(10)
    model.backbone, model.neck = model.online_net[0], model.online_net[1]
    model.head = nn.Module()
    model.head.predictor = mlp(32, 64, 32)
    ckpt = save_and_load(
        tmp_path,
        {
            "meta": {"epoch": 200, "mmcv_version": "1.3.0"},
            "state_dict": model.state_dict(),
            "optimizer": {},
        },
    )
    prefix = "backbone." if encoder == "query" else "target_net.0."
    net = model.backbone if encoder == "query" else model.target_net[0]
    dropped = set(model.state_dict()) - {prefix + k for k in backbone_of(net)}
    assert_reads(ckpt, "mmselfsup", backbone_of(net), dropped, encoder)


class EMA(nn.Module):
    """mmengine's ExponentialMovingAverage / CosineEMA as mmselfsup 1.x and mmpretrain save them: a
    copy of the network as `module` beside a `steps` buffer."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.register_buffer("steps", torch.tensor(0))


@pytest.mark.parametrize("momentum_name", ["target_net", "encoder_k", "momentum_encoder"])
@pytest.mark.parametrize("encoder", ["query", "key"])
def test_mmselfsup_1x_momentum_networks(tmp_path, encoder, momentum_name):
    """mmselfsup 1.x / mmpretrain BYOL (`target_net`), MoCo v2 and DenseCL (`encoder_k`) and MoCo
    v3 (`momentum_encoder`): the momentum network is an EMA of Sequential(backbone, neck), saved
    by mmengine with `meta` and the data preprocessor's buffers."""

    def backbone_and_neck(seed):
        net = random_resnet("resnet18", seed)
        del net.fc
        return nn.Sequential(net, mlp(512, 64, 32))

    model = nn.Module()
    model.data_preprocessor = nn.Module()
    model.data_preprocessor.register_buffer("mean", torch.tensor([123.675, 116.28, 103.53]))
    model.data_preprocessor.register_buffer("std", torch.tensor([58.395, 57.12, 57.375]))
    online = backbone_and_neck(11)
    model.backbone, model.neck = online[0], online[1]
    setattr(model, momentum_name, EMA(backbone_and_neck(12)))
    ckpt = save_and_load(
        tmp_path,
        {
            "meta": {"epoch": 200, "mmengine_version": "0.7.0"},
            "state_dict": model.state_dict(),
            "message_hub": {},
            "optimizer": {},
        },
    )
    prefix = "backbone." if encoder == "query" else f"{momentum_name}.module.0."
    net = model.backbone if encoder == "query" else getattr(model, momentum_name).module[0]
    dropped = set(model.state_dict()) - {prefix + k for k in backbone_of(net)}
    assert_reads(ckpt, "mmselfsup", backbone_of(net), dropped, encoder)


# --- swav ----------------------------------------------------------------------------------------


class SwAV(nn.Module):
    """swav src/resnet50.py: the trunk plus projection_head (Linear BN ReLU Linear; 2048-2048-128
    for ResNet-50) and prototypes (Linear without bias, 3000 for ImageNet; MultiPrototypes
    `prototypes.prototypes<i>` for several)."""

    def __init__(self, nmb_prototypes) -> None:
        super().__init__()
        trunk = random_resnet("resnet18", 11)
        for name in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(trunk, name))
        self.projection_head = nn.Sequential(
            nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Linear(512, 128)
        )
        if isinstance(nmb_prototypes, list):
            self.prototypes = nn.Module()
            for i, k in enumerate(nmb_prototypes):
                setattr(self.prototypes, f"prototypes{i}", nn.Linear(128, k, bias=False))
        else:
            self.prototypes = nn.Linear(128, nmb_prototypes, bias=False)


@pytest.mark.parametrize("release", ["model_zoo", "main_swav", "multi_prototypes"])
def test_swav(tmp_path, release):
    model = SwAV([300, 300] if release == "multi_prototypes" else 3000)
    state = DDP(model).state_dict()
    ckpt = state if release == "model_zoo" else {"epoch": 800, "state_dict": state, "optimizer": {}}
    ckpt = save_and_load(tmp_path, ckpt)
    dropped = (
        keys("module.projection_head.", model.projection_head)
        | keys("module.prototypes.", model.prototypes)
        | tracked("module.", model)
    )
    assert_reads(ckpt, "swav", backbone_of(model), dropped)


# --- dino ----------------------------------------------------------------------------------------


class DINOHead(nn.Module):
    """dino vision_transformer.py DINOHead: a 3-layer MLP (GELU) to a bottleneck, then a
    weight-normalised last layer (weight_g, weight_v); 2048-2048-256 -> 60000 for ResNet-50."""

    def __init__(self, in_dim: int, out_dim: int = 100, hidden: int = 64, bottleneck: int = 32):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, bottleneck),
        )
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck, out_dim, bias=False))


def multi_crop_wrapper(seed: int) -> nn.Module:
    """dino utils.MultiCropWrapper: the backbone's fc (and head) become Identity."""
    wrapper = nn.Module()
    wrapper.backbone = random_resnet("resnet18", seed)
    wrapper.backbone.fc = nn.Identity()
    wrapper.head = DINOHead(512)
    return wrapper


@pytest.mark.parametrize("encoder", ["query", "key"])
def test_dino_full_checkpoint(tmp_path, encoder):
    student, teacher = multi_crop_wrapper(12), multi_crop_wrapper(13)
    dino_loss = nn.Module()
    dino_loss.register_buffer("center", torch.zeros(1, 100))
    ckpt = save_and_load(
        tmp_path,
        {
            "student": DDP(student).state_dict(),
            "teacher": DDP(teacher).state_dict(),
            "optimizer": {},
            "epoch": 800,
            "args": {"arch": "resnet50"},
            "dino_loss": dino_loss.state_dict(),
        },
    )
    net = student if encoder == "query" else teacher
    dropped = keys("module.head.", net.head) | tracked("module.backbone.", net.backbone)
    assert_reads(ckpt, "dino", backbone_of(net.backbone), dropped, encoder)
    assert "module.head.last_layer.weight_g" in dropped


def test_dino_backbone_only_file_is_a_torchvision_state_dict(tmp_path):
    """dino's dino_resnet50_pretrain.pth: the teacher's backbone, fc removed."""
    net = random_resnet("resnet18", 14)
    net.fc = nn.Identity()
    assert_reads(
        save_and_load(tmp_path, net.state_dict()), "torchvision", backbone_of(net), tracked("", net)
    )


# --- vissl ---------------------------------------------------------------------------------------


def vissl_trunk(seed: int) -> nn.Module:
    """vissl/models/trunks/resnext.py: torchvision's modules in a ModuleDict `_feature_blocks`."""
    net = random_resnet("resnet18", seed)
    trunk = nn.Module()
    trunk._feature_blocks = nn.ModuleDict(
        [
            ("conv1", net.conv1),
            ("bn1", net.bn1),
            ("conv1_relu", net.relu),
            ("maxpool", net.maxpool),
            ("layer1", net.layer1),
            ("layer2", net.layer2),
            ("layer3", net.layer3),
            ("layer4", net.layer4),
            ("avgpool", net.avgpool),
            ("flatten", nn.Flatten(1)),
        ]
    )
    return trunk


def vissl_model(seed: int) -> nn.Module:
    """vissl BaseSSLMultiInputOutputModel: trunk and a list of heads (an MLP head: `clf`)."""
    model = nn.Module()
    model.trunk = vissl_trunk(seed)
    head = nn.Module()
    head.clf = nn.Sequential(nn.Linear(512, 128))
    model.heads = nn.ModuleList([head])
    return model


def vissl_checkpoint(model: nn.Module, loss: nn.Module) -> dict:
    """CheckpointHook: the loss's state dict and the task's classy state, whose base_model holds
    the model's trunk and heads separately."""
    return {
        "phase_idx": 199,
        "iteration": 1000,
        "loss": loss.state_dict(),
        "iteration_num": 1000,
        "train_phase_idx": 199,
        "classy_state_dict": {
            "train": True,
            "phase_idx": 199,
            "train_phase_idx": 199,
            "optimizer": {},
            "base_model": {
                "model": {"trunk": model.trunk.state_dict(), "heads": model.heads.state_dict()},
                "meta": {},
            },
        },
    }


@pytest.mark.parametrize("encoder", ["query", "key"])
def test_vissl_moco(tmp_path, encoder):
    """vissl MoCo: moco_hooks.py makes task.loss.moco_encoder, a replica of the model, so the
    momentum encoder is saved in the loss's state beside the queue."""
    model, loss = vissl_model(15), nn.Module()
    loss.register_buffer("queue", torch.randn(128, 64))
    loss.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
    loss.moco_encoder = vissl_model(16)
    ckpt = save_and_load(tmp_path, vissl_checkpoint(model, loss))
    if encoder == "query":
        dropped = {"heads.0.clf.0.weight", "heads.0.clf.0.bias"} | tracked("trunk.", model.trunk)
        net = model.trunk._feature_blocks
    else:
        net = loss.moco_encoder.trunk._feature_blocks
        dropped = set(loss.state_dict()) - {
            f"moco_encoder.trunk._feature_blocks.{k}" for k in backbone_of(net)
        }
    assert_reads(ckpt, "vissl", backbone_of(net), dropped, encoder)


def test_vissl_pirl_model_zoo(tmp_path):
    """PIRL in vissl: the memory bank is in the NCE loss's state; no momentum network."""
    model, loss = vissl_model(17), nn.Module()
    loss.register_buffer("memory", torch.randn(100, 128))
    ckpt = save_and_load(tmp_path, vissl_checkpoint(model, loss))
    dropped = {"heads.0.clf.0.weight", "heads.0.clf.0.bias"} | tracked("trunk.", model.trunk)
    assert_reads(ckpt, "vissl", backbone_of(model.trunk._feature_blocks), dropped)
    with pytest.raises(ConversionError, match="vissl checkpoint has no momentum encoder"):
        read_backbone(ckpt, "vissl", "key")


def test_vissl_bare_trunk(tmp_path):
    """The `model_state_dict` trunk extra_scripts/convert_vissl_to_torchvision.py also reads."""
    trunk = vissl_trunk(18)
    ckpt = save_and_load(tmp_path, {"model_state_dict": trunk.state_dict()})
    assert_reads(ckpt, "vissl", backbone_of(trunk._feature_blocks), tracked("trunk.", trunk))


# --- insdis (lemniscate) -------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [True, False], ids=["pytorch0.4-file", "zip-file"])
def test_insdis_lemniscate_with_its_pickled_memory_bank(tmp_path, monkeypatch, legacy):
    """lemniscate.pytorch pickles its NCEAverage module (lib/NCEAverage.py) whole into the
    checkpoint (its release predates PyTorch's zip format): reading the weights must not need
    that class."""
    import sys
    import types

    class NCEAverage(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("params", torch.tensor([4096, 0.07, -1, 0, 0.5]))
            self.register_buffer("memory", torch.randn(100, 128))

    package, module = types.ModuleType("lib"), types.ModuleType("lib.NCEAverage")
    NCEAverage.__module__, NCEAverage.__qualname__ = module.__name__, "NCEAverage"
    module.NCEAverage, package.NCEAverage = NCEAverage, module
    monkeypatch.setitem(sys.modules, "lib", package)
    monkeypatch.setitem(sys.modules, "lib.NCEAverage", module)
    net = random_resnet("resnet18", 19, num_classes=128)  # fc: the 128-d embedding
    path = tmp_path / "lemniscate_resnet18.pth.tar"
    torch.save(
        {
            "epoch": 200,
            "arch": "resnet18",
            "state_dict": DDP(net).state_dict(),
            "lemniscate": NCEAverage(),
            "best_prec1": 42.0,
            "optimizer": {},
        },
        path,
        _use_new_zipfile_serialization=not legacy,
    )
    monkeypatch.delitem(sys.modules, "lib")
    monkeypatch.delitem(sys.modules, "lib.NCEAverage")
    ckpt = load_any(str(path))
    assert_reads(
        ckpt,
        "insdis",
        backbone_of(net),
        {"module.fc.weight", "module.fc.bias"} | tracked("module.", net),
    )


# --- every format, once, and what is not one -------------------------------------------------


def test_existing_formats_are_detected_as_before(tmp_path):
    query, key = random_resnet("resnet18", 20), random_resnet("resnet18", 21)
    moco = {
        "epoch": 200,
        "arch": "resnet18",
        "optimizer": {},
        "state_dict": {
            **{f"module.encoder_q.{k}": v for k, v in query.state_dict().items()},
            **{f"module.encoder_k.{k}": v for k, v in key.state_dict().items()},
            "module.queue": torch.randn(128, 64),
            "module.queue_ptr": torch.zeros(1),
        },
    }
    pycontrast = {
        "model": {f"module.encoder.{k}": v for k, v in query.state_dict().items()},
        "model_ema": {f"encoder.{k}": v for k, v in key.state_dict().items()},
        "contrast": {},
        "optimizer": {},
        "epoch": 200,
    }
    detectron2 = {
        "model": to_detectron2(backbone_of(query)),
        "__author__": "x",
        "matching_heuristics": True,
    }
    cases = {
        "moco": moco,
        "pycontrast": pycontrast,
        "detectron2": detectron2,
        "torchvision": query.state_dict(),
    }
    for fmt, ckpt in cases.items():
        ckpt = save_and_load(tmp_path, ckpt, name=f"{fmt}.pth")
        assert detect_format(ckpt) == fmt
        for encoder, net in (("query", query), ("key", key)):
            if fmt in ("moco", "pycontrast") or (fmt, encoder) == ("torchvision", "query"):
                backbone, _ = read_backbone(ckpt, fmt, encoder)
                assert backbone.keys() == backbone_of(net).keys()
                assert all(torch.equal(backbone[k], v) for k, v in backbone_of(net).items())
    for wrapped in (
        {f"module.{k}": v for k, v in query.state_dict().items()},
        {
            "epoch": 90,
            "arch": "resnet18",
            "state_dict": DDP(query).state_dict(),
            "best_acc1": 70.0,
            "optimizer": {},
        },
    ):  # pytorch/examples imagenet
        assert detect_format(wrapped) == "torchvision"
        assert read_backbone(wrapped, "torchvision")[0].keys() == backbone_of(query).keys()


def test_unknown_layout_names_its_top_level_keys():
    with pytest.raises(
        ConversionError,
        match=r"unknown checkpoint layout \(top-level keys: "
        r"epoch, weights\); known formats: pretrain, ",
    ):
        detect_format({"weights": {"a": torch.zeros(1)}, "epoch": 3})
    with pytest.raises(ConversionError, match="is not a dino checkpoint"):
        read_backbone({"state_dict": {}}, "dino")
    assert len(set(FORMATS)) == len(FORMATS) == 15


def test_each_public_layout_matches_only_its_own_signature():
    """Detection walks LAYOUTS in order; no method's layout satisfies another method's signature,
    so the order only puts them before the generic torchvision fallback."""
    from pretrain.formats import LAYOUTS

    ckpt_moco_v3 = moco_v3_checkpoint(MoCoV3())
    ckpt_solo, _ = solo_learn_checkpoint(momentum=True)
    dino = {
        "student": DDP(multi_crop_wrapper(0)).state_dict(),
        "teacher": DDP(multi_crop_wrapper(1)).state_dict(),
    }
    for fmt, ckpt in (
        ("moco-v3", ckpt_moco_v3),
        ("solo-learn", ckpt_solo),
        ("dino", dino),
        ("swav", DDP(SwAV(30)).state_dict()),
        ("simsiam", {"state_dict": DDP(SimSiam()).state_dict()}),
    ):
        assert [
            layout.name
            for layout in LAYOUTS
            if layout.name != "torchvision" and layout.matches(ckpt)
        ] == [fmt]


@pytest.mark.integration
def test_tools_convert_verifies_a_moco_v3_checkpoint_end_to_end(tmp_path):
    import pickle

    from tests.helpers import expected_detectron2_name

    model = MoCoV3()
    src, out = tmp_path / "moco_v3.pth.tar", tmp_path / "moco_v3.pkl"
    torch.save(moco_v3_checkpoint(model), src)
    log = run_tool(
        "tools/convert.py", str(src), str(out), "--encoder", "key", "--verify", R18_FPN
    ).stdout
    assert "read" in log and "as moco-v3 (key encoder)" in log and "verified" in log
    assert "module.predictor.0.* (" in log
    with open(out, "rb") as f:
        weights = pickle.load(f)["model"]
    expected = backbone_of(model.momentum_encoder)
    assert set(weights) == {expected_detectron2_name(k) for k in expected}
    for key, value in expected.items():
        assert (weights[expected_detectron2_name(key)] == value.numpy()).all(), key
