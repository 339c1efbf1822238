"""Fine-tuning: the encoder and a linear head trained end to end on the labelled split.

Unlike the frozen-feature probes this reads Samples, not embeddings, because the encoder changes.
The encoder is copied; the embedder it came from is left untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from fusion.data.collate import collate_samples
from fusion.data.sample import Sample
from fusion.probe.embedders import FusionEmbedder
from fusion.probe.embedding import Samples, _progress, label_array
from fusion.probe.errors import EmptySubsetError
from fusion.probe.metrics import Task, check_labels, score
from fusion.probe.subsets import Subset

__all__ = ["FineTuneProbe"]


def _samples(dataset: Samples, subset: Subset | None) -> list[Sample]:
    out = []
    for i in range(len(dataset)):  # type: ignore[arg-type]
        s = dataset[i]
        cut = subset.apply(s) if subset is not None else s
        if cut is not None:
            out.append(cut)
    if not out:
        raise EmptySubsetError(
            f"no sample carries any sensor of subset {subset.name if subset else '(all)'}"
        )
    return out


class FineTuneProbe:
    """Train a copy of a fusion encoder with a linear head on top.

    Args:
        task: the task.
        epochs: passes over the training samples.
        lr: learning rate of the encoder (the head uses 10×).
        batch_size: samples per step.
        weight_decay: AdamW weight decay.
        seed: shuffling and head initialisation.
        progress: show a progress bar.
    """

    name = "finetune"

    def __init__(
        self,
        task: Task = "classification",
        *,
        epochs: int = 10,
        lr: float = 1e-4,
        batch_size: int = 32,
        weight_decay: float = 1e-4,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        self.task: Task = task
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size
        self.weight_decay, self.seed, self.progress = weight_decay, seed, progress
        self.embedder: FusionEmbedder | None = None
        self.head: nn.Linear | None = None
        self.subset: Subset | None = None
        self._target_mean, self._target_std = 0.0, 1.0

    def _outputs(self, y: np.ndarray) -> int:
        if self.task == "classification":
            return int(y.max()) + 1
        return int(y.shape[1]) if self.task == "multilabel" else 1

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task == "classification":
            return nn.functional.cross_entropy(out, y.long())
        if self.task == "multilabel":
            return nn.functional.binary_cross_entropy_with_logits(out, y.float())
        target = (y.float() - self._target_mean) / self._target_std
        return nn.functional.mse_loss(out.squeeze(1), target)

    def fit(
        self, embedder: FusionEmbedder, dataset: Samples, subset: Subset | None = None
    ) -> FineTuneProbe:
        samples = _samples(dataset, subset)
        y = check_labels(self.task, label_array([s.label for s in samples]), where="fine-tune")
        if self.task == "regression":
            self._target_mean, self._target_std = float(y.mean()), float(y.std() or 1.0)
        torch.manual_seed(self.seed)
        tuned = copy.copy(embedder.pretrained)
        tuned.encoder = copy.deepcopy(embedder.encoder)
        self.embedder = FusionEmbedder(
            tuned, name=f"{embedder.name} fine-tuned", device=embedder.device
        )
        self.subset = subset
        encoder = self.embedder.encoder
        head = nn.Linear(self.embedder.dim, self._outputs(y)).to(self.embedder.device)
        opt = torch.optim.AdamW(
            [
                {"params": encoder.parameters(), "lr": self.lr},
                {"params": head.parameters(), "lr": self.lr * 10},
            ],
            weight_decay=self.weight_decay,
        )
        prepared = self.embedder.prepare(samples)
        labels = torch.as_tensor(y)
        gen = torch.Generator().manual_seed(self.seed)
        steps = self.epochs * -(-len(prepared) // self.batch_size)
        encoder.train()
        with _progress(self.progress, "fine-tuning") as bar:
            task = bar.add_task("fine-tuning", total=steps)
            for _ in range(self.epochs):
                order = torch.randperm(len(prepared), generator=gen)
                for start in range(0, len(order), self.batch_size):
                    idx = order[start : start + self.batch_size].tolist()
                    batch = collate_samples([prepared[i] for i in idx]).to(self.embedder.device)
                    loss = self._loss(head(encoder(batch)), labels[idx].to(self.embedder.device))
                    opt.zero_grad()
                    loss.backward()  # type: ignore[no-untyped-call]
                    opt.step()
                    bar.advance(task)
        encoder.eval()
        self.head = head.eval()
        return self

    @torch.no_grad()
    def _forward(self, samples: Sequence[Sample]) -> np.ndarray:
        assert self.embedder is not None and self.head is not None, "call fit() first"
        outs = []
        for start in range(0, len(samples), 64):
            prepared = self.embedder.prepare(samples[start : start + 64])
            batch = collate_samples(prepared).to(self.embedder.device)
            outs.append(self.head(self.embedder.encoder(batch)).float().cpu().numpy())
        return np.concatenate(outs)

    def score(self, dataset: Samples) -> dict[str, float]:
        """The task's metrics on ``dataset`` (restricted to the subset it was fitted on)."""
        samples = _samples(dataset, self.subset)
        y = check_labels(self.task, label_array([s.label for s in samples]), where="fine-tune")
        out = self._forward(samples)
        if self.task == "classification":
            return score(self.task, y, out.argmax(1))
        if self.task == "multilabel":
            prob = 1 / (1 + np.exp(-out))
            return score(self.task, y, (prob >= 0.5).astype(np.int64), prob)
        pred = out[:, 0] * self._target_std + self._target_mean
        return score(self.task, y, pred)
