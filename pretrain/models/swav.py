"""SwAV (Caron et al. 2020, "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", Sec. 3.1-3.2, App. A and Algorithm 1): an encoder (backbone + projection MLP,
L2-normalised output z) and K prototypes C (a linear layer without bias whose rows are kept at
unit norm). Per image, the scores z^T C of each of the two large crops are turned into codes q by
three Sinkhorn-Knopp iterations with eps 0.05 (Eq. 3), without gradient, over the global batch;
every other crop (the other large one and all small ones) predicts them by a softmax of its
scores at temperature T (Eq. 2), the "swapped prediction":
    L = 1/2 sum_{i in {1,2}} 1/(V-1) sum_{v != i} mean_b [ -sum_k q_i^(k) log p_v^(k) ],
V the number of crops (the release's normalisation of Eq. 1 / the multi-crop sum). The prototypes
get no update during the first DATA epochs (MODEL.SWAV.FREEZE_PROTOTYPES_EPOCHS, "we freeze the
prototypes during the first epoch", App. A): their gradient is dropped before the optimizer step
(`adjust_gradients`), so neither the step nor weight decay nor momentum moves them.

As in the release, crops of one size go through the backbone as one batch (their BN statistics
span those crops) and all crops' features through the head as one batch. For small batches the
paper adds a queue (App. A.1, MODEL.SWAV.QUEUE_LENGTH): the last stored embeddings of each large
crop join its batch in the Sinkhorn, so that the equipartition spans more samples than a batch.
The encoder is `query_encoder` (moco.Encoder), as in every model of the project, so the kNN
monitor, the readouts and tools/convert.py find its backbone."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common import distributed as du
from ..common.errors import ConfigError
from ..losses import at_least_float32
from ..entropy_reconstruction import DISCRETE, ERObjective, ERPair, entropy
from .method import VIEWS_MULTI_CROP, Method, StepOutput, register_method
from .moco import Encoder


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float, iterations: int) -> torch.Tensor:
    """Codes Q* of Eq. 3 for this process's (B, K) scores, the global batch's (B_all) rows and
    columns balanced: Q = exp(scores / eps), normalised to sum 1, then `iterations` rounds of
    rows (prototypes) to 1/K each and columns (samples) to 1/B_all each; each sample's code is
    returned as a distribution over the K prototypes (rows sum to 1). Row sums and the total are
    summed over all processes."""
    codes = torch.exp(scores / epsilon).t()  # (K, B)
    num_prototypes, total_batch = codes.shape[0], codes.shape[1] * du.get_world_size()
    codes /= du.all_reduce_sum_(codes.sum())
    for _ in range(iterations):
        codes /= du.all_reduce_sum_(codes.sum(dim=1, keepdim=True)) * num_prototypes
        codes /= codes.sum(dim=0, keepdim=True) * total_batch
    return (codes * total_batch).t()


def crop_features(backbone: nn.Module, crops: list[torch.Tensor]) -> torch.Tensor:
    """Backbone features of every crop, in order: consecutive crops of one size go through as one
    batch (as SwAV's and DINO's releases run them), so BN sees the large and the small crops
    apart."""
    features, start = [], 0
    while start < len(crops):
        end = start + 1
        while end < len(crops) and crops[end].shape[-2:] == crops[start].shape[-2:]:
            end += 1
        features.append(backbone(torch.cat(crops[start:end])))
        start = end
    return torch.cat(features)


def agreement_logits(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """For the log's accuracy only (argmax at column 0 counts as right): each row of
    `predictions` with the score of its target's most likely class put first."""
    with torch.no_grad():
        chosen = predictions.gather(1, targets.argmax(dim=1, keepdim=True))
        return torch.cat([chosen, predictions], dim=1)


@register_method("swav")
class SwAV(Method):
    """No negatives: the log prints no I_NCE (its stored features, `feature_queue`, enter the
    codes' Sinkhorn, not a contrast). Term "swapped_prediction".

    SwAV-ER (MODEL.ER.OBJECTIVE; Rodríguez-Gálvez et al. 2023, Sec. 5): the swapped prediction
    is the reconstruction term (discrete support); the loss subtracts w times the discrete
    entropy of the batch-mean prediction softmax(z C^T / T) over the prototypes, averaged over
    the two large crops. The codes keep their Sinkhorn-Knopp equipartition (which is how SwAV
    already keeps H(W) high, the paper's point); the explicit term puts it on the predictions,
    which get gradients. Terms "swapped_prediction" and "entropy"."""

    views = VIEWS_MULTI_CROP
    adjusts_gradients = True
    has_er_variant = True
    er: ERObjective | None = None  # set by from_cfg

    def __init__(
        self,
        encoder: Encoder,
        feat_dim: int,
        num_prototypes: int,
        temperature: float,
        epsilon: float,
        sinkhorn_iterations: int,
        freeze_prototypes_epochs: float,
        queue_length: int = 0,
        queue_start_epoch: float = 0.0,
    ):
        """`queue_length`: stored features per large crop, over all processes (0: none)."""
        super().__init__()
        self.query_encoder = encoder
        self.prototypes = nn.Linear(feat_dim, num_prototypes, bias=False)
        self.temperature, self.epsilon = temperature, epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.freeze_prototypes_epochs = freeze_prototypes_epochs
        self.freeze_prototypes_iters: int | None = None  # start_run
        # Optimizer steps taken: the prototypes' freeze resumes exactly from a checkpoint.
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        # App. A.1: the embeddings of the last batches of each large crop, newest first, filled
        # from queue_start_epoch on and used in the codes' Sinkhorn once full (zeros until then).
        self.register_buffer("feature_queue", torch.zeros(2, queue_length, feat_dim))
        self.queue_start_epoch = queue_start_epoch
        self.queue_start_iter: int | None = None  # start_run

    @classmethod
    def from_cfg(cls, cfg) -> "SwAV":
        m, s = cfg.MODEL, cfg.MODEL.SWAV
        if s.QUEUE_LENGTH % du.get_world_size():
            raise ConfigError(
                f"MODEL.SWAV.QUEUE_LENGTH {s.QUEUE_LENGTH} is not divisible by "
                f"the {du.get_world_size()} processes"
            )
        model = cls(
            Encoder.from_cfg(cfg),
            m.FEAT_DIM,
            s.NUM_PROTOTYPES,
            m.TEMPERATURE,
            s.EPSILON,
            s.SINKHORN_ITERATIONS,
            s.FREEZE_PROTOTYPES_EPOCHS,
            s.QUEUE_LENGTH,
            s.QUEUE_START_EPOCH,
        )
        model.er = ERObjective.from_cfg(cfg)
        return model

    def start_run(self, samples: int, iters_per_epoch: int, total_iters: int) -> None:
        """The prototypes' freeze and the queue's start are counted in epochs."""
        self.freeze_prototypes_iters = round(self.freeze_prototypes_epochs * iters_per_epoch)
        self.queue_start_iter = round(self.queue_start_epoch * iters_per_epoch)

    @torch.no_grad()
    def codes(
        self, crop: int, scores: torch.Tensor, z: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """Sinkhorn codes of large crop `crop`'s batch: with a full queue, computed together with
        the stored features' scores and those rows dropped; then every process's embeddings `z`
        enter the queue (from the start epoch on), the oldest leave. The queue is the global
        batches', the same in every process (so DDP's buffer broadcast keeps it); each process
        puts its own share of it into the Sinkhorn, whose sums span all processes."""
        queue = self.feature_queue[crop]
        if not len(queue):
            return sinkhorn(scores, self.epsilon, self.sinkhorn_iterations)
        if self.queue_start_iter is None:
            raise RuntimeError(
                "SwAV: start_run was never called (the trainer calls it with "
                "the run's epoch length, for MODEL.SWAV.QUEUE_START_EPOCH)"
            )
        share = len(queue) // du.get_world_size()
        mine = queue[du.get_rank() * share : (du.get_rank() + 1) * share]
        stored = mine.to(scores.dtype) @ weight.t() if queue[-1].any() else scores[:0]
        codes = sinkhorn(torch.cat([stored, scores]), self.epsilon, self.sinkhorn_iterations)[
            len(stored) :
        ]
        if int(self.iteration) >= self.queue_start_iter:
            everyone = du.all_gather_cat(z.to(queue.dtype).contiguous())
            queue.copy_(torch.cat([everyone, queue])[: len(queue)])
        return codes

    def after_optimizer_step(self) -> None:
        """No momentum encoder; counts the step just taken."""
        self.iteration += 1

    def before_optimizer_step(self) -> None:
        self.adjust_gradients()

    def adjust_gradients(self) -> None:
        """After backward, before the optimizer step: no update of the prototypes while frozen."""
        if self.freeze_prototypes_iters is None:
            raise RuntimeError(
                "SwAV: start_run was never called (the trainer calls it with "
                "the run's epoch length, for MODEL.SWAV.FREEZE_PROTOTYPES_EPOCHS)"
            )
        if int(self.iteration) < self.freeze_prototypes_iters:
            for p in self.prototypes.parameters():
                p.grad = None

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """C's rows (one per prototype) back to unit norm, before each step's scores (Alg. 1)."""
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def forward(self, large1: torch.Tensor, large2: torch.Tensor, *small: torch.Tensor):
        """The loss, logits of the second large crop's prediction of the first's codes (for the
        log's accuracy: is its most likely prototype the code's), and its one term."""
        self.normalize_prototypes()
        crops = [large1, large2, *small]
        encoder = self.query_encoder
        z = F.normalize(encoder.head(crop_features(encoder.backbone, crops)), dim=1)
        with torch.autocast(device_type=z.device.type, enabled=False):
            z, weight = at_least_float32(z, self.prototypes.weight)
            scores = (z @ weight.t()).view(len(crops), len(large1), -1)  # (V, B, K)
            log_p = F.log_softmax(scores / self.temperature, dim=2)
            batch = len(large1)
            codes = [
                self.codes(
                    i, scores[i].detach(), z[i * batch : (i + 1) * batch].detach(), weight.detach()
                )
                for i in (0, 1)
            ]
            loss = (
                sum(
                    -(codes[i] * log_p[[v for v in range(len(crops)) if v != i]]).sum(dim=2).mean()
                    for i in (0, 1)
                )
                / 2
            )
            terms = {"swapped_prediction": loss.detach()}
            if self.er is not None:
                h = sum(entropy(log_p[i].exp(), DISCRETE, self.er.kappa) for i in (0, 1)) / 2
                terms["entropy"] = h.detach()
                loss = self.er.loss(loss, h)
        return StepOutput(
            loss,
            agreement_logits(scores[1].detach(), codes[0]),
            terms,
            ERPair(DISCRETE, log_p[1].detach().exp(), codes[0]),
        )
