"""The min-max of InfoMin's view learning (Sec. 4.2): the approximator f1, f2 maximises I_NCE
between the views of X = g(x) (it minimises the InfoNCE loss); the generator g minimises I_NCE (it
maximises that loss). Semi-supervised, linear classifiers c1, c2 on each view's features are trained
on a labelled subset, and g and c1, c2 minimise their cross-entropy, so the views keep the label
information while sharing less of everything else:

    min_{g,c1,c2} max_{f1,f2}  I_NCE^f(X_1; X_2) + w [CE(c1(f1(X_1)), y) + CE(c2(f2(X_2)), y)]

The classifier terms reach g through the encoders' features, but f1, f2 are stepped by I_NCE only
(the objective above, maximised over f, would otherwise push them to *raise* the cross-entropy).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .approximator import NCEApproximator, i_nce
from ..data.flow import PixelFlow, split_views


@dataclass
class LearnerSettings:
    lr_generator: float = 2e-4  # InfoMin App. B.5
    lr_approximator: float = 6e-4  # InfoMin App. B.5
    # Not stated in the paper. At the approximator's 6e-4 the label accuracy fell to chance while
    # the generator lowered I_NCE; at 3e-3 it rose (docs/results/learned_views_2026-12.md).
    lr_classifier: float = 3e-3
    beta1: float = 0.9  # Adam betas: not stated in the paper, torch's defaults
    beta2: float = 0.999
    classifier_weight: float = 1.0


class ViewLearner(nn.Module):
    """g, the I_NCE approximator, optional classifiers c1, c2, and their three Adam optimisers."""

    def __init__(
        self,
        generator: PixelFlow,
        approximator: NCEApproximator,
        split: int,
        num_classes: int = 0,
        settings: LearnerSettings | None = None,
    ):
        super().__init__()
        self.generator, self.approximator, self.split = generator, approximator, split
        self.settings = settings or LearnerSettings()
        s, betas = self.settings, (self.settings.beta1, self.settings.beta2)
        dim = approximator.feature_dim
        self.classifiers = (
            nn.ModuleList(nn.Linear(dim, num_classes) for _ in range(2)) if num_classes else None
        )
        adam = torch.optim.Adam
        self.opt_generator = adam(generator.parameters(), s.lr_generator, betas)
        self.opt_approximator = adam(approximator.parameters(), s.lr_approximator, betas)
        self.opt_classifier = (
            adam(self.classifiers.parameters(), s.lr_classifier, betas)
            if self.classifiers is not None
            else None
        )

    def views(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return split_views(self.generator(images), self.split)

    def _classification(self, images: torch.Tensor, labels: torch.Tensor, detach_views: bool):
        v1, v2 = self.views(images)
        if detach_views:
            v1, v2 = v1.detach(), v2.detach()
        _, h1, h2 = self.approximator(v1, v2)
        logits = (self.classifiers[0](h1), self.classifiers[1](h2))
        return sum(F.cross_entropy(view_logits, labels) for view_logits in logits), logits

    def approximator_step(self, images: torch.Tensor) -> float:
        """One Adam step of f1, f2 on the InfoNCE loss of g's (fixed) views; returns that loss."""
        with torch.no_grad():
            v1, v2 = self.views(images)
        loss, _, _ = self.approximator(v1, v2)
        self.opt_approximator.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_approximator.step()
        return loss.item()

    def generator_step(
        self,
        images: torch.Tensor,
        labelled: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        update_generator: bool = True,
    ) -> dict:
        """One Adam step of g (raising the InfoNCE loss, i.e. lowering I_NCE) and of c1, c2 (and g)
        on the labelled cross-entropy; f1, f2 are held fixed. With update_generator False only the
        classifiers learn, on views of the current g (the warm-up)."""
        out, objective = {}, None
        self.approximator.requires_grad_(False)
        try:
            if update_generator:
                loss, _, _ = self.approximator(*self.views(images))
                objective = -loss  # g minimises I_NCE = log N - loss
                out["nce_loss"] = loss.item()
            if self.classifiers is not None and labelled is not None:
                ce, _ = self._classification(labelled, labels, detach_views=not update_generator)
                weighted = self.settings.classifier_weight * ce
                objective = weighted if objective is None else objective + weighted
                out["ce"] = ce.item()
            if objective is None:
                return out
            self.opt_generator.zero_grad(set_to_none=True)
            if self.opt_classifier is not None:
                self.opt_classifier.zero_grad(set_to_none=True)
            objective.backward()
            if update_generator:
                self.opt_generator.step()
            if self.opt_classifier is not None and "ce" in out:
                self.opt_classifier.step()
        finally:
            self.approximator.requires_grad_(True)
        return out

    @torch.no_grad()
    def nce_loss(self, images: torch.Tensor) -> float:
        return self.approximator(*self.views(images))[0].item()

    @torch.no_grad()
    def evaluate(
        self,
        images: torch.Tensor,
        labelled: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> dict:
        """InfoNCE loss and I_NCE (nats) on `images` as one batch; with labels, the classifier
        terms' top-1 accuracy (%) on each view."""
        loss = self.nce_loss(images)
        out = {"nce_loss": loss, "i_nce": i_nce(loss, len(images))}
        if self.classifiers is not None and labelled is not None:
            _, logits = self._classification(labelled, labels, detach_views=True)
            for i, view_logits in enumerate(logits, 1):
                out[f"acc{i}"] = 100.0 * (view_logits.argmax(1) == labels).float().mean().item()
        return out

    def full_state(self) -> dict:
        state = {
            "model": self.state_dict(),
            "settings": asdict(self.settings),
            "opt_generator": self.opt_generator.state_dict(),
            "opt_approximator": self.opt_approximator.state_dict(),
        }
        if self.opt_classifier is not None:
            state["opt_classifier"] = self.opt_classifier.state_dict()
        return state

    def load_full_state(self, state: dict) -> None:
        self.load_state_dict(state["model"])
        self.opt_generator.load_state_dict(state["opt_generator"])
        self.opt_approximator.load_state_dict(state["opt_approximator"])
        if self.opt_classifier is not None:
            self.opt_classifier.load_state_dict(state["opt_classifier"])
