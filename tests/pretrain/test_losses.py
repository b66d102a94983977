import math

import torch
import torch.nn.functional as F

from pretrain.losses import info_nce, mutual_information_bound


def test_info_nce_equals_direct_negative_log_softmax():
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(5, 8, generator=g), dim=1)
    k = F.normalize(torch.randn(5, 8, generator=g), dim=1)
    queue = F.normalize(torch.randn(11, 8, generator=g), dim=1)
    t = 0.15
    loss, logits = info_nce(q, k, queue, t)
    expected = []
    for i in range(5):
        scores = torch.cat([(q[i] @ k[i]).view(1), queue @ q[i]]) / t
        expected.append(-(scores[0] - torch.logsumexp(scores, 0)))
    assert torch.allclose(loss, torch.stack(expected).mean(), atol=1e-6)
    assert logits.shape == (5, 12)


def test_info_nce_sends_no_gradient_into_keys_or_queue():
    q = F.normalize(torch.randn(3, 4), dim=1).requires_grad_()
    k = F.normalize(torch.randn(3, 4), dim=1).requires_grad_()
    queue = F.normalize(torch.randn(6, 4), dim=1).requires_grad_()
    loss, _ = info_nce(q, k, queue, 0.2)
    loss.backward()
    assert q.grad is not None and k.grad is None and queue.grad is None


def test_mutual_information_bound():
    assert mutual_information_bound(1.0, 65536) == math.log(65537) - 1.0


def test_batch_negatives_are_the_other_keys_of_the_global_batch():
    # This process holds rows 3..5 of a 7-key global batch (as rank 1 of ranks holding 3 each
    # would); each query's negatives are the 6 other keys and the queue, never its own key twice.
    g = torch.Generator().manual_seed(1)
    all_keys = F.normalize(torch.randn(7, 8, generator=g), dim=1)
    q = F.normalize(torch.randn(3, 8, generator=g), dim=1)
    k = all_keys[3:6]
    queue = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    t = 0.2
    loss, logits = info_nce(q, k, queue, t, batch_keys=all_keys, offset=3)
    expected = []
    for i in range(3):
        others = torch.cat([all_keys[: 3 + i], all_keys[3 + i + 1 :]])
        scores = torch.cat([(q[i] @ k[i]).view(1), others @ q[i], queue @ q[i]]) / t
        expected.append(-(scores[0] - torch.logsumexp(scores, 0)))
    assert torch.allclose(loss, torch.stack(expected).mean(), atol=1e-6)
    assert logits.shape == (3, 1 + 7 + 4)
    assert all(logits[i, 1 + 3 + i] == float("-inf") for i in range(3))
    assert torch.isfinite(logits).sum() == 3 * (1 + 6 + 4)


def test_batch_negatives_alone_with_an_empty_queue():
    q = F.normalize(torch.randn(4, 8), dim=1).requires_grad_()
    k = F.normalize(torch.randn(4, 8), dim=1)
    loss, logits = info_nce(q, k, torch.zeros(0, 8), 0.2, batch_keys=k)
    assert logits.shape == (4, 5) and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(q.grad).all()


def test_logits_are_float32_under_bf16_autocast():
    # Keys, queue entries and batch keys a small step from the queries: cosines near 1, where
    # bf16 is coarsest (a step of 2^-8 in the cosine, ~0.026 in a logit at T = 0.15).
    g = torch.Generator().manual_seed(2)
    q = F.normalize(torch.randn(4, 64, generator=g), dim=1)
    k = F.normalize(q + 0.05 * torch.randn(4, 64, generator=g), dim=1)
    queue = F.normalize(q.repeat(3, 1) + 0.05 * torch.randn(12, 64, generator=g), dim=1)
    # Under autocast the encoders hand over bf16 embeddings; the queue buffer stays float32.
    q16 = q.bfloat16().requires_grad_()
    k16 = k.bfloat16()
    t = 0.15
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logits = info_nce(q16, k16, queue, t, batch_keys=k16)
        naive = torch.cat([(q16 * k16).sum(dim=1, keepdim=True), q16 @ queue.t()], dim=1) / t
    # The same bf16-rounded inputs, in float32 outside autocast.
    expected_loss, expected = info_nce(
        q16.detach().float(), k16.float(), queue, t, batch_keys=k16.float()
    )
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32
    assert torch.allclose(logits, expected, atol=1e-6, rtol=0)
    assert torch.allclose(loss, expected_loss, atol=1e-6, rtol=0)
    # ... which a bf16 matmul does not give: the check can fail.
    expected_without_batch = torch.cat([expected[:, :1], expected[:, 1 + 4 :]], dim=1)
    assert naive.dtype == torch.bfloat16
    assert (naive.float() - expected_without_batch).abs().max() > 5e-3
    loss.backward()
    assert q16.grad is not None and torch.isfinite(q16.grad).all() and q16.grad.abs().sum() > 0
