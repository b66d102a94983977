"""Learned views (InfoMin Sec. 4.2): the pixel-wise invertible flow, the I_NCE approximator, the
direction of each side's step in the min-max, bit-exact resume, and the frozen-generator views."""

import math
import os
import signal

import numpy as np
import pytest
import torch

from pretrain.views_learned import (
    GeneratorFileError,
    ImageBank,
    LearnedViews,
    NCEApproximator,
    PixelFlow,
    Schedule,
    ViewLearner,
    load_generator,
    save_generator,
    split_views,
    symmetric_info_nce,
    train_views,
)
from pretrain.data.flow import FlowConfigError


def _scrambled(kind: str, seed: int = 0, blocks: int = 4, hidden: int = 8) -> PixelFlow:
    """A flow whose blocks are not the identity (the real init zeroes each block's last layer)."""
    torch.manual_seed(seed)
    flow = PixelFlow(kind, blocks, hidden)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(0.5 * torch.randn_like(p))
    return flow


@pytest.fixture(scope="module")
def cifar_bank(cifar10):
    return ImageBank.from_folder(str(cifar10 / "test"), 16, limit=96, seed=0, labelled=True)


@pytest.mark.parametrize("kind", ["vp", "nvp"])
def test_flow_is_invertible(kind, cifar_bank):
    flow = _scrambled(kind)
    x, _ = cifar_bank.head(32)
    y = flow(x)
    assert (y - x).abs().max() > 0.1  # g is not the identity here, so the check can fail
    assert torch.allclose(flow.inverse(y), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["vp", "nvp"])
def test_flow_is_pixel_wise(kind, cifar_bank):
    flow = _scrambled(kind, seed=1)
    x, _ = cifar_bank.head(2)
    changed = x.clone()
    changed[:, :, 5, 7] += torch.tensor([0.7, -0.4, 0.3]).view(1, 3)
    diff = (flow(changed) - flow(x)).abs().amax(dim=1)
    assert diff[:, 5, 7].min() > 1e-3
    diff[:, 5, 7] = 0
    assert diff.max() == 0


def test_volume_preserving_blocks_have_unit_jacobian_and_nvp_reports_its_log_det():
    pixel = torch.randn(1, 3, 1, 1, dtype=torch.float64)
    for kind in ("vp", "nvp"):
        flow = _scrambled(kind, seed=2).double()
        jac = torch.autograd.functional.jacobian(
            lambda p: flow(p.view(1, 3, 1, 1)).view(3), pixel.view(3)
        )
        log_det = torch.linalg.slogdet(jac).logabsdet.item()
        if kind == "vp":
            assert log_det == pytest.approx(0.0, abs=1e-12)
        else:
            assert abs(log_det) > 1e-3
        assert flow.log_det(pixel).item() == pytest.approx(log_det, abs=1e-10)


def _reference_flow(flow: PixelFlow, x: np.ndarray) -> np.ndarray:
    """InfoMin Fig. 10 written out per pixel in float64: block i keeps channel i mod 3 (X1) and
    moves the other two by t(X1) (vp) or scales them by exp(s(X1)) then shifts (nvp), with s, t an
    MLP 1 -> hidden -> hidden -> outputs (ReLU) that the 1x1 convolutions compute."""
    out = x.astype(np.float64).copy()
    for i, block in enumerate(flow.blocks):
        w = [layer.weight.detach().double().numpy()[:, :, 0, 0] for layer in block.net[::2]]
        b = [layer.bias.detach().double().numpy() for layer in block.net[::2]]
        c = i % 3
        rest = [k for k in range(3) if k != c]
        for n in range(out.shape[0]):
            for r in range(out.shape[2]):
                for q in range(out.shape[3]):
                    h = np.array([out[n, c, r, q]])
                    h = np.maximum(w[0] @ h + b[0], 0)
                    h = np.maximum(w[1] @ h + b[1], 0)
                    h = w[2] @ h + b[2]
                    x2 = out[n, rest, r, q]
                    if flow.kind == "vp":
                        out[n, rest, r, q] = x2 + h
                    else:
                        out[n, rest, r, q] = x2 * np.exp(np.tanh(h[2:])) + h[:2]
    return out


@pytest.mark.parametrize("kind", ["vp", "nvp"])
def test_flow_matches_a_per_pixel_reference_in_float64(kind, cifar_bank):
    flow = _scrambled(kind, seed=3).double()
    x, _ = cifar_bank.head(2)
    x = x[:, :, :4, :4].double()
    np.testing.assert_allclose(
        flow(x).detach().numpy(), _reference_flow(flow, x.numpy()), rtol=0, atol=1e-6
    )


def test_symmetric_info_nce_matches_the_formula_in_float64():
    torch.manual_seed(0)
    z1 = torch.nn.functional.normalize(torch.randn(6, 5, dtype=torch.float64), dim=1)
    z2 = torch.nn.functional.normalize(torch.randn(6, 5, dtype=torch.float64), dim=1)
    s = (z1 @ z2.t()).numpy() / 0.2
    rows = -np.mean([s[i, i] - math.log(np.exp(s[i]).sum()) for i in range(6)])
    cols = -np.mean([s[i, i] - math.log(np.exp(s[:, i]).sum()) for i in range(6)])
    assert symmetric_info_nce(z1, z2, 0.2).item() == pytest.approx((rows + cols) / 2, abs=1e-9)


def test_split_outside_the_channels_is_refused():
    with pytest.raises(FlowConfigError, match="view split 3"):
        split_views(torch.zeros(1, 3, 2, 2), 3)
    with pytest.raises(FlowConfigError, match="generator kind"):
        PixelFlow("glow")


def _learner(kind="nvp", num_classes=10, seed=0) -> ViewLearner:
    torch.manual_seed(seed)
    return ViewLearner(
        PixelFlow(kind, 3, 8), NCEApproximator(1, width=8, embed_dim=16), 1, num_classes
    )


def _params(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_generator_step_raises_the_loss_and_approximator_step_lowers_it(cifar_bank):
    learner = _learner().double()
    x, y = cifar_bank.head(64)
    x = x.double()
    for _ in range(5):  # an approximator that has learnt something, so g has a signal to fight
        learner.approximator_step(x)
    before, approximator = learner.nce_loss(x), _params(learner.approximator)
    learner.generator_step(x)
    after = learner.nce_loss(x)
    assert after > before
    assert all(torch.equal(a, b) for a, b in zip(approximator, _params(learner.approximator)))

    generator = _params(learner.generator)
    learner.approximator_step(x)
    assert learner.nce_loss(x) < after
    assert all(torch.equal(a, b) for a, b in zip(generator, _params(learner.generator)))

    ce_before = learner._classification(x, y, detach_views=True)[0].item()
    learner.generator_step(x, x, y)
    assert learner._classification(x, y, detach_views=True)[0].item() < ce_before


def test_warmup_step_trains_the_classifiers_but_leaves_the_generator(cifar_bank):
    learner = _learner()
    x, y = cifar_bank.head(32)
    generator, classifiers = _params(learner.generator), _params(learner.classifiers)
    learner.generator_step(x, x, y, update_generator=False)
    assert all(torch.equal(a, b) for a, b in zip(generator, _params(learner.generator)))
    assert not all(torch.equal(a, b) for a, b in zip(classifiers, _params(learner.classifiers)))


def test_resume_reproduces_an_uninterrupted_run_bit_for_bit(cifar_bank, tmp_path):
    labelled = ImageBank(cifar_bank.images[:48], cifar_bank.labels[:48])
    held = cifar_bank.head(32)
    schedule = dict(
        batch_size=16, labelled_batch_size=8, warmup_steps=1, save_every=2, eval_every=2
    )
    whole = _learner(seed=0)
    history = train_views(
        whole,
        cifar_bank,
        Schedule(4, **schedule),
        str(tmp_path / "whole"),
        labelled,
        (held[0], *held),
        log=lambda _: None,
    )
    train_views(
        _learner(seed=0),
        cifar_bank,
        Schedule(2, **schedule),
        str(tmp_path / "parts"),
        labelled,
        (held[0], *held),
        log=lambda _: None,
    )
    resumed = _learner(seed=7)  # a different init: everything must come from the checkpoint
    lines = []
    history2 = train_views(
        resumed,
        cifar_bank,
        Schedule(4, **schedule),
        str(tmp_path / "parts"),
        labelled,
        (held[0], *held),
        log=lines.append,
    )
    assert lines[0].startswith("resumed from") and "step 2" in lines[0]
    for a, b in zip(whole.full_state()["model"].values(), resumed.full_state()["model"].values()):
        assert torch.equal(a, b)
    assert history == history2


def test_learned_views_from_a_saved_generator(cifar_bank, tmp_path):
    flow = _scrambled("nvp", seed=4)
    save_generator(str(tmp_path / "g.pth"), flow, 1)
    views = LearnedViews.from_file(str(tmp_path / "g.pth"))
    x, _ = cifar_bank.head(4)
    v1, v2 = views(x)
    assert v1.shape == (4, 1, 16, 16) and v2.shape == (4, 2, 16, 16)
    assert torch.equal(torch.cat([v1, v2], dim=1), flow(x).detach())
    s1, s2 = views(x[0])  # one image: the same views, up to the kernels' batch-size rounding
    assert torch.allclose(s1, v1[0], atol=1e-6) and torch.allclose(s2, v2[0], atol=1e-6)
    # The views together keep the whole image: g^-1 of the two channel groups gives it back.
    assert torch.allclose(views.generator.inverse(torch.cat([v1, v2], 1)), x, atol=1e-5)
    torch.save({"state_dict": flow.state_dict()}, tmp_path / "other.pth")
    with pytest.raises(GeneratorFileError, match="not a learned-views generator"):
        load_generator(str(tmp_path / "other.pth"))
    with pytest.raises(GeneratorFileError, match="no such file"):
        load_generator(str(tmp_path / "missing.pth"))


@pytest.mark.slow
def test_learn_views_tool_trains_resumes_and_saves_a_usable_generator(cifar10, tmp_path):
    from tests.conftest import run_tool

    out = tmp_path / "views"
    args = [
        "tools/learn_views.py",
        "--images",
        str(cifar10 / "test"),
        "--limit",
        "64",
        "--labelled",
        str(cifar10 / "test"),
        "--labelled-limit",
        "32",
        "--held-out",
        str(cifar10 / "test"),
        "--held-out-count",
        "32",
        "--size",
        "16",
        "--hidden",
        "8",
        "--width",
        "8",
        "--batch-size",
        "16",
        "--labelled-batch-size",
        "8",
        "--warmup",
        "1",
        "--eval-every",
        "2",
        "--save-every",
        "2",
        "--probe-steps",
        "1",
        "--output-dir",
        str(out),
    ]
    run_tool(*args, "--steps", "2")
    resumed = run_tool(*args, "--steps", "3")
    assert "resumed from" in resumed.stdout and "probe" in resumed.stdout
    views = LearnedViews.from_file(str(out / "generator.pth"))
    v1, v2 = views(torch.zeros(3, 16, 16))
    assert v1.shape == (1, 16, 16) and v2.shape == (2, 16, 16)
    saved = torch.load(out / "generator.pth", weights_only=False)
    assert [h["step"] for h in saved["history"]] == [2, 3]
    assert set(saved["probes"]) == {"start", "end"}


def test_a_schedulers_signal_checkpoints_and_the_requeued_run_ends_as_an_uninterrupted_one(
    cifar_bank, tmp_path
):
    """USR2 in the middle of step 3 (of 5, checkpoints every 4): the loop checkpoints at step 3,
    hands the signal on (submitit's handler would requeue), and the rerun resumes there and ends
    in the uninterrupted run's state and history."""
    labelled = ImageBank(cifar_bank.images[:48], cifar_bank.labels[:48])
    held = cifar_bank.head(32)
    schedule = dict(
        batch_size=16, labelled_batch_size=8, warmup_steps=1, save_every=4, eval_every=2
    )
    whole = _learner(seed=0)
    history = train_views(
        whole,
        cifar_bank,
        Schedule(5, **schedule),
        str(tmp_path / "whole"),
        labelled,
        (held[0], *held),
        log=lambda _: None,
    )
    stopped, handed_over = _learner(seed=0), []
    real_step, calls = stopped.approximator_step, []

    def approximator_step(x):  # the signal arrives while step 3 runs
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGUSR2)
        return real_step(x)

    stopped.approximator_step = approximator_step
    previous = signal.signal(signal.SIGUSR2, lambda *_: handed_over.append(True))
    try:
        assert (
            train_views(
                stopped,
                cifar_bank,
                Schedule(5, **schedule),
                str(tmp_path / "parts"),
                labelled,
                (held[0], *held),
                log=lambda _: None,
            )
            is None
        )
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert handed_over == [True] and (tmp_path / "parts" / "checkpoint_0000003.pth").exists()
    resumed, lines = _learner(seed=7), []
    assert (
        train_views(
            resumed,
            cifar_bank,
            Schedule(5, **schedule),
            str(tmp_path / "parts"),
            labelled,
            (held[0], *held),
            log=lines.append,
        )
        == history
    )
    assert lines[0].startswith("resumed from") and "step 3" in lines[0]
    for a, b in zip(whole.full_state()["model"].values(), resumed.full_state()["model"].values()):
        assert torch.equal(a, b)
