"""Backbone weights from the checkpoints people have, written as a Detectron2 `.pkl`.

Every reader returns the backbone in torchvision naming (conv1, bn1, layer1..4); one renaming then
maps it to Detectron2's (stem, res2..5), the mapping the reference converters use:
    layerN -> res{N+1}, bnK -> convK.norm, downsample.0 -> shortcut, downsample.1 -> shortcut.norm,
    and `stem.` before the stem's conv1 / bn1.
"""
from __future__ import annotations

import os
import pickle
import re

import numpy as np
import torch

FORMATS = ("pretrain", "moco", "pycontrast", "torchvision", "detectron2")
_BACKBONE_KEY = re.compile(r"^(conv1|bn1|layer[1-4])\.")


class ConversionError(Exception):
    """The input cannot be converted; the message names the file and the problem."""


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _torchvision_backbone(state: dict) -> tuple[dict, list[str]]:
    kept = {k: v for k, v in state.items()
            if _BACKBONE_KEY.match(k) and not k.endswith("num_batches_tracked")}
    dropped = sorted(set(state) - set(kept))
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
        backbone, dropped = _torchvision_backbone(_strip(model, prefix))
        return backbone, dropped + sorted(k for k in model if not k.startswith(prefix))
    if fmt == "moco":
        state = ckpt["state_dict"]
        prefix = next(p for p in ("module.encoder_", "encoder_") if any(k.startswith(p)
                                                                      for k in state))
        prefix += {"query": "q.", "key": "k."}[encoder]
        backbone, dropped = _torchvision_backbone(_strip(state, prefix))
        return backbone, dropped + sorted(k for k in state if not k.startswith(prefix))
    if fmt == "pycontrast":
        source = ckpt["model"] if encoder == "query" else ckpt.get("model_ema")
        if source is None:
            raise ConversionError("has no `model_ema` for --encoder key")
        prefix = "module.encoder." if any(k.startswith("module.encoder.") for k in source) \
            else "encoder."
        backbone, dropped = _torchvision_backbone(_strip(source, prefix))
        return backbone, dropped + sorted(k for k in source if not k.startswith(prefix))
    if fmt == "torchvision":
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in ckpt.items()}
        return _torchvision_backbone(state)
    raise ConversionError(f"format {fmt!r} cannot be read as a torchvision backbone")


def to_detectron2_name(key: str) -> str:
    if not key.startswith("layer"):
        key = "stem." + key
    key = re.sub(r"^layer(\d)", lambda m: f"res{int(m.group(1)) + 1}", key)
    key = re.sub(r"\bbn(\d)\b", r"conv\1.norm", key)
    key = key.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")
    return key


def to_detectron2(backbone: dict) -> dict:
    return {to_detectron2_name(k): v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v)
            for k, v in backbone.items()}


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


def write_detectron2_pkl(weights: dict, path: str, author: str) -> None:
    """Atomic: a failure leaves no partial output."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            pickle.dump({"model": weights, "__author__": author, "matching_heuristics": True}, f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def convert(input_path: str, output_path: str, fmt: str = "auto", encoder: str = "query",
            force: bool = False) -> dict:
    """Convert and write; returns a summary {"format", "kept", "dropped"}."""
    if os.path.exists(output_path) and not force:
        raise ConversionError(f"{output_path}: exists (pass --force to overwrite)")
    ckpt = load_any(input_path)
    found = detect_format(ckpt) if fmt == "auto" else fmt
    if found == "detectron2":
        model = ckpt.get("model", ckpt)
        weights = {k: v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v)
                   for k, v in model.items() if not k.endswith("num_batches_tracked")}
        dropped = sorted(k for k in model if k.endswith("num_batches_tracked"))
    else:
        backbone, dropped = read_backbone(ckpt, found, encoder)
        if not backbone:
            raise ConversionError(f"{found} checkpoint holds no backbone weights")
        weights = to_detectron2(backbone)
    write_detectron2_pkl(weights, output_path, author=f"infomin-det convert ({found}, {encoder})")
    return {"format": found, "kept": sorted(weights), "dropped": dropped}
