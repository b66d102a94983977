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
