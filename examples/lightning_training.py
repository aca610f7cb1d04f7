"""sampleweight in a PyTorch Lightning module: one process, or several with DDP.

Runs in seconds on a CPU on random tensors: a small MLP on an imbalanced 7-class problem, trained with
focal loss and OHEM (the paper's pacing). What matters for sampleweight:

- the criterion is a submodule, built in ``__init__`` without ``batch_size``: under DDP the weighters
  see the global batch of all processes, and take its size from the batches (the LightningModule does
  not know the world size yet);
- ``set_epoch`` goes in ``on_train_epoch_start``;
- ``last_weights`` (this process's part of the batch) is logged, summed over the processes;
- the same criterion scores the validation batches: Lightning puts the module in ``eval()`` mode there,
  where `WeightedLoss` returns the plain mean loss, without weighting, step or collective;
- with ``--sampler class_balanced`` (or any sampler of ``sampleweight plugins``), the training batches
  are drawn by ``sw.create_sampler(..., batch_size=M)`` with ``Trainer(use_distributed_sampler=False)``:
  each process loads its own part of the same global batches, so under DDP the weighters still select
  over the batch one process would see. Lightning calls the sampler's ``set_epoch`` before every epoch;
- with ``--mixer mixup`` (or ``remix``, ...), each process mixes its own part of the batch in ``training_step``
  with draws from ``(seed, epoch, step, rank)`` and the criterion takes the mixed class distributions; validation
  is not mixed.

    python examples/lightning_training.py                 # one process
    python examples/lightning_training.py --devices 2     # two CPU processes (DDP over gloo)
    python examples/lightning_training.py --devices 2 --sampler class_balanced
    python examples/lightning_training.py --devices 2 --mixer remix
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
    """Gaussian blobs, one per class, with ISIC 2018's class proportions: ``(inputs, targets, index)``."""
    generator = torch.Generator().manual_seed(seed)
    targets = torch.multinomial(torch.tensor(PROPORTIONS), n, replacement=True, generator=generator)
    centres = torch.randn(len(PROPORTIONS), 16, generator=torch.Generator().manual_seed(0)) * 0.45
    return TensorDataset(centres[targets] + torch.randn(n, 16, generator=generator), targets, torch.arange(n))


class Blobs(L.LightningDataModule):
    """The training and validation blobs; the training batches shuffled, or drawn by a sampleweight sampler.

    Args:
        batch_size: The global batch M, shared by the processes (a multiple of their number).
        samples: Training samples (a quarter as many validate).
        sampler: A sampler name (``"class_balanced"``, ``"sqrt"``, ...); None for a shuffled pass.
        seed: The sampler's seed.
    """

    def __init__(self, batch_size: int = 16, samples: int = 200, sampler: str | None = None, seed: int = 0) -> None:
        super().__init__()
        self.batch_size, self.sampler, self.seed = batch_size, sampler, seed
        self.train_data, self.val_data = imbalanced_blobs(samples, seed=1), imbalanced_blobs(samples // 4, seed=2)

    def train_dataloader(self) -> DataLoader:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        if self.sampler is None:  # Lightning adds a DistributedSampler under DDP
            return DataLoader(self.train_data, batch_size=self.batch_size // world, shuffle=True)
        # Every process draws the same global sequence and keeps its contiguous part of each global batch
        # of M; Lightning calls sampler.set_epoch(epoch) before every epoch, as for a DistributedSampler.
        sampler = sw.create_sampler(
            self.sampler,
            targets=self.train_data.tensors[1],
            seed=self.seed,
            batch_size=self.batch_size,  # the global batch
            num_epochs=self.trainer.max_epochs,  # what progressive and drs pace by
            num_replicas=world,
            rank=rank,
        )
        return DataLoader(self.train_data, batch_size=self.batch_size // world, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        # Without Lightning's DistributedSampler each process validates the whole set: the same mean loss.
        return DataLoader(self.val_data, batch_size=self.batch_size // self.trainer.world_size)


class Classifier(L.LightningModule):
    def __init__(
        self,
        weighter: str = "ohem",
        num_epochs: int = 6,
        lr: float = 1e-3,
        show_batches: bool = False,
        mixer: str = "none",
        class_counts: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, len(PROPORTIONS)))
        # No batch_size: the curriculum weighters take it from the global batch they see.
        self.criterion = sw.WeightedLoss("focal", weighter, gamma=1.0, num_epochs=num_epochs)
        # The mixer's draws follow from (seed, epoch, step, rank): each process mixes its own part of the batch.
        self.mixer = sw.create_mixer(mixer, num_classes=len(PROPORTIONS), class_counts=class_counts, seed=0)
        self.lr, self.show_batches = lr, show_batches
        self.drawn = torch.zeros(len(PROPORTIONS), dtype=torch.long)  # this process's samples per class, this epoch

    def on_train_epoch_start(self) -> None:
        self.criterion.set_epoch(self.current_epoch)  # the weighters' epoch (SPL/OHEM pacing)
        self.drawn.zero_()

    def training_step(self, batch, batch_idx):
        x, y, index = batch
        mixed, target = self.mixer(x, y, epoch=self.current_epoch, step=batch_idx, rank=self.global_rank)
        loss = self.criterion(self.net(mixed), target)  # (1/B) sum_j w_j l_j over the global batch
        weights = self.criterion.last_weights  # this process's samples
        kept = (weights > 0).sum().float()
        self.log("weights/kept", kept, reduce_fx="sum", sync_dist=True)
        self.log("weights/mean", weights.mean(), sync_dist=True)
        self.log("train_loss", self.criterion.last_value)  # Eq. 3 of the global batch, the same on every process
        self.drawn += torch.bincount(y.cpu(), minlength=len(PROPORTIONS))
        if self.show_batches:  # each process's part of the global batch, gathered to be printed by rank 0
            for rank, part in enumerate(self.all_gather(index).reshape(self.trainer.world_size, -1).tolist()):
                self.print(
                    f"rank {rank} epoch {self.current_epoch} batch {batch_idx}: samples {' '.join(map(str, part))}"
                )
        kept_global = int(self.all_gather(kept).sum())
        batch_global = int(self.all_gather(torch.tensor(float(len(y)), device=self.device)).sum())
        self.print(
            f"epoch {self.current_epoch} step {self.criterion.step - 1}: kept {kept_global} of {batch_global}, "
            f"loss {float(self.criterion.last_value):.6f}"
        )
        return loss

    def on_train_epoch_end(self) -> None:
        drawn = self.trainer.strategy.reduce(self.drawn.clone(), reduce_op="sum")  # all processes together
        self.print(f"epoch {self.current_epoch} drew per class: {' '.join(map(str, drawn.tolist()))}")

    def validation_step(self, batch, batch_idx):
        x, y, _ = batch
        loss = self.criterion(self.net(x), y)  # eval() mode: the plain mean of the per-sample losses
        self.log("val_loss", loss, sync_dist=True)
        return loss

    def on_validation_epoch_end(self) -> None:
        self.print(f"epoch {self.current_epoch} validation: criterion step {self.criterion.step}")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def main(
    devices: int = 1,
    epochs: int = 6,
    batch_size: int = 16,
    samples: int = 200,
    sampler: str | None = None,
    show_batches: bool = False,
    mixer: str = "none",
) -> None:
    """Train; ``batch_size`` is the global batch, shared by the ``devices`` processes."""
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",  # DDP over gloo on the CPU
        use_distributed_sampler=sampler is None,  # a sampleweight sampler already gives each process its part
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    data = Blobs(batch_size, samples, sampler)
    counts = torch.bincount(data.train_data.tensors[1], minlength=len(PROPORTIONS))  # what remix compares
    trainer.fit(
        Classifier(num_epochs=epochs, show_batches=show_batches, mixer=mixer, class_counts=counts), datamodule=data
    )
    if torch.distributed.is_initialized():  # close gloo's threads before the interpreter exits, not during its exit
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1, help="CPU processes (DDP when more than one)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16, help="the global batch, shared by the processes")
    parser.add_argument("--sampler", choices=sw.list_samplers(), help="draw the training batches with this sampler")
    parser.add_argument("--show-batches", action="store_true", help="print each process's sample indices per step")
    parser.add_argument("--mixer", default="none", choices=sw.list_mixers(), help="mix the training batches")
    args = parser.parse_args()
    main(
        devices=args.devices,
        epochs=args.epochs,
        batch_size=args.batch_size,
        sampler=args.sampler,
        show_batches=args.show_batches,
        mixer=args.mixer,
    )
