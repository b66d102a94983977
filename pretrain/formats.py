"""Read the backbone out of the checkpoints people have, in torchvision naming (conv1, bn1,
layer1..4). Each format is a state-dict layout of a public release, checked in the order of LAYOUTS
(the most specific signature first, so that a file matches exactly one):

  format      source (where the backbone sits; `--encoder key` reads)
  pretrain    this project (`query_encoder.backbone.`; key: `key_encoder.backbone.`)
  vissl       facebookresearch/vissl, model zoo incl. PIRL / InsDis / SimCLR / SwAV ...
              (`classy_state_dict` > base_model > model > trunk `_feature_blocks.`; key: the
              loss's momentum network, e.g. `moco_encoder.trunk._feature_blocks.`)
  dino        facebookresearch/dino full checkpoint (`student` `module.backbone.`; key: `teacher`)
  solo-learn  vturrisi/solo-learn Lightning checkpoint (`state_dict` `backbone.`, before 2022-07
              `encoder.`; key: `momentum_backbone.` / `momentum_encoder.`)
  mmselfsup   OpenSelfSup / mmselfsup 0.x and 1.x / mmpretrain (`meta` + `state_dict`
              `backbone.`; key: `target_net.0.` (BYOL) or `encoder_k.0.` (MoCo, DenseCL); from
              1.x mmengine's EMA wrapper adds `.module`: `target_net.module.0.`,
              `encoder_k.module.0.`, `momentum_encoder.module.0.` (MoCo v3))
  moco        facebookresearch/moco (`state_dict` `module.encoder_q.`; key: `module.encoder_k.`)
  moco-v3     facebookresearch/moco-v3 (`state_dict` `module.base_encoder.`; key:
              `module.momentum_encoder.`)
  simsiam     facebookresearch/simsiam (`state_dict` `module.encoder.` beside `module.predictor.`)
  insdis      zhirongw/lemniscate.pytorch (`state_dict` `module.` beside the `lemniscate` bank)
  byol        yaox12/BYOL-PyTorch (`model` `module.online_network.encoder.<i>.`, torchvision's
              children by index; key: `module.target_network.encoder.<i>.`)
  pycontrast  HobbitLong/PyContrast (`model` `module.encoder.`; key: `model_ema` `encoder.`)
  swav        facebookresearch/swav (`module.` with `projection_head` / `prototypes`, bare as in
              the model zoo or under `state_dict` as main_swav.py saves)
  simclr      tonylins/simclr-converter (`{"state_dict"}` only, torchvision names), Spijkervet/
              SimCLR (`encoder.` beside `projector.`)
  torchvision a torchvision state dict, bare or under `state_dict`, with or without `module.`
              (also the swav torch.hub model and dino's backbone-only resnet50 file)
  detectron2  a Detectron2 file (passed through by detection/convert.py)

Heads, projectors, predictors, prototypes, queues, the other network and `num_batches_tracked`
are left out and reported (the keys of the state dict the backbone was read from)."""

from __future__ import annotations

import os
import pickle
import re
import types
from dataclasses import dataclass
from typing import Callable

import torch

from .common.errors import CheckpointError

_BACKBONE_KEY = re.compile(r"^(conv1|bn1|layer[1-4])\.")
Rename = Callable[[str], "str | None"]


class ConversionError(CheckpointError):
    """The input cannot be read as a backbone; the message names the problem."""


@dataclass(frozen=True)
class Network:
    """Where one network's backbone sits: a state dict, the prefix of its keys, and (for layouts
    that do not use torchvision's names after the prefix) a renaming to them."""

    state: dict
    prefix: str
    rename: Rename | None = None


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _has_backbone(state, prefix: str) -> bool:
    return any(isinstance(k, str) and k.startswith(prefix + "layer1.") for k in _dict(state))


def _first_prefix(state: dict, prefixes) -> str | None:
    return next((p for p in prefixes if _has_backbone(state, p)), None)


def _take_backbone(net: Network) -> tuple[dict, list[str]]:
    """The backbone tensors under `net.prefix`, renamed to torchvision's names; and every other key
    of `net.state` (under its full source name), which is dropped."""
    kept, sources = {}, set()
    for key, value in net.state.items():
        if not key.startswith(net.prefix) or key.endswith("num_batches_tracked"):
            continue
        name = key[len(net.prefix) :]
        name = net.rename(name) if net.rename else name
        if name and _BACKBONE_KEY.match(name):
            kept[name] = value
            sources.add(key)
    return kept, sorted(k for k in net.state if k not in sources)


# --- the layouts: a signature and where the query / key network's backbone sits --------------


def _state_dict(ckpt: dict) -> dict:
    return _dict(ckpt.get("state_dict"))


def _pretrain(ckpt: dict) -> dict:
    model = ckpt["model"]
    return {
        "query": Network(model, "query_encoder.backbone."),
        "key": Network(model, "key_encoder.backbone."),
    }


def _is_vissl(ckpt: dict) -> bool:
    return isinstance(ckpt.get("classy_state_dict"), dict) or _has_backbone(
        ckpt.get("model_state_dict"), "_feature_blocks."
    )


def _vissl(ckpt: dict) -> dict:
    # vissl/hooks/state_update_hooks.py (CheckpointHook) saves {"classy_state_dict":
    # {"base_model": {"model": {"trunk", "heads"}}}, "loss" (older: "criterion"), ...}; the trunk
    # (vissl/models/trunks/resnext.py) keeps torchvision's modules under `_feature_blocks.`.
    # extra_scripts/convert_vissl_to_torchvision.py also reads a bare `model_state_dict` trunk.
    if "classy_state_dict" in ckpt:
        model = _dict(_dict(_dict(ckpt["classy_state_dict"].get("base_model")).get("model")))
        state = {f"trunk.{k}": v for k, v in _dict(model.get("trunk")).items()}
        state.update({f"heads.{k}": v for k, v in _dict(model.get("heads")).items()})
    else:
        state = {f"trunk.{k}": v for k, v in ckpt["model_state_dict"].items()}
    networks = {"query": Network(state, "trunk._feature_blocks.")}
    # The momentum network is an attribute of the loss, set by its hook (moco_hooks.py:
    # moco_encoder, byol_hooks.py: target_network, dino_hooks.py: momentum_teacher,
    # swav_momentum_hooks.py: momentum_encoder), so it is saved in the loss's state dict.
    loss = _dict(ckpt.get("loss", ckpt.get("criterion")))
    owners = sorted(
        {
            k.split(".trunk._feature_blocks.")[0]
            for k in loss
            if ".trunk._feature_blocks.layer1." in k
        }
    )
    if owners:
        networks["key"] = Network(loss, f"{owners[0]}.trunk._feature_blocks.")
    return networks


def _is_dino(ckpt: dict) -> bool:
    return isinstance(ckpt.get("student"), dict) and isinstance(ckpt.get("teacher"), dict)


def _dino(ckpt: dict) -> dict:
    # dino main_dino.py saves {"student", "teacher", "optimizer", "epoch", "args", "dino_loss"};
    # both are MultiCropWrapper(backbone without fc, DINOHead), DDP-wrapped (`module.`) when the
    # backbone has BatchNorm (ResNets), the teacher bare otherwise (ViTs).
    return {
        role: Network(
            ckpt[name],
            _first_prefix(ckpt[name], ("module.backbone.", "backbone.")) or "module.backbone.",
        )
        for role, name in (("query", "student"), ("key", "teacher"))
    }


def _is_solo_learn(ckpt: dict) -> bool:
    return (
        "pytorch-lightning_version" in ckpt
        and _first_prefix(_state_dict(ckpt), ("backbone.", "encoder.")) is not None
    )


def _solo_learn(ckpt: dict) -> dict:
    # solo/methods/base.py: BaseMethod.backbone (torchvision ResNet, fc = Identity), classifier,
    # each method's projector / predictor; BaseMomentumMethod adds momentum_backbone (and
    # momentum_projector, momentum_classifier). Before 2022-07 ("Improve backbones", #273) the
    # backbone was called `encoder`.
    state = _state_dict(ckpt)
    query = _first_prefix(state, ("backbone.", "encoder."))
    networks = {"query": Network(state, query)}
    key = _first_prefix(state, (f"momentum_{query}",))
    if key:
        networks["key"] = Network(state, key)
    return networks


def _is_mmselfsup(ckpt: dict) -> bool:
    return isinstance(ckpt.get("meta"), dict) and _has_backbone(_state_dict(ckpt), "backbone.")


def _mmselfsup(ckpt: dict) -> dict:
    # mmcv's save_checkpoint writes {"meta", "state_dict", "optimizer"}; OpenSelfSup / mmselfsup
    # 0.x algorithms alias `self.backbone` to the online network's first module, so `backbone.`
    # holds it; BYOL's target is nn.Sequential(backbone, neck) `target_net`, MoCo's `encoder_k`.
    # From 1.x (mmengine) the momentum network is an ExponentialMovingAverage / CosineEMA of that
    # Sequential, which keeps it as `.module` beside a `steps` buffer; MoCo v3's is
    # `momentum_encoder`.
    state = _state_dict(ckpt)
    networks = {"query": Network(state, "backbone.")}
    key = _first_prefix(
        state,
        (
            "target_net.0.",
            "encoder_k.0.",
            "target_net.module.0.",
            "encoder_k.module.0.",
            "momentum_encoder.module.0.",
        ),
    )
    if key:
        networks["key"] = Network(state, key)
    return networks


def _is_moco(ckpt: dict) -> bool:
    return any("encoder_q." in k for k in _state_dict(ckpt))


def _moco(ckpt: dict) -> dict:
    state = _state_dict(ckpt)
    base = next(p for p in ("module.encoder_", "encoder_") if any(k.startswith(p) for k in state))
    return {"query": Network(state, base + "q."), "key": Network(state, base + "k.")}


def _is_moco_v3(ckpt: dict) -> bool:
    return _first_prefix(_state_dict(ckpt), ("module.base_encoder.", "base_encoder.")) is not None


def _moco_v3(ckpt: dict) -> dict:
    # moco-v3 moco/builder.py: base_encoder and momentum_encoder are torchvision ResNets whose fc
    # is the projection MLP, beside `predictor`; main_moco.py saves {"epoch", "arch", "state_dict"
    # (DDP: `module.`), "optimizer", "scaler"}.
    state = _state_dict(ckpt)
    wrap = "module." if _has_backbone(state, "module.base_encoder.") else ""
    return {
        "query": Network(state, wrap + "base_encoder."),
        "key": Network(state, wrap + "momentum_encoder."),
    }


def _is_simsiam(ckpt: dict) -> bool:
    state = _state_dict(ckpt)
    return any(
        _has_backbone(state, w + "encoder.") and any(k.startswith(w + "predictor.") for k in state)
        for w in ("module.", "")
    )


def _simsiam(ckpt: dict) -> dict:
    # simsiam/builder.py: `encoder` is a torchvision ResNet whose fc is the 3-layer projector,
    # `predictor` beside it; main_simsiam.py saves {"epoch", "arch", "state_dict", "optimizer"}.
    state = _state_dict(ckpt)
    return {"query": Network(state, _first_prefix(state, ("module.encoder.", "encoder.")))}


def _is_insdis(ckpt: dict) -> bool:
    return "lemniscate" in ckpt and _first_prefix(_state_dict(ckpt), ("module.", "")) is not None


def _insdis(ckpt: dict) -> dict:
    # lemniscate.pytorch main.py saves {"epoch", "arch", "state_dict" (DataParallel: `module.`,
    # fc = the 128-d embedding), "lemniscate" (the NCEAverage memory bank module), "best_prec1",
    # "optimizer"}.
    state = _state_dict(ckpt)
    return {"query": Network(state, _first_prefix(state, ("module.", "")))}


# yaox12/BYOL-PyTorch model/basic_modules.py: encoder = nn.Sequential(*resnet.children()[:-1]),
# so its modules are numbered: 0 conv1, 1 bn1, (2 relu, 3 maxpool), 4-7 layer1-4, (8 avgpool).
_CHILD_NAMES = {
    "0": "conv1",
    "1": "bn1",
    "4": "layer1",
    "5": "layer2",
    "6": "layer3",
    "7": "layer4",
}


def _torchvision_child_name(name: str) -> str | None:
    index, _, rest = name.partition(".")
    return f"{_CHILD_NAMES[index]}.{rest}" if index in _CHILD_NAMES else None


def _is_byol(ckpt: dict) -> bool:
    return any(
        k.startswith(("module.online_network.encoder.4.", "online_network.encoder.4."))
        for k in _dict(ckpt.get("model"))
    )


def _byol(ckpt: dict) -> dict:
    # byol_trainer.py saves {"config", "epoch", "steps", "model" (apex DDP: `module.`),
    # "optimizer", "amp"}; BYOLModel holds online_network, target_network, predictor.
    state = ckpt["model"]
    wrap = "module." if any(k.startswith("module.online_network.") for k in state) else ""
    return {
        role: Network(state, f"{wrap}{name}.encoder.", _torchvision_child_name)
        for role, name in (("query", "online_network"), ("key", "target_network"))
    }


def _is_pycontrast(ckpt: dict) -> bool:
    return any(k.startswith(("module.encoder.", "encoder.")) for k in _dict(ckpt.get("model")))


def _pycontrast(ckpt: dict) -> dict:
    networks = {}
    for role, name in (("query", "model"), ("key", "model_ema")):
        if isinstance(ckpt.get(name), dict):
            state = ckpt[name]
            networks[role] = Network(
                state, _first_prefix(state, ("module.encoder.", "encoder.")) or "encoder."
            )
    return networks


def _swav_state(ckpt: dict) -> dict:
    return _state_dict(ckpt) or ckpt


def _is_swav(ckpt: dict) -> bool:
    state = _swav_state(ckpt)
    wrap = _first_prefix(state, ("module.", ""))
    return wrap is not None and any(
        isinstance(k, str) and k.startswith((wrap + "prototypes.", wrap + "projection_head."))
        for k in state
    )


def _swav(ckpt: dict) -> dict:
    # swav src/resnet50.py: torchvision's trunk (conv1 padding 2 after a ConstantPad2d(1): the
    # same weights) plus projection_head and prototypes (MultiPrototypes: prototypes.prototypes<i>);
    # main_swav.py saves {"epoch", "state_dict" (DDP: `module.`), "optimizer"}, the model zoo's
    # swav_800ep_pretrain.pth.tar is the bare `module.` state dict (hubconf.py strips it).
    state = _swav_state(ckpt)
    return {"query": Network(state, _first_prefix(state, ("module.", "")))}


def _is_simclr(ckpt: dict) -> bool:
    converted = (
        set(ckpt) == {"state_dict"}
        and _has_backbone(_state_dict(ckpt), "")
        and "fc.weight" in _state_dict(ckpt)
    )
    return converted or (
        _has_backbone(ckpt, "encoder.")
        and any(isinstance(k, str) and k.startswith("projector.") for k in ckpt)
    )


def _simclr(ckpt: dict) -> dict:
    # tonylins/simclr-converter convert.py saves {"state_dict": resnet50x{1,2,4}().state_dict()}
    # (torchvision names, fc = the supervised head of the TF release); Spijkervet/SimCLR saves the
    # bare SimCLR module: `encoder.` (fc = Identity) and `projector.` (two bias-free Linears).
    if "state_dict" in ckpt:
        return {"query": Network(ckpt["state_dict"], "")}
    return {"query": Network(ckpt, "encoder.")}


def _torchvision_state(ckpt: dict) -> dict:
    return (
        _state_dict(ckpt) if _first_prefix(_state_dict(ckpt), ("module.", "")) is not None else ckpt
    )


def _is_torchvision(ckpt: dict) -> bool:
    return _first_prefix(_torchvision_state(ckpt), ("module.", "")) is not None


def _torchvision(ckpt: dict) -> dict:
    state = _torchvision_state(ckpt)
    wrap = "module." if all(str(k).startswith("module.") for k in state) else ""
    return {"query": Network(state, wrap)}


# Where a Detectron2 model (a training checkpoint's "model") keeps its ResNet: FPN's bottom-up
# path, C4's backbone and, for C4, res5 in the ROI heads.
DETECTRON2_RESNET_PREFIXES = ("backbone.bottom_up.", "backbone.", "roi_heads.")


def detectron2_resnet(model: dict) -> tuple[dict, list[str]]:
    """A Detectron2 model's ResNet weights under a backbone file's names (stem.*, res2-5.*), and
    the keys left out (FPN, RPN, heads); a backbone file's own keys are kept as they are."""
    kept, dropped = {}, []
    for key, value in model.items():
        for prefix in ("", *DETECTRON2_RESNET_PREFIXES):
            if key.startswith(prefix) and key[len(prefix) :].startswith(("stem.", "res")):
                kept[key[len(prefix) :]] = value
                break
        else:
            dropped.append(key)
    return kept, dropped


def _is_detectron2(ckpt: dict) -> bool:
    """A Detectron2 backbone file, or a Detectron2 training checkpoint (model, iteration)."""
    model = ckpt["model"] if isinstance(ckpt.get("model"), dict) else ckpt
    return any(isinstance(k, str) and k.startswith(("stem.", "res2.")) for k in model) or any(
        isinstance(k, str) and k.startswith(("backbone.bottom_up.stem.", "backbone.stem."))
        for k in model
    )


@dataclass(frozen=True)
class Layout:
    name: str
    matches: Callable[[dict], bool]
    networks: Callable[[dict], dict] | None  # None: not read here (detectron2 passes through)


LAYOUTS = (
    Layout(
        "pretrain", lambda c: str(c.get("format", "")).startswith("infomin-det/pretrain"), _pretrain
    ),
    Layout("vissl", _is_vissl, _vissl),
    Layout("dino", _is_dino, _dino),
    Layout("solo-learn", _is_solo_learn, _solo_learn),
    Layout("mmselfsup", _is_mmselfsup, _mmselfsup),
    Layout("moco", _is_moco, _moco),
    Layout("moco-v3", _is_moco_v3, _moco_v3),
    Layout("simsiam", _is_simsiam, _simsiam),
    Layout("insdis", _is_insdis, _insdis),
    Layout("byol", _is_byol, _byol),
    Layout("pycontrast", _is_pycontrast, _pycontrast),
    Layout("swav", _is_swav, _swav),
    Layout("simclr", _is_simclr, _simclr),
    Layout("torchvision", _is_torchvision, _torchvision),
    Layout("detectron2", _is_detectron2, None),
)
FORMATS = tuple(layout.name for layout in LAYOUTS)
_BY_NAME = {layout.name: layout for layout in LAYOUTS}


def detect_format(ckpt) -> str:
    if not isinstance(ckpt, dict):
        raise ConversionError(f"holds a {type(ckpt).__name__}, not a dict of weights")
    for layout in LAYOUTS:
        if layout.matches(ckpt):
            return layout.name
    raise ConversionError(
        "unknown checkpoint layout (top-level keys: "
        f"{', '.join(sorted(map(str, ckpt))[:8])}); "
        f"known formats: {', '.join(FORMATS)}"
    )


def read_backbone(ckpt: dict, fmt: str, encoder: str = "query") -> tuple[dict, list[str]]:
    """Returns (backbone in torchvision naming, the source keys left out). `encoder` "key" reads
    the momentum encoder / teacher / target network of the formats that have one."""
    layout = _BY_NAME.get(fmt)
    if layout is None or layout.networks is None:
        raise ConversionError(f"format {fmt!r} cannot be read as a torchvision backbone")
    if not layout.matches(ckpt):
        raise ConversionError(
            f"is not a {fmt} checkpoint (top-level keys: {', '.join(sorted(map(str, ckpt))[:8])})"
        )
    networks = layout.networks(ckpt)
    if encoder not in networks:
        raise ConversionError(
            f"this {fmt} checkpoint has no momentum encoder, teacher or "
            f"target network (--encoder {encoder})"
        )
    return _take_backbone(networks[encoder])


class _Unresolved:
    """Stands in for a class a pickle names that cannot be imported here (e.g. lemniscate's
    lib.NCEAverage memory bank, pickled whole into its checkpoints): its state is kept, unused."""

    def __init__(self, *args, **kwargs) -> None:
        self.args = args

    def __setstate__(self, state) -> None:
        self.state = state


class _TolerantUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (_Unresolved,), {"__module__": module})


# torch.load's pickle_module: a module with Unpickler and load (the legacy format's header).
_TOLERANT_PICKLE = types.ModuleType("tolerant_pickle")
_TOLERANT_PICKLE.Unpickler = _TolerantUnpickler
_TOLERANT_PICKLE.load = lambda f, **kwargs: _TolerantUnpickler(f, **kwargs).load()


def load_any(path: str):
    if not os.path.isfile(path):
        raise ConversionError("no such file")
    try:
        if path.endswith(".pkl"):
            with open(path, "rb") as f:
                return pickle.load(f, encoding="latin1")
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except (ImportError, AttributeError):
            # Objects of the training code pickled beside the weights (a memory bank, a config
            # class) need not be importable to read the weights.
            return torch.load(
                path, map_location="cpu", weights_only=False, pickle_module=_TOLERANT_PICKLE
            )
    except Exception as err:
        raise ConversionError(f"cannot be read ({type(err).__name__}: {err})") from None
