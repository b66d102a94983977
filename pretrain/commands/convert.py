"""Export a pretrained backbone as Detectron2 weights.

    python tools/convert.py INPUT OUTPUT.pkl [--format auto|FORMAT] [--encoder query|key]
                            [--verify CONFIG] [--force]

Keeps the backbone only (stem, res2-res5, BN statistics) and prints what it kept and dropped.
Formats (--format auto detects which; pretrain/formats.py says where each keeps its backbone):
  pretrain     this project's tools/pretrain.py checkpoints
  moco         facebookresearch/moco (MoCo v1/v2)       moco-v3    facebookresearch/moco-v3
  simsiam      facebookresearch/simsiam                 swav       facebookresearch/swav
  dino         facebookresearch/dino full checkpoint    insdis     zhirongw/lemniscate.pytorch
  simclr       tonylins/simclr-converter, Spijkervet/SimCLR
  byol         yaox12/BYOL-PyTorch                      pycontrast HobbitLong/PyContrast
  vissl        facebookresearch/vissl (its model zoo: PIRL, InsDis, SimCLR, SwAV, MoCo, ...)
  solo-learn   vturrisi/solo-learn (SimCLR, BYOL, ...)  mmselfsup  OpenSelfSup / mmselfsup 0.x
  torchvision  a torchvision state dict (also swav's torch.hub and dino's backbone-only files)
  detectron2   a Detectron2 .pkl (passed through)
--encoder key exports the momentum encoder (moco, moco-v3, pycontrast, mmselfsup, solo-learn,
vissl), the teacher (dino) or the target network (byol) instead.
"""

import argparse

from detection.convert import FORMATS, ConversionError, convert
from pretrain.common.cli import run_entry_point
from pretrain.common.errors import CheckpointError


def group_keys(keys) -> str:
    """'key_encoder.backbone.* (120), query_encoder.head.* (4), queue, 62 num_batches_tracked'."""
    counts, tracked = {}, 0
    for key in keys:
        if key.endswith("num_batches_tracked"):
            tracked += 1
            continue
        parts = key.split(".")
        depth = 3 if parts[0] == "module" else 2
        group = ".".join(parts[:depth]) + (".*" if len(parts) > depth else "")
        counts[group] = counts.get(group, 0) + 1
    shown = [f"{g} ({n})" if g.endswith("*") else g for g, n in counts.items()]
    return ", ".join(shown + ([f"{tracked} num_batches_tracked"] if tracked else []))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument(
        "--format",
        default="auto",
        choices=("auto",) + FORMATS,
        metavar="FORMAT",
        help="auto (the default) or one of the formats above",
    )
    parser.add_argument(
        "--encoder",
        default="query",
        choices=("query", "key"),
        help="which network of a checkpoint that has two (key = the momentum "
        "encoder, teacher or target network)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite OUTPUT")
    parser.add_argument(
        "--verify",
        default="",
        metavar="CONFIG",
        help="a Detectron2 config: write OUTPUT only if its model loads every "
        "backbone tensor from it, unchanged",
    )
    args = parser.parse_args(argv)
    try:
        summary = convert(
            args.input, args.output, args.format, args.encoder, args.force, args.verify
        )
    except ConversionError as err:
        raise CheckpointError(f"{args.input}: {err}") from None
    print(f"read {args.input} as {summary['format']} ({args.encoder} encoder)")
    print(f"kept {len(summary['kept'])} backbone tensors (stem, res2-res5, BN statistics)")
    if summary["stem"]:
        print(
            f"stem: {summary['stem']} (Detectron2 needs MODEL.RESNETS.STEM_TYPE {summary['stem']})"
        )
    if summary["dropped"]:
        print(f"dropped {len(summary['dropped'])} keys: {group_keys(summary['dropped'])}")
    if summary["verified"]:
        print(f"verified: {args.verify} loads all {summary['verified']} backbone tensors unchanged")
    print(f"wrote {args.output}")
    return 0


def entry_point() -> None:
    run_entry_point(main)


if __name__ == "__main__":
    entry_point()
