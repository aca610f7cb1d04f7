"""sampleweight in a PyTorch Lightning module: one process, or several with DDP.

Runs in seconds on a CPU on random tensors: a small MLP on an imbalanced 7-class problem, trained with
focal loss and OHEM (the paper's pacing). What matters for sampleweight:

- the criterion is a submodule, built in ``__init__`` without ``batch_size``: under DDP the weighters
  see the global batch of all processes, and take its size from the batches (the LightningModule does
  not know the world size yet);
- ``set_epoch`` goes in ``on_train_epoch_start``;
- ``last_weights`` (this process's part of the batch) is logged, summed over the processes;
- the same criterion scores the validation batches: Lightning puts the module in ``eval()`` mode there,
  where `WeightedLoss` returns the plain mean loss, without weighting, step or collective.

    python examples/lightning_training.py                 # one process
    python examples/lightning_training.py --devices 2     # two CPU processes (DDP over gloo)
"""

from __future__ import annotations

import argparse

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import sampleweight as sw

PROPORTIONS = [0.111, 0.669, 0.051, 0.033, 0.11, 0.011, 0.014]  # the class shares of ISIC 2018


def imbalanced_blobs(n: int, seed: int) -> TensorDataset:
    """Gaussian blobs, one per class, with ISIC 2018's class proportions."""
    generator = torch.Generator().manual_seed(seed)
    targets = torch.multinomial(torch.tensor(PROPORTIONS), n, replacement=True, generator=generator)
    centres = torch.randn(len(PROPORTIONS), 16, generator=torch.Generator().manual_seed(0)) * 0.45
    return TensorDataset(centres[targets] + torch.randn(n, 16, generator=generator), targets)


class Classifier(L.LightningModule):
    def __init__(self, weighter: str = "ohem", num_epochs: int = 6, lr: float = 1e-3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, len(PROPORTIONS)))
        # No batch_size: the curriculum weighters take it from the global batch they see.
        self.criterion = sw.WeightedLoss("focal", weighter, gamma=1.0, num_epochs=num_epochs)
        self.lr = lr

    def on_train_epoch_start(self) -> None:
        self.criterion.set_epoch(self.current_epoch)  # the weighters' epoch (SPL/OHEM pacing)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.criterion(self.net(x), y)  # (1/B) sum_j w_j l_j over the global batch
        weights = self.criterion.last_weights  # this process's samples
        kept = (weights > 0).sum().float()
        self.log("weights/kept", kept, reduce_fx="sum", sync_dist=True)
        self.log("weights/mean", weights.mean(), sync_dist=True)
        self.log("train_loss", self.criterion.last_value)  # Eq. 3 of the global batch, the same on every process
        kept_global = int(self.all_gather(kept).sum())
        batch_global = int(self.all_gather(torch.tensor(float(len(y)), device=self.device)).sum())
        self.print(
            f"epoch {self.current_epoch} step {self.criterion.step - 1}: kept {kept_global} of {batch_global}, "
            f"loss {float(self.criterion.last_value):.6f}"
        )
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = self.criterion(self.net(x), y)  # eval() mode: the plain mean of the per-sample losses
        self.log("val_loss", loss, sync_dist=True)
        return loss

    def on_validation_epoch_end(self) -> None:
        self.print(f"epoch {self.current_epoch} validation: criterion step {self.criterion.step}")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def main(devices: int = 1, epochs: int = 6, batch_size: int = 16, samples: int = 200) -> None:
    """Train; ``batch_size`` is the global batch, shared by the ``devices`` processes."""
    L.seed_everything(0, verbose=False)
    train_data, val_data = imbalanced_blobs(samples, seed=1), imbalanced_blobs(samples // 4, seed=2)
    per_process = batch_size // devices
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",  # DDP over gloo on the CPU
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(
        Classifier(num_epochs=epochs),
        DataLoader(train_data, batch_size=per_process, shuffle=True),
        DataLoader(val_data, batch_size=per_process),
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1, help="CPU processes (DDP when more than one)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16, help="the global batch, shared by the processes")
    args = parser.parse_args()
    main(devices=args.devices, epochs=args.epochs, batch_size=args.batch_size)
