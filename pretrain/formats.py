"""Read the backbone out of the checkpoints people have, in torchvision naming (conv1, bn1,
layer1..4): this project's pretraining checkpoints (query or momentum encoder), facebookresearch/moco
(`state_dict` with `module.encoder_q.` / `module.encoder_k.`), PyContrast (`model` with
`module.encoder.`, `model_ema` with `encoder.`) and plain torchvision state dicts. Heads, queues,
the other encoder and `num_batches_tracked` are left out and reported."""
from __future__ import annotations

import os
import pickle
import re

import torch

FORMATS = ("pretrain", "moco", "pycontrast", "torchvision", "detectron2")
_BACKBONE_KEY = re.compile(r"^(conv1|bn1|layer[1-4])\.")


class ConversionError(Exception):
    """The input cannot be read as a backbone; the message names the problem."""


def _take_backbone(state: dict, prefix: str) -> tuple[dict, list[str]]:
    """The backbone tensors under `prefix`, renamed without it; and every other key of `state`
    (under its full source name), which is dropped."""
    kept = {}
    for key, value in state.items():
        name = key[len(prefix):]
        if key.startswith(prefix) and _BACKBONE_KEY.match(name) \
                and not name.endswith("num_batches_tracked"):
            kept[name] = value
    dropped = sorted(k for k in state if not (k.startswith(prefix) and k[len(prefix):] in kept))
    return kept, dropped


def detect_format(ckpt) -> str:
    if not isinstance(ckpt, dict):
        raise ConversionError(f"holds a {type(ckpt).__name__}, not a dict of weights")
    if str(ckpt.get("format", "")).startswith("infomin-det/pretrain"):
        return "pretrain"
    if isinstance(ckpt.get("state_dict"), dict) and any(
            "encoder_q." in k for k in ckpt["state_dict"]):
        return "moco"
    if isinstance(ckpt.get("model"), dict) and any(
            k.startswith(("module.encoder.", "encoder.")) for k in ckpt["model"]):
        return "pycontrast"
    if isinstance(ckpt.get("model"), dict) and any(
            k.startswith(("stem.", "res2.")) for k in ckpt["model"]):
        return "detectron2"
    keys = [k[len("module."):] if k.startswith("module.") else k for k in ckpt]
    if any(k.startswith("layer1.") for k in keys):
        return "torchvision"
    if any(k.startswith(("stem.", "res2.")) for k in keys):
        return "detectron2"
    raise ConversionError("unknown checkpoint layout (top-level keys: "
                          f"{', '.join(sorted(map(str, ckpt))[:8])})")


def read_backbone(ckpt: dict, fmt: str, encoder: str = "query") -> tuple[dict, list[str]]:
    """Returns (backbone in torchvision naming, the source keys left out)."""
    if fmt == "pretrain":
        model = ckpt["model"]
        prefix = {"query": "query_encoder.backbone.", "key": "key_encoder.backbone."}[encoder]
        return _take_backbone(model, prefix)
    if fmt == "moco":
        state = ckpt["state_dict"]
        prefix = next(p for p in ("module.encoder_", "encoder_") if any(k.startswith(p)
                                                                      for k in state))
        prefix += {"query": "q.", "key": "k."}[encoder]
        return _take_backbone(state, prefix)
    if fmt == "pycontrast":
        source = ckpt["model"] if encoder == "query" else ckpt.get("model_ema")
        if source is None:
            raise ConversionError("has no `model_ema` for --encoder key")
        prefix = "module.encoder." if any(k.startswith("module.encoder.") for k in source) \
            else "encoder."
        return _take_backbone(source, prefix)
    if fmt == "torchvision":
        prefix = "module." if all(k.startswith("module.") for k in ckpt) else ""
        return _take_backbone(ckpt, prefix)
    raise ConversionError(f"format {fmt!r} cannot be read as a torchvision backbone")


def load_any(path: str):
    if not os.path.isfile(path):
        raise ConversionError("no such file")
    try:
        if path.endswith(".pkl"):
            with open(path, "rb") as f:
                return pickle.load(f, encoding="latin1")
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ConversionError(f"cannot be read ({type(err).__name__}: {err})") from None
