"""sampleweight with Hugging Face accelerate: one process, torchrun, or notebook_launcher.

Runs in seconds on a CPU on random tensors: a small MLP on an imbalanced 7-class problem, trained with
focal loss and OHEM (the paper's pacing). What matters for sampleweight:

- build the criterion without ``batch_size``: the curriculum weighters take it from the global batch
  (all processes' samples, which `WeightedLoss` gathers);
- accelerate completes the last global batch of an epoch with samples from its start, so that every
  process gets a full batch; `real_part` cuts those repeats off before the criterion, so the last
  step weights exactly the real samples, as one process would (a process may then pass none);
  ``drop_last=True`` on the DataLoader is the simple alternative;
- with ``--sampler class_balanced`` (or any sampler of ``sampleweight plugins``), the batches are drawn by
  ``sw.create_sampler(..., batch_size=M)``, created after ``Accelerator()``: each process loads its own
  part of the same global batches, so the loader is not passed to ``accelerator.prepare`` (that would
  shard it a second time), and ``set_epoch`` is called before every epoch;
- with ``--mixer mixup`` (or ``remix``, ...), each process mixes its own (real) samples with draws from
  ``(seed, epoch, step, rank)``, and the criterion takes the mixed class distributions.

    python examples/accelerate_training.py                                # one process
    torchrun --nproc-per-node 2 examples/accelerate_training.py           # two CPU processes (gloo)
    python examples/accelerate_training.py --notebook-launcher 2          # as notebook_launcher would
    torchrun --nproc-per-node 2 examples/accelerate_training.py --sampler class_balanced
    torchrun --nproc-per-node 2 examples/accelerate_training.py --mixer remix

``accelerate launch --num_processes 2 --cpu`` runs ONE process on a machine without GPUs (accelerate
1.x); use torchrun or notebook_launcher for several CPU processes.
"""

from __future__ import annotations

import argparse

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import sampleweight as sw

PROPORTIONS = [0.111, 0.669, 0.051, 0.033, 0.11, 0.011, 0.014]  # the class shares of ISIC 2018


def real_part(accelerator: Accelerator, batch_len: int) -> int:
    """How many of this process's ``batch_len`` samples are real, not accelerate's repeats.

    Only the last global batch of an epoch is completed with repeats (``even_batches=True``, the
    default); its real samples come first, in process order: ``gradient_state.remainder`` of them.
    """
    state = accelerator.gradient_state
    if not state.end_of_dataloader or state.remainder <= 0:
        return batch_len
    return max(0, min(batch_len, state.remainder - accelerator.process_index * batch_len))


def imbalanced_blobs(samples: int) -> TensorDataset:
    """Gaussian blobs, one per class, with ISIC 2018's class proportions: ``(inputs, targets, index)``."""
    generator = torch.Generator().manual_seed(1)
    targets = torch.multinomial(torch.tensor(PROPORTIONS), samples, replacement=True, generator=generator)
    centres = torch.randn(len(PROPORTIONS), 16, generator=generator) * 0.45
    inputs = centres[targets] + torch.randn(samples, 16, generator=generator)
    return TensorDataset(inputs, targets, torch.arange(samples))


def train(
    epochs: int = 3,
    batch_size: int = 16,
    samples: int = 200,
    weighter: str = "ohem",
    sampler: str | None = None,
    show_batches: bool = False,
    mixer: str = "none",
) -> list[str]:
    """Train; ``batch_size`` is the global batch, shared by the processes. Returns the lines it printed.

    With ``sampler`` (a sampleweight sampler's name) the batches are drawn by it instead of shuffled;
    ``show_batches`` prints the sample indices of every global batch.
    """
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    dataset = imbalanced_blobs(samples)
    per_process = batch_size // accelerator.num_processes
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, len(PROPORTIONS)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = sw.WeightedLoss("focal", weighter, gamma=1.0, num_epochs=epochs)  # no batch_size: the global batch's
    counts = torch.bincount(dataset.tensors[1], minlength=len(PROPORTIONS))
    mixing = sw.create_mixer(mixer, num_classes=len(PROPORTIONS), class_counts=counts, seed=0)
    if sampler is None:
        generator = torch.Generator().manual_seed(2)  # accelerate keeps it in step across the processes
        loader = DataLoader(dataset, batch_size=per_process, shuffle=True, generator=generator)
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
        draws = None
    else:
        # After Accelerator(), which started the process group: this process's part of every global batch.
        targets = dataset.tensors[1]
        draws = sw.create_sampler(sampler, targets=targets, seed=0, batch_size=batch_size, num_epochs=epochs)
        loader = DataLoader(dataset, batch_size=per_process, sampler=draws)  # already sharded: not prepared
        model, optimizer = accelerator.prepare(model, optimizer)

    lines = []

    def say(line: str) -> None:
        lines.append(line)
        accelerator.print(line)

    for epoch in range(epochs):
        criterion.set_epoch(epoch)
        if draws is not None:
            draws.set_epoch(epoch)  # the sampler's draw of this epoch
        drawn = torch.zeros(len(PROPORTIONS), dtype=torch.long, device=accelerator.device)
        for batch, (x, y, index) in enumerate(loader):
            x, y = x.to(accelerator.device), y.to(accelerator.device)
            keep = len(y) if draws is not None else real_part(accelerator, len(y))  # the sampler repeats nothing
            mixed, target = mixing(x[:keep], y[:keep], epoch=epoch, step=batch, rank=accelerator.process_index)
            loss = criterion(model(mixed), target)  # (1/B) sum_j w_j l_j over the global batch
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            drawn += torch.bincount(y[:keep], minlength=len(PROPORTIONS))
            kept = accelerator.reduce((criterion.last_weights > 0).sum(), reduction="sum")
            size = accelerator.reduce(torch.tensor(keep), reduction="sum")
            if show_batches and draws is not None:  # the processes' parts in rank order: the global batch
                say(f"epoch {epoch} batch {batch}: samples {' '.join(map(str, accelerator.gather(index).tolist()))}")
            say(
                f"epoch {epoch} step {criterion.step - 1}: kept {int(kept)} of {int(size)}, "
                f"loss {float(criterion.last_value):.6f}"
            )
        say(f"epoch {epoch} drew per class: {' '.join(map(str, accelerator.reduce(drawn, reduction='sum').tolist()))}")
    accelerator.end_training()  # destroys the process group: a process that exits with it alive may abort
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16, help="the global batch, shared by the processes")
    parser.add_argument("--samples", type=int, default=200, help="training samples (the last batch may be short)")
    parser.add_argument("--sampler", choices=sw.list_samplers(), help="draw the batches with this sampleweight sampler")
    parser.add_argument("--show-batches", action="store_true", help="with --sampler: each global batch's indices")
    parser.add_argument("--notebook-launcher", type=int, metavar="N", help="start N processes as a notebook would")
    parser.add_argument("--mixer", default="none", choices=sw.list_mixers(), help="mix the training batches")
    args = parser.parse_args()
    options = (args.epochs, args.batch_size, args.samples, "ohem", args.sampler, args.show_batches, args.mixer)
    if args.notebook_launcher:
        from accelerate import notebook_launcher

        notebook_launcher(train, options, num_processes=args.notebook_launcher)
    else:
        train(*options)
