import pytest
import torch
import torch.nn.functional as F

from pretrain.config import load_cfg
from pretrain.models.moco import build_moco


def small_moco(queue_size=8, momentum=0.9, batch=4, batch_negatives=False):
    cfg = load_cfg(
        opts=[
            "MODEL.ARCH",
            "resnet18",
            "MODEL.QUEUE_SIZE",
            str(queue_size),
            "MODEL.MOMENTUM",
            str(momentum),
            "MODEL.FEAT_DIM",
            "4",
            "MODEL.HEAD_HIDDEN_DIM",
            "16",
            "SOLVER.BATCH_SIZE",
            str(batch),
            "MODEL.BATCH_NEGATIVES",
            str(batch_negatives),
        ]
    )
    torch.manual_seed(0)
    return build_moco(cfg)


def test_queue_holds_the_last_keys_in_order_and_wraps():
    model = small_moco(queue_size=8)
    batches = [F.normalize(torch.randn(3, 4), dim=1) for _ in range(4)]  # 12 keys into 8 slots
    for keys in batches:
        model.enqueue(keys)
    everything = torch.cat(batches)
    # Slots 0-3 were overwritten by keys 8-11, slots 4-7 still hold keys 4-7.
    assert torch.equal(model.queue, torch.cat([everything[8:12], everything[4:8]]))
    assert model.queue_ptr.item() == 12 % 8


def test_momentum_update_is_an_ema_of_the_query_parameters():
    model = small_moco(momentum=0.9)
    with torch.no_grad():
        for p in model.query_encoder.parameters():
            p.add_(torch.randn_like(p))
    q_before = [p.clone() for p in model.query_encoder.parameters()]
    k_before = [p.clone() for p in model.key_encoder.parameters()]
    buffers_before = [b.clone() for b in model.key_encoder.buffers()]
    model.momentum_update()
    for q, k0, k1 in zip(q_before, k_before, model.key_encoder.parameters()):
        assert torch.allclose(k1, 0.9 * k0 + 0.1 * q, atol=1e-6)
    for b0, b1 in zip(buffers_before, model.key_encoder.buffers()):
        assert torch.equal(b0, b1)  # BN running statistics are not averaged in


def test_forward_returns_loss_and_enqueues_keys():
    model = small_moco(queue_size=16)
    images = torch.randn(4, 3, 32, 32)
    loss, logits, terms, _ = model(images, images.flip(3))
    assert logits.shape == (4, 17) and loss.ndim == 0 and terms == {"instance": loss.detach()}
    assert model.queue_ptr.item() == 4
    loss.backward()
    assert all(p.grad is None for p in model.key_encoder.parameters())
    assert model.query_encoder.backbone.conv1.weight.grad is not None


def in_batch_moco(queue_size):
    model = small_moco(queue_size=queue_size, batch_negatives=True)
    images = torch.randn(4, 3, 32, 32)
    loss, logits, _, _ = model(images, images.flip(3))
    return model, loss, logits


def test_batch_negatives_without_a_queue():
    model, loss, logits = in_batch_moco(queue_size=0)
    # the positive, then the 4 keys of the batch with the query's own one masked out
    assert logits.shape == (4, 5) and torch.isfinite(loss)
    assert model.num_negatives(4) == 3
    assert model.queue_ptr.item() == 0  # nothing to keep


def test_batch_negatives_add_to_the_queue():
    model, _, logits = in_batch_moco(queue_size=16)
    assert logits.shape == (4, 1 + 4 + 16)
    assert model.num_negatives(4) == 16 + 3
    assert model.queue_ptr.item() == 4
    assert small_moco(queue_size=16).num_negatives(4) == 16


def test_an_empty_queue_needs_batch_negatives():
    with pytest.raises(ValueError, match="MODEL.BATCH_NEGATIVES"):
        small_moco(queue_size=0)
