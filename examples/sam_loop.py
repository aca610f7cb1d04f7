"""Sharpness-aware minimisation (SAM, ImbSAM) in your own training loop, with a sample weighter.

Runs in seconds on a CPU on random tensors (a small MLP on an imbalanced 7-class problem). A sharpness-aware
optimizer (``sw.create_optimizer("sam" | "imbsam", ...)``, registered ``closure=True``) steps through a closure:
``closure(classes=None)`` runs the forward and backward pass of the batch at the current weights, keeping only the
samples of the classes marked in ``classes`` (ImbSAM's split of the loss; None: all of them). The first call
weights the batch; the later ones, at perturbed weights, reuse those weights (``reuse=True``), so OHEM's selection is
that of the unperturbed model. On CUDA the loop runs under fp16 autocast with a ``GradScaler``: the scaler scales
every backward pass and takes the base optimizer's step (``update=scaler.step``).

    python examples/sam_loop.py --optimizer imbsam
"""

from __future__ import annotations

import argparse
import contextlib

import torch
from torch import nn

import sampleweight as sw

PROPORTIONS = [0.111, 0.669, 0.051, 0.033, 0.11, 0.011, 0.014]  # the class shares of ISIC 2018


def train(optimizer_name: str = "sam", epochs: int = 3, seed: int = 0) -> float:
    """Train on imbalanced blobs; return the balanced accuracy on fresh blobs."""
    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    centres = torch.randn(len(PROPORTIONS), 16) * 0.6

    def blobs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.multinomial(torch.tensor(PROPORTIONS), n, replacement=True)
        return (centres[y] + torch.randn(n, 16)).to(device), y.to(device)

    x, y = blobs(1400)
    counts = torch.bincount(y.cpu(), minlength=len(PROPORTIONS))
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, len(PROPORTIONS))).to(device)
    criterion = sw.WeightedLoss("ce", "ohem", num_epochs=epochs, batch_size=32, class_counts=counts)
    optimizer = sw.create_optimizer(optimizer_name, model.parameters(), lr=0.05, class_counts=counts)
    cuda = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.float16) if cuda else contextlib.nullcontext()
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)  # disabled: scale() and step() pass through

    for epoch in range(epochs):
        criterion.set_epoch(epoch)
        for batch in torch.randperm(len(y), device=device).split(32):
            inputs, targets = x[batch], y[batch]
            calls = 0

            def closure(classes: torch.Tensor | None = None) -> torch.Tensor:
                nonlocal calls
                with autocast:
                    output = model(inputs)  # noqa: B023 - called within this step only
                samples = None if classes is None else classes.to(device)[targets]  # noqa: B023
                loss = criterion(output, targets, samples=samples, reuse=calls > 0)  # noqa: B023
                calls += 1
                scaler.scale(loss).backward()
                return loss.detach()

            optimizer.zero_grad(set_to_none=True)
            optimizer.step(closure, update=scaler.step)
            scaler.update()

    model.eval()
    test_x, test_y = blobs(700)
    with torch.no_grad():
        predicted = model(test_x).argmax(1)
    recalls = [(predicted[test_y == c] == c).float().mean() for c in range(len(PROPORTIONS)) if (test_y == c).any()]
    return float(torch.stack(recalls).mean())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="sam", choices=["sam", "imbsam"])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.optimizer}: balanced accuracy {train(args.optimizer, args.epochs):.3f}")
