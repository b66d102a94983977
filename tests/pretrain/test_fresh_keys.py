"""The fresh-key probe tells a collapsed model from one that discriminates images, where the
queue accuracy of the training log cannot."""
import math

import pytest
import torch

from pretrain.config import load_cfg
from pretrain.evaluation.fresh_keys import fresh_key_scores
from pretrain.models.moco import build_moco

BATCH = 8


def tiny_moco(*opts):
    cfg = load_cfg(opts=["MODEL.ARCH", "resnet18", "MODEL.QUEUE_SIZE", "32", "MODEL.FEAT_DIM", "16",
                         "MODEL.HEAD_HIDDEN_DIM", "32", "SOLVER.BATCH_SIZE", str(BATCH), *opts])
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
    model = tiny_moco("MODEL.QUEUE_SIZE", "0", "MODEL.BATCH_NEGATIVES", "True",
                      "MODEL.SHUFFLE_BN", "False")
    model.eval()
    x = images()
    scores = fresh_key_scores(model, x, x, BATCH)
    assert math.isnan(scores["queue_acc"]) and math.isnan(scores["queue_loss"])
    assert scores["fresh_acc"] == 1.0


@pytest.mark.parametrize("pipeline", ["cpu", "gpu"])
def test_probe_views_of_a_jigsaw_run_are_its_two_instance_views(shared_data, pipeline):
    """A JigSaw run's pipeline makes a third view (the patches); the probe takes the query and
    key views, made on the CPU whichever pipeline the run trained with."""
    from tools.fresh_keys import probe_views

    cfg = load_cfg("configs/pretrain/demo_R18_infomin_gpu.yaml",
                   ["SOLVER.BATCH_SIZE", "4", "DATA.PIPELINE", pipeline])
    assert cfg.MODEL.JIGSAW.ENABLED
    queries, keys = probe_views(cfg, str(shared_data / "bccd" / "JPEGImages"), 10)
    assert queries.shape == keys.shape == (8, 3, 64, 64)  # rounded down to whole batches
    assert not torch.equal(queries, keys)  # two independent draws of the augmentation
