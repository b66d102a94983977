"""The fresh-key probe tells a collapsed model from one that discriminates images, where the
queue accuracy of the training log cannot."""

import math

import pytest
import torch

from pretrain.config import load_cfg
from pretrain.common.errors import CheckpointError
from pretrain.pretraining import CHECKPOINT_FORMAT
from pretrain.evaluation.fresh_key_probe import COLUMNS, as_json, probe_checkpoints, table
from pretrain.evaluation.fresh_keys import fresh_key_scores
from pretrain.evaluation.mutual_info import heldout_views
from pretrain.models.moco import build_moco

BATCH = 8


def tiny_moco(*opts):
    cfg = load_cfg(
        opts=[
            "MODEL.ARCH",
            "resnet18",
            "MODEL.QUEUE_SIZE",
            "32",
            "MODEL.FEAT_DIM",
            "16",
            "MODEL.HEAD_HIDDEN_DIM",
            "32",
            "SOLVER.BATCH_SIZE",
            str(BATCH),
            *opts,
        ]
    )
    torch.manual_seed(0)
    return build_moco(cfg)


def images(n=2 * BATCH):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_a_collapsed_model_scores_perfectly_on_the_queue_and_at_chance_on_fresh_keys():
    model = tiny_moco()
    for encoder in (model.query_encoder, model.key_encoder):  # one output for every image
        last = encoder.head[-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.constant_(last.bias, 1.0)
    x = images()
    scores = fresh_key_scores(model, x, x.flip(0), BATCH)
    # The random vectors the queue starts with are easy negatives for any shared embedding ...
    assert scores["queue_acc"] == 1.0
    # ... while against the keys of the other images the positive carries no information.
    assert scores["fresh_loss"] == pytest.approx(math.log(len(x)), abs=1e-5)
    assert scores["chance_loss"] == pytest.approx(math.log(len(x)))
    assert scores["query_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert model.training  # left in the mode it was in


def test_identical_views_through_identical_encoders_find_every_positive():
    model = tiny_moco("MODEL.SHUFFLE_BN", "False")  # keys see the same BN batches as queries
    model.eval()
    x = images()
    scores = fresh_key_scores(model, x, x, BATCH)
    assert scores["fresh_acc"] == 1.0
    assert scores["fresh_loss"] < scores["chance_loss"]
    assert scores["query_cosine"] < 1.0
    assert not model.training


def test_pairs_that_are_not_whole_batches_are_refused():
    with pytest.raises(ValueError, match="in whole batches of 8"):
        fresh_key_scores(tiny_moco(), images(12), images(12), BATCH)


def test_a_model_without_a_queue_is_scored_on_fresh_keys_only():
    model = tiny_moco(
        "MODEL.QUEUE_SIZE", "0", "MODEL.BATCH_NEGATIVES", "True", "MODEL.SHUFFLE_BN", "False"
    )
    model.eval()
    x = images()
    scores = fresh_key_scores(model, x, x, BATCH)
    assert math.isnan(scores["queue_acc"]) and math.isnan(scores["queue_loss"])
    assert scores["fresh_acc"] == 1.0


@pytest.mark.parametrize("pipeline", ["cpu", "gpu"])
def test_probe_views_of_a_jigsaw_run_are_its_two_instance_views(shared_data, pipeline):
    """A JigSaw run's pipeline makes a third view (the patches); the probe takes the query and
    key views, made on the CPU whichever pipeline the run trained with."""
    cfg = load_cfg(
        "configs/pretrain/demo_R18_infomin_gpu.yaml",
        ["SOLVER.BATCH_SIZE", "4", "DATA.PIPELINE", pipeline],
    )
    assert cfg.MODEL.JIGSAW.ENABLED
    queries, keys = heldout_views(cfg, str(shared_data / "bccd" / "JPEGImages"), 10)
    assert queries.shape == keys.shape == (8, 3, 64, 64)  # rounded down to whole batches
    assert not torch.equal(queries, keys)  # two independent draws of the augmentation


def test_a_checkpoint_of_the_initial_weights_scores_exactly_as_the_init_row(cifar10, tmp_path):
    """probe_checkpoints rebuilds each model from the config its checkpoint stores and loads its
    weights; the init row is that config's model as training starts it. So a checkpoint of those
    very weights scores the same to the last bit, and one of other weights does not. No queue
    here: its NaN scores are null in JSON."""
    cfg = load_cfg(
        opts=[
            "MODEL.ARCH",
            "resnet18",
            "MODEL.HEAD_HIDDEN_DIM",
            "32",
            "MODEL.QUEUE_SIZE",
            "0",
            "MODEL.BATCH_NEGATIVES",
            "True",
            "DATA.CROP_SIZE",
            "32",
            "SOLVER.BATCH_SIZE",
            str(BATCH),
            "SEED",
            "3",
        ]
    )
    paths = []
    for weights_seed in (cfg.SEED, cfg.SEED + 1):
        torch.manual_seed(weights_seed)
        paths.append(str(tmp_path / f"seed{weights_seed}.pth"))
        torch.save(
            {"format": CHECKPOINT_FORMAT, "cfg": cfg.dump(), "model": build_moco(cfg).state_dict()},
            paths[-1],
        )
    scored = []
    result = probe_checkpoints(
        paths, str(cifar10 / "test"), n=2 * BATCH + 3, with_init=True, on_row=scored.append
    )
    assert scored == result["rows"]
    assert [row["checkpoint"] for row in result["rows"]] == ["init", *paths]
    init, same, other = ([row[column] for column in COLUMNS] for row in result["rows"])
    assert str(same) == str(init) and str(other) != str(init)  # str: NaN equals NaN
    assert result["probe_images"] == 2 * BATCH  # rounded down to whole batches
    assert math.isnan(init[0]) and as_json(result)["rows"][0]["queue_acc"] is None
    assert f"({2 * BATCH} probe images: chance fresh_acc 0.0625;" in table(result)


def test_a_checkpoint_not_written_by_pretraining_is_refused_by_name(cifar10, tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match=f"{path}: not a checkpoint of tools/pretrain.py"):
        probe_checkpoints([str(path)], str(cifar10 / "test"))
