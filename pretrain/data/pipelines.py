"""DATA.PIPELINE: where the views are made.

cpu  DataLoader workers decode with PIL and augment with torchvision/timm (views.py), one image
     at a time; the batches arrive as tensors.
gpu  the workers only read bytes (from a folder or a pack, packed.py); the training device
     decodes and augments whole batches (gpu/). Without a GPU it runs on the CPU, in the main
     process, which is only useful to test it.
"""

from __future__ import annotations

import sys

import torch

from ..common.errors import ConfigError
from .inputs import INDEXED_INPUTS, PAIR
from .bad_data import BadImageLog, check_choice
from .images import EncodedImages, ImageViews, collate_encoded, collate_views
from .instances import InstanceViews
from .multi_crop import check_multi_crop
from .view_families import check_view_family
from .views import build_views

PIPELINES = ("cpu", "gpu")
VIEW_SOURCES = ("image", "folder")  # DATA.VIEWS_FROM


def to_device(images: torch.Tensor, device: str) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    if device == "cuda" and images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


class ViewPipeline:
    """dataset + collate_fn for the DataLoader, `views(batch)` -> (device tensors, the (name,
    reason) of images the device could not decode)
    for the training step, and `record_bad(bad)`: what happens to the unreadable files a batch
    met (DATA.ON_BAD_IMAGE)."""

    def __init__(self, cfg, images, device: str, inputs: str = PAIR):
        """`inputs`: what the method's step reads (data/inputs.py; the method contract's
        `views`); a method that takes a sample's index gets one view and the index, after its
        own check of the data settings (models/memory_bank.py check_memory_bank)."""
        self.kind = cfg.DATA.PIPELINE
        if self.kind not in PIPELINES:
            raise ConfigError(f"DATA.PIPELINE {self.kind!r}: expected one of {PIPELINES}")
        if cfg.DATA.VIEWS_FROM not in VIEW_SOURCES:
            raise ConfigError(
                f"DATA.VIEWS_FROM {cfg.DATA.VIEWS_FROM!r}: expected one of {VIEW_SOURCES}"
            )
        if cfg.DATA.VIEWS_FROM == "folder" and self.kind == "gpu":
            raise ConfigError(
                "DATA.VIEWS_FROM folder needs DATA.PIPELINE cpu: the GPU pipeline "
                "makes both views from one image"
            )
        check_view_family(cfg)  # the GPU pipeline makes only the augment family
        with_index = inputs in INDEXED_INPUTS
        check_multi_crop(cfg)  # and no small crops
        if cfg.MODEL.CMC.ENABLED and (self.kind == "gpu" or cfg.DATA.VIEWS_FROM == "folder"):
            raise ConfigError(
                "MODEL.CMC.ENABLED needs DATA.PIPELINE cpu and DATA.VIEWS_FROM "
                "image: CMC's views are the channel groups of one augmented image, "
                "which only the CPU pipeline makes (views.ChannelSplitViews)"
            )
        self.device = device
        self.bad_log = BadImageLog(
            cfg.OUTPUT_DIR, check_choice("DATA.ON_BAD_IMAGE", cfg.DATA.ON_BAD_IMAGE)
        )
        if self.kind == "gpu":
            from .gpu.pipeline import BatchedViews

            if device != "cuda":
                print(
                    "note: DATA.PIPELINE gpu without a GPU: the batched augmentation runs on "
                    "the CPU in the main process",
                    file=sys.stderr,
                )
            self.dataset = EncodedImages(images, seed=cfg.SEED)
            self.collate = collate_encoded
            self.batched_views = BatchedViews(cfg, device)
        elif cfg.DATA.VIEWS_FROM == "folder":
            self.dataset = InstanceViews(images, build_views(cfg, inputs), seed=cfg.SEED)
            self.collate = collate_views
        else:
            self.dataset = ImageViews(
                images, build_views(cfg, inputs), seed=cfg.SEED, with_index=with_index
            )
            self.collate = collate_views

    @property
    def pin_memory(self) -> bool:
        return self.kind == "cpu" and self.device == "cuda"

    def record_bad(self, bad) -> int:
        """Names the batch's unreadable files (a collate's second element) once each in
        OUTPUT_DIR/bad_images.txt, or stops with one line (DATA.ON_BAD_IMAGE error); returns how
        many of them this process had not met before, so the run counts files, not draws."""
        return self.bad_log.add(bad)

    def views(self, batch) -> tuple[list[torch.Tensor], int]:
        if self.kind == "gpu":
            views, undecodable = self.batched_views(*batch)
            return [to_device(v, self.device) for v in views], tuple(undecodable)
        return [to_device(v, self.device) for v in batch], ()
