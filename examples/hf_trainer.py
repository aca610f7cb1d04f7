"""sampleweight in a Hugging Face ``Trainer``: class weights, OHEM, a rebalancing sampler and mixing.

transformers has no class-weight option in ``Trainer`` and points users at overriding ``compute_loss``; this is
that override, with `sampleweight.WeightedLoss` (any loss x weighter), plus ``get_train_dataloader`` with a
sampleweight sampler and, optionally, a sampleweight mixer. Runs in seconds on a CPU: a tiny ViT built from a
``ViTConfig`` (nothing downloaded) on random 16 px images of an imbalanced 7-class problem. What matters:

- ``compute_loss`` returns ``WeightedLoss(logits, targets)``, ``(1/B) sum_j w_j l_j`` over the global batch under
  DDP (the weighters see every process's samples); the criterion follows the model's train/eval mode, so the
  evaluation loss is the plain mean. The loss is a per-batch mean (``loss_is_scaled_for_ga = False``);
- ``get_train_dataloader`` returns a DataLoader over ``sw.create_sampler(..., batch_size=M)``, which gives each
  process its own part of the same global batches (so it is not prepared by accelerate again), and a callback
  calls ``set_epoch`` on it and on the criterion at every epoch;
- with ``--mixer remix`` (or ``mixup``, ...), ``compute_loss`` mixes each process's part of a training batch with
  draws from ``(seed, epoch, step, rank)``; evaluation is not mixed.

    python examples/hf_trainer.py                                                 # one process
    torchrun --nproc-per-node 2 examples/hf_trainer.py --sampler class_balanced   # two CPU processes (gloo)
    torchrun --nproc-per-node 2 examples/hf_trainer.py --mixer remix
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments, ViTConfig, ViTForImageClassification

import sampleweight as sw

PROPORTIONS = [0.111, 0.669, 0.051, 0.033, 0.11, 0.011, 0.014]  # the class shares of ISIC 2018


class ImbalancedImages(Dataset):
    """Random 3 x 16 x 16 images whose mean colour depends on the class, with ISIC 2018's class proportions."""

    def __init__(self, samples: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.targets = torch.multinomial(torch.tensor(PROPORTIONS), samples, replacement=True, generator=generator)
        colours = torch.randn(len(PROPORTIONS), 3, 1, 1, generator=torch.Generator().manual_seed(0)) * 0.6
        self.images = colours[self.targets] + torch.randn(samples, 3, 16, 16, generator=generator)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.images[index], "labels": self.targets[index]}


class WeightedTrainer(Trainer):
    """A ``Trainer`` whose loss is sampleweight's, whose batches a sampleweight sampler draws, optionally mixed."""

    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean: the Trainer scales it for accumulation

    def __init__(self, *args: Any, criterion: sw.WeightedLoss, sampler: str, mixer: sw.Mixer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.criterion, self.sampler_name, self.mixer = criterion, sampler, mixer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        images, labels = inputs["pixel_values"], inputs["labels"]
        self.criterion.train(model.training)  # eval(): the plain mean loss, no weighting, no collective
        if model.training:  # each process mixes its own part of the batch
            epoch = self.criterion.epoch  # set by the callback at every epoch
            images, labels = self.mixer(images, labels, epoch=epoch, step=self.state.global_step,
                                        rank=self.args.process_index)  # fmt: skip
        outputs = model(pixel_values=images)
        loss = self.criterion(outputs.logits, labels)
        return (loss, outputs) if return_outputs else loss

    def get_train_dataloader(self) -> DataLoader:
        global_batch = self.args.per_device_train_batch_size * self.args.world_size
        sampler = sw.create_sampler(
            self.sampler_name,
            targets=self.train_dataset.targets,
            seed=self.args.seed,
            batch_size=global_batch,  # each process loads its contiguous part of every global batch
            num_epochs=int(self.args.num_train_epochs),
            num_replicas=self.args.world_size,
            rank=self.args.process_index,
        )
        return DataLoader(self.train_dataset, batch_size=self.args.per_device_train_batch_size, sampler=sampler,
                          collate_fn=self.data_collator)  # fmt: skip


class EpochsAndSteps(TrainerCallback):
    """Sets the sampler's and the criterion's epoch, and prints one line per step (rank 0)."""

    def __init__(self, criterion: sw.WeightedLoss) -> None:
        self.criterion = criterion

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        epoch = round(state.epoch or 0)
        train_dataloader.sampler.set_epoch(epoch)
        self.criterion.set_epoch(epoch)

    def on_step_end(self, args, state, control, **kwargs):
        kept = (self.criterion.last_weights > 0).sum()
        size = torch.tensor(len(self.criterion.last_weights))
        if dist.is_available() and dist.is_initialized():
            for count in (kept, size):
                dist.all_reduce(count)
        if state.is_world_process_zero:
            print(f"epoch {self.criterion.epoch} step {self.criterion.step - 1}: kept {int(kept)} of {int(size)}, "
                  f"loss {float(self.criterion.last_value):.6f}", flush=True)  # fmt: skip


def main(
    epochs: int = 2, batch_size: int = 16, samples: int = 200, sampler: str = "instance", mixer: str = "none"
) -> dict[str, float]:
    """Train; ``batch_size`` is the global batch, shared by the processes. Returns the evaluation metrics."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    args = TrainingArguments(
        output_dir=os.environ.get("HF_TRAINER_OUT", "/tmp/sampleweight-hf-trainer"),
        per_device_train_batch_size=batch_size // world,
        per_device_eval_batch_size=batch_size // world,
        num_train_epochs=epochs,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        seed=0,
        use_cpu=True,
        ddp_backend="gloo" if world > 1 else None,
        ddp_find_unused_parameters=False,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    torch.manual_seed(0)
    config = ViTConfig(image_size=16, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=64, num_labels=len(PROPORTIONS))  # fmt: skip
    model = ViTForImageClassification(config)  # built from the config: nothing downloaded
    train_data, eval_data = ImbalancedImages(samples, seed=1), ImbalancedImages(samples // 4, seed=2)
    counts = torch.bincount(train_data.targets, minlength=len(PROPORTIONS))
    criterion = sw.WeightedLoss("focal", "ohem", gamma=1.0, num_epochs=epochs)  # no batch_size: the global batch's
    trainer = WeightedTrainer(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        criterion=criterion,
        sampler=sampler,
        mixer=sw.create_mixer(mixer, num_classes=len(PROPORTIONS), class_counts=counts, seed=args.seed),
        callbacks=[EpochsAndSteps(criterion)],
    )
    trainer.train()
    metrics = trainer.evaluate()
    if trainer.is_world_process_zero():
        print(f"evaluation loss {metrics['eval_loss']:.6f}", flush=True)
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()  # a process that exits with the group alive may abort
    return metrics


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16, help="the global batch, shared by the processes")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--sampler", default="instance", choices=sw.list_samplers())
    parser.add_argument("--mixer", default="none", choices=sw.list_mixers())
    options = parser.parse_args()
    main(options.epochs, options.batch_size, options.samples, options.sampler, options.mixer)
