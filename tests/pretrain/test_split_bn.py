"""Shuffle-BN in one process: SplitBatchNorm2d is BatchNorm2d per group, and the MoCo model built
for a one-process run uses it with the keys permuted across groups."""

import pytest
import torch
import torch.nn as nn

from pretrain.config import load_cfg
from pretrain.models.moco import build_moco
from pretrain.models.split_bn import SplitBatchNorm2d, bn_splits


def split_and_reference(splits: int, channels: int = 5):
    torch.manual_seed(0)
    split = SplitBatchNorm2d(channels, splits)
    with torch.no_grad():
        split.weight.uniform_(0.5, 1.5)
        split.bias.uniform_(-0.5, 0.5)
    references = [nn.BatchNorm2d(channels) for _ in range(splits)]
    for reference in references:
        reference.load_state_dict(split.state_dict())
    return split, references


@pytest.mark.parametrize("channels_last", [False, True])
def test_training_output_gradient_and_running_stats_are_batch_norm_per_group(channels_last):
    split, references = split_and_reference(splits=3)
    x = torch.randn(12, 5, 7, 6) * 3 + 1
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    out = split(x)
    # Group g holds the images s with s mod 3 == g (MoCo's CIFAR-10 demo's grouping).
    expected = torch.empty_like(out)
    for g, bn in enumerate(references):
        expected[g::3] = bn(x[g::3])
    assert torch.allclose(out, expected, atol=1e-5)
    weights = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), x)
    assert torch.allclose(grad, expected_grad, atol=1e-5)
    # Running statistics: the average of what each group's BN would have tracked.
    for name in ("running_mean", "running_var"):
        per_group = torch.stack([getattr(bn, name) for bn in references]).mean(dim=0)
        assert torch.allclose(getattr(split, name), per_group, atol=1e-6), name
    assert split.num_batches_tracked.item() == 1


def test_eval_mode_is_plain_batch_norm_and_the_state_dict_is_batch_norms():
    split, (reference, *_) = split_and_reference(splits=2)
    split(torch.randn(8, 5, 4, 4))  # move the running statistics off their initial values
    reference.load_state_dict(split.state_dict())
    split.eval(), reference.eval()
    x = torch.randn(3, 5, 4, 4)  # any batch size once the statistics are fixed
    assert torch.equal(split(x), reference(x))
    assert split.state_dict().keys() == nn.BatchNorm2d(5).state_dict().keys()


def test_a_batch_that_does_not_split_evenly_is_refused_by_name():
    split, _ = split_and_reference(splits=4)
    with pytest.raises(ValueError, match="MODEL.BN_SPLITS"):
        split(torch.randn(6, 5, 4, 4))


@pytest.mark.parametrize(
    "requested,batch,world,expected",
    [
        (0, 256, 1, 8),  # one GPU with the reference batch: MoCo's 8 groups of 32
        (0, 64, 1, 4),  # the demo: groups of 16 rather than 8 groups of 8
        (0, 16, 1, 2),  # small batches still get 2 groups, or nothing is shuffled
        (0, 32, 8, 1),  # 8 processes: the shuffle across them is MoCo's own
        (0, 128, 2, 4),  # 2 processes x 4 groups = 8
        (0, 15, 1, 1),  # odd: no equal groups exist
        (3, 12, 1, 3),  # an explicit value is kept
    ],
)
def test_the_number_of_groups_follows_mocos_eight(requested, batch, world, expected):
    assert bn_splits(requested, batch, world) == expected


def test_an_explicit_split_that_does_not_divide_the_batch_is_refused():
    with pytest.raises(ValueError, match="MODEL.BN_SPLITS 3"):
        bn_splits(3, 16, 1)


def tiny_moco(*opts):
    cfg = load_cfg(
        opts=[
            "MODEL.ARCH",
            "resnet18",
            "MODEL.QUEUE_SIZE",
            "16",
            "MODEL.FEAT_DIM",
            "4",
            "MODEL.HEAD_HIDDEN_DIM",
            "16",
            "SOLVER.BATCH_SIZE",
            "8",
            *opts,
        ]
    )
    torch.manual_seed(0)
    return build_moco(cfg)


def test_a_one_process_model_splits_both_encoders_and_keeps_the_checkpoint_names():
    model = tiny_moco()
    assert model.bn_splits == 2  # 8 images: two groups of 4 (bn_splits(0, 8, 1))
    for encoder in (model.query_encoder, model.key_encoder):
        norms = [m for m in encoder.modules() if isinstance(m, nn.BatchNorm2d)]
        assert norms and all(isinstance(m, SplitBatchNorm2d) and m.splits == 2 for m in norms)
    plain = tiny_moco("MODEL.SHUFFLE_BN", "False")
    assert plain.bn_splits == 1
    assert not any(isinstance(m, SplitBatchNorm2d) for m in plain.modules())
    assert model.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(model.state_dict())  # checkpoints load either way


def test_sync_bn_with_a_queue_warns_of_the_leak_and_does_not_split(capsys):
    model = tiny_moco("MODEL.SYNC_BN", "True")
    assert model.bn_splits == 1 and not model.shuffle_bn
    assert "warning: MODEL.SYNC_BN" in capsys.readouterr().out
    tiny_moco()
    assert "warning" not in capsys.readouterr().out


def test_keys_are_encoded_in_shuffled_groups_and_returned_in_input_order():
    model = tiny_moco()
    images = torch.randn(8, 3, 32, 32)
    torch.manual_seed(1)
    keys = model.encode_keys(images)
    torch.manual_seed(1)
    order = torch.randperm(8)
    with torch.no_grad():
        in_shuffled_groups = model.key_encoder(images[order])
        in_input_groups = model.key_encoder(images)
    assert torch.allclose(keys, in_shuffled_groups[torch.argsort(order)], atol=1e-6)
    # Each key's statistics came from other images than its query's group: the keys differ from
    # the unshuffled encoding, image by image.
    assert not torch.allclose(keys, in_input_groups, atol=1e-3)
    # In eval mode there are no batch statistics: the shuffle changes nothing.
    model.key_encoder.eval()
    with torch.no_grad():
        assert torch.allclose(model.encode_keys(images), model.key_encoder(images), atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_the_gpu_in_bf16_channels_last_it_matches_the_cpu_in_fp32():
    """The training step's setting on GPU: bf16 autocast, channels_last (cuDNN's BN per group)."""
    split, _ = split_and_reference(splits=4)
    on_gpu = SplitBatchNorm2d(5, 4).cuda()
    on_gpu.load_state_dict(split.state_dict())
    x = torch.randn(32, 5, 14, 14) * 2 + 1
    expected = split(x)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = on_gpu(x.cuda().bfloat16().to(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert (out.float().cpu() - expected).abs().max() < 0.05  # bf16 input: ~3 significant digits
    for name in ("running_mean", "running_var"):
        assert torch.allclose(getattr(on_gpu, name).cpu(), getattr(split, name), atol=1e-2), name
