"""What a trained model says about images: class probabilities in the loader's order, and the decisions."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from sampleweight.taxonomy import Taxonomy

__all__ = ["decide", "predict", "probabilities"]


def probabilities(output: Tensor, task: str = "multiclass") -> Tensor:
    """Class probabilities [B, C] of a model's output: ``softmax``; one logit ``z`` (a binary task) gives
    ``[1 - sigmoid(z), sigmoid(z)]`` (rest, positive); a multilabel task's logits [B, L] give each label's own
    ``sigmoid`` [B, L] (independent, not summing to 1; a one-label multilabel model's one logit too).

    Example:
        >>> logits = torch.tensor([[0.0, 2.0]])
        >>> probabilities(logits).sum().item(), probabilities(logits, "multilabel")[0, 0].item()
        (1.0, 0.5)
    """
    output = output.float()
    if task == "multilabel":
        return output.sigmoid()
    if output.shape[1] == 1:
        positive = output.sigmoid()
        return torch.cat([1 - positive, positive], dim=1)
    return output.softmax(1)


@torch.no_grad()
def predict(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor, Tensor]],
    device: torch.device,
    autocast: contextlib.AbstractContextManager | None = None,
    normalize: nn.Module | None = None,
    channels_last: bool = False,
    task: str = "multiclass",
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities of every sample, in the order of ``batches``.

    Args:
        model: The model (put in eval mode for the call, then back in its previous mode).
        batches: ``(images, labels, indices)`` batches, images uint8 or float.
        device: Where the model is.
        autocast: Mixed-precision context (None: full precision).
        normalize: Turns a uint8 batch into the model's input (`BatchAugment` in eval mode).
        channels_last: Feed the model channels-last input.
        task: The run's task: ``"multilabel"`` scores each label by its own sigmoid (`probabilities`).

    Returns:
        ``(targets [N], scores [N, C])``: scores are ``softmax(output)`` (for a model that returns
        log-probabilities, such as the hierarchical one, these are its probabilities); a model with one output (a
        binary task's one logit ``z``) gives two columns, ``[1 - sigmoid(z), sigmoid(z)]``: rest, positive; a
        multilabel task gives ``(0/1 targets [N, L], sigmoid(output) [N, L])``.
    """
    was_training = model.training
    model.eval()
    targets, scores = [], []
    for images, labels, _ in batches:
        images = images.to(device, non_blocking=True)
        x = normalize(images) if normalize is not None else images.float()
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast or contextlib.nullcontext():
            output = model(x)
        scores.append(probabilities(output, task).cpu())
        targets.append(labels)
    model.train(was_training)
    return torch.cat(targets).numpy(), torch.cat(scores).numpy()


def decide(scores: np.ndarray, taxonomy: Taxonomy | None = None) -> np.ndarray:
    """Predicted classes from class probabilities [N, C].

    A hierarchical model decides greedily, level by level (the paper's inference,
    `Taxonomy.greedy_decode`); any other model takes the most probable class.
    """
    if taxonomy is None:
        return scores.argmax(axis=1)
    log_probs = torch.from_numpy(np.log(np.clip(scores, 1e-30, None)))
    return taxonomy.greedy_decode(log_probs).numpy()
