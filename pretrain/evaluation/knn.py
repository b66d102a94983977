"""Weighted k-nearest-neighbour readout (Wu et al. 2018, InstDisc): cosine similarity of
L2-normalised backbone features, each of the k neighbours voting exp(similarity / T) for its
class."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .backbone_loading import load_backbone
from .data import eval_transform, labelled_folder
from .readout_checks import require_neighbours

# The ImageNet evaluation crop, where neither the request nor the checkpoint names one.
DEFAULT_CROP = 224


@torch.no_grad()
def extract_features(backbone, dataset, device: str, batch_size: int = 256, num_workers: int = 2):
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    was_training = backbone.training
    backbone.eval()
    features, labels = [], []
    for images, targets in loader:
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            out = backbone(images.to(device, non_blocking=True))
        features.append(F.normalize(out.float(), dim=1))
        labels.append(targets.to(device))
    backbone.train(was_training)
    return torch.cat(features), torch.cat(labels)


@torch.no_grad()
def knn_predict(
    train_features,
    train_labels,
    test_features,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> torch.Tensor:
    predictions = []
    for start in range(0, len(test_features), chunk):
        similarity = test_features[start : start + chunk] @ train_features.t()
        top_sim, top_idx = similarity.topk(min(k, len(train_features)), dim=1)
        votes = torch.zeros(len(top_sim), num_classes, device=top_sim.device)
        votes.scatter_add_(1, train_labels[top_idx], (top_sim / temperature).exp())
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def knn_evaluate(
    backbone,
    train_root: str,
    test_root: str,
    crop_size: int,
    device: str,
    train_limit: int = 0,
    test_limit: int = 0,
    k: int = 200,
    num_workers: int = 2,
    temperature: float = 0.07,
    crop_fraction: float = 0.875,
) -> dict:
    """The kNN classifier on `test_root`, neighbours from `train_root` (a fixed subset of each
    with the limits, the same for every backbone, so two backbones' predictions pair image by
    image). Returns {"top1" (%), "test_images", "predictions", "labels"}: the per-image
    predictions are what a paired test between two backbones needs (evaluation/paired_tests.py)."""
    transform = eval_transform(crop_size, crop_fraction)
    train_set = labelled_folder(train_root, transform, train_limit)
    test_set = labelled_folder(test_root, transform, test_limit)
    require_neighbours(len(train_set), len(test_set), k, train_root, test_root)
    train_f, train_y = extract_features(backbone, train_set, device, num_workers=num_workers)
    test_f, test_y = extract_features(backbone, test_set, device, num_workers=num_workers)
    num_classes = int(train_y.max().item()) + 1
    predicted = knn_predict(train_f, train_y, test_f, num_classes, k, temperature)
    return {
        "top1": (predicted == test_y).float().mean().item() * 100,
        "test_images": len(test_set),
        "predictions": predicted.cpu().tolist(),
        "labels": test_y.cpu().tolist(),
    }


def knn_accuracy(
    backbone,
    train_root: str,
    test_root: str,
    crop_size: int,
    device: str,
    train_limit: int = 0,
    test_limit: int = 0,
    k: int = 200,
    num_workers: int = 2,
    temperature: float = 0.07,
    crop_fraction: float = 0.875,
) -> float:
    """Top-1 accuracy (%) of the kNN classifier on `test_root`, neighbours from `train_root`."""
    return knn_evaluate(
        backbone,
        train_root,
        test_root,
        crop_size,
        device,
        train_limit,
        test_limit,
        k,
        num_workers,
        temperature,
        crop_fraction,
    )["top1"]


def knn_of_config(features, cfg, device: str) -> dict:
    """knn_evaluate of the feature extractor `features` with a pretraining config's EVAL keys
    (the monitor's and the sweep's readout)."""
    ev = cfg.EVAL
    return knn_evaluate(
        features,
        ev.KNN_TRAIN_ROOT,
        ev.KNN_TEST_ROOT,
        cfg.DATA.CROP_SIZE,
        device,
        ev.KNN_TRAIN_LIMIT,
        ev.KNN_TEST_LIMIT,
        ev.KNN_K,
        num_workers=cfg.DATA.NUM_WORKERS,
        temperature=ev.KNN_TEMPERATURE,
        crop_fraction=ev.CROP_FRACTION,
    )


def knn_probe(
    arch: str,
    train_root: str,
    test_root: str,
    checkpoint: str = "",
    crop_size: int = 224,
    encoder: str = "query",
    width: int = 1,
    stem: str = "",
    train_limit: int = 0,
    test_limit: int = 0,
    k: int = 200,
    seed: int = 0,
    num_workers: int = 2,
    temperature: float = 0.07,
    crop_fraction: float = 0.875,
) -> dict:
    """The kNN readout of a backbone from `checkpoint` (any format pretrain.formats reads; ""
    = random init, drawn from `seed`), on the GPU when there is one; `crop_size` 0 takes the
    checkpoint's pretraining crop where it records one, else DEFAULT_CROP. Returns {"top1" (%),
    "test_images", "k", "arch", "checkpoint", "stem" (the one rebuilt), "predictions", "labels"
    (per test image, for paired tests)}."""
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    backbone, _, stem, arch, recorded = load_backbone(arch, checkpoint, encoder, width, stem)
    crop_size = crop_size or recorded or DEFAULT_CROP
    result = knn_evaluate(
        backbone.to(device),
        train_root,
        test_root,
        crop_size,
        device,
        train_limit,
        test_limit,
        k,
        num_workers,
        temperature,
        crop_fraction,
    )
    return {
        **result,
        "k": k,
        "arch": arch,
        "checkpoint": checkpoint,
        "stem": stem,
        "crop": crop_size,
    }
