"""Several processes (gloo on the CPU): global batch selection, the DDP gradient, sharded data, torchrun.

The multi-process tests start two processes with ``torch.multiprocessing.spawn`` (or ``torchrun``) on a
free port of 127.0.0.1; a failed assertion in either process fails the test with its traceback.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import sampleweight as sw
from sampleweight import distributed
from sampleweight.data import read_dataset, split_indices
from sampleweight.engine import ddp
from sampleweight.engine.loader import ShardSampler, epoch_seed
from sampleweight.engine.rundir import RunDirectory, read_predictions

WORLD = 2
SELECTING = ["spl", "ohem", "class_spl", "class_ohem", "ohem+es"]
# per-process batch lengths: even, uneven, a short last batch, an empty part, a global batch of one
SPLITS = [(6, 6), (7, 5), (5, 2), (3, 0), (0, 1)]
FACTS = {"class_counts": torch.tensor([50, 9, 3, 1]), "num_epochs": 20, "batch_size": 12}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def join_group(rank: int, port: int, world: int = WORLD) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=120),  # a hang fails the test instead of blocking it
    )


def spawn(worker, *args, world: int = WORLD) -> None:
    mp.spawn(worker, args=(free_port(), *args), nprocs=world, join=True)


# -- the sampler (no processes needed) ----------------------------------------------------------------


@pytest.mark.parametrize(("length", "batch_size", "world"), [(128, 16, 2), (100, 12, 4), (37, 6, 3), (5, 4, 4)])
def test_every_global_batch_is_the_single_process_batch(length: int, batch_size: int, world: int) -> None:
    targets = torch.zeros(length, dtype=torch.long)
    single = sw.create_sampler("instance", targets=targets, seed=3)
    shares = [
        sw.create_sampler("instance", targets=targets, seed=3, batch_size=batch_size, num_replicas=world, rank=r)
        for r in range(world)
    ]
    for sampler in (single, *shares):
        sampler.set_epoch(5)
    order = list(single)
    generator = torch.Generator().manual_seed(epoch_seed(3, 5, stream=1))
    assert order == torch.randperm(length, generator=generator).tolist()  # one process: as before
    lists = [list(s) for s in shares]
    assert len({len(x) for x in lists}) == 1 and all(len(x) == len(s) for x, s in zip(lists, shares, strict=True))
    padding = world * len(lists[0]) - length
    assert 0 <= padding < world
    padded = (order * 2)[: length + padding]  # the permutation, padded with its first samples
    per_process = batch_size // world
    steps = [[x[i : i + per_process] for i in range(0, len(x), per_process)] for x in lists]
    assert len({len(s) for s in steps}) == 1  # every process runs the same number of steps
    for step, start in enumerate(range(0, length + padding, batch_size)):
        assert [i for parts in steps for i in parts[step]] == padded[start : start + batch_size]


def test_sampler_checks_its_arguments_and_shards_cover_once() -> None:
    targets = torch.zeros(10, dtype=torch.long)
    with pytest.raises(sw.ConfigError, match="choose a multiple of 2"):
        sw.create_sampler("instance", targets=targets, batch_size=5, rank=0, num_replicas=2)
    with pytest.raises(sw.ConfigError, match="rank"):
        sw.create_sampler("instance", targets=targets, batch_size=4, rank=2, num_replicas=2)
    shards = [list(ShardSampler(11, r, 3)) for r in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(11)) and [len(s) for s in shards] == [4, 4, 3]


def test_single_process_helpers_are_identities() -> None:
    rows = torch.arange(6.0).view(3, 2)
    gathered, sizes = distributed.gather_rows(rows)
    assert gathered is rows and sizes == [3]
    assert distributed.gather_interleaved(rows, 3) is rows and distributed.all_reduce_sum(rows) is rows
    assert not distributed.is_distributed() and distributed.world_size() == 1
    with pytest.raises(sw.ConfigError, match=r"WeightedLoss\(distributed=True\) needs torch.distributed"):
        sw.WeightedLoss("ce", "ohem", distributed=True, **FACTS)(torch.randn(4, 4), torch.zeros(4, dtype=torch.long))


# -- global batch selection and the gradient, two processes ------------------------------------------


class Spy(sw.BaseWeighter):
    """A third-party weighter that records the batch it sees."""

    def forward(self, batch: sw.WeightingBatch) -> torch.Tensor:
        self.seen = batch
        return torch.ones_like(batch.losses)


def global_batch(case: int, sizes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(case)
    total = sum(sizes)
    logits = torch.randint(0, 3, (total, 4), generator=generator).double()  # few distinct losses: ties
    return logits, torch.randint(0, 4, (total,), generator=generator), torch.randperm(1000, generator=generator)[:total]


def own_part(rank: int, sizes: tuple[int, ...]) -> slice:
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def selection_worker(rank: int, port: int) -> None:
    join_group(rank, port)
    try:
        for spec in SELECTING:
            for epoch in (0, 3, 10):  # 10 = E/2: every weight 1
                for case, sizes in enumerate(SPLITS):
                    logits, targets, indices = global_batch(case + 10 * epoch, sizes)
                    mine = own_part(rank, sizes)
                    reference = sw.WeightedLoss("ce", spec, distributed=False, **FACTS)
                    criterion = sw.WeightedLoss("ce", spec, **FACTS)
                    reference.set_epoch(epoch)
                    criterion.set_epoch(epoch)
                    expected = reference(logits, targets, indices=indices)
                    loss = criterion(logits[mine], targets[mine], indices=indices[mine])
                    where = f"{spec}, epoch {epoch}, parts {sizes}, rank {rank}"
                    assert torch.equal(criterion.last_weights, reference.last_weights[mine]), where
                    assert torch.equal(criterion.last_value, expected), where
                    torch.testing.assert_close(distributed.all_reduce_sum(loss.detach()) / WORLD, expected)
        spy = Spy()
        criterion = sw.WeightedLoss("ce", spy)
        logits, targets, indices = global_batch(99, (5, 2))
        mine = own_part(rank, (5, 2))
        criterion(logits[mine], targets[mine], indices=indices[mine])
        assert torch.equal(spy.seen.indices, indices) and torch.equal(spy.seen.targets, targets)
        torch.testing.assert_close(spy.seen.losses, sw.functional.cross_entropy(logits, targets))
        soft_targets_check(rank)
        mixing_check(rank)
        sigmoid_tasks_check(rank)
        gradient_check(rank)
        sharpness_aware_check(rank)
        helpers_check(rank)
    finally:
        dist.destroy_process_group()


def soft_targets_check(rank: int) -> None:
    """Soft targets (mixing) are gathered with the rest: the weighter sees the global mixture, the weights and Eq. 3
    equal one process's on the whole batch."""
    generator = torch.Generator().manual_seed(7)
    logits = torch.randn(7, 4, generator=generator, dtype=torch.float64)
    soft = torch.rand(7, 4, generator=generator)
    soft /= soft.sum(1, keepdim=True)
    mine = own_part(rank, (5, 2))
    spy = Spy()
    sw.WeightedLoss("focal", spy, gamma=1.0)(logits[mine], soft[mine])
    assert torch.equal(spy.seen.soft_targets, soft) and torch.equal(spy.seen.targets, soft.argmax(1))
    for spec in ("class_ohem+es", "cb"):
        reference = sw.WeightedLoss("focal", spec, gamma=1.0, label_smoothing=0.1, distributed=False, **FACTS)
        criterion = sw.WeightedLoss("focal", spec, gamma=1.0, label_smoothing=0.1, **FACTS)
        expected = reference(logits, soft)
        criterion(logits[mine], soft[mine])
        assert torch.equal(criterion.last_weights, reference.last_weights[mine]), spec
        assert torch.equal(criterion.last_value, expected), spec


def mixing_check(rank: int) -> None:
    """Each process mixes its own share with the draws of its rank; OHEM/class-OHEM and class weights then select
    and weigh over the global batch of mixed samples: the same as one process mixing each share as that rank would
    and weighting the concatenation."""
    generator = torch.Generator().manual_seed(11)
    for name, sizes in (("mixup", (6, 4)), ("remix", (5, 3)), ("cutmix", (4, 1))):
        mixer = sw.create_mixer(name, class_counts=FACTS["class_counts"], seed=3)
        total = sum(sizes)
        images = torch.randn(total, 3, 8, 8, generator=generator, dtype=torch.float64)
        targets = torch.randint(0, 4, (total,), generator=generator)
        weights = torch.randn(3 * 8 * 8, 4, generator=generator, dtype=torch.float64)
        shares = [mixer(images[own_part(r, sizes)], targets[own_part(r, sizes)], epoch=1, step=2, rank=r)
                  for r in range(WORLD)]  # fmt: skip
        mixed, soft = mixer(images[own_part(rank, sizes)], targets[own_part(rank, sizes)], epoch=1, step=2)
        assert torch.equal(mixed, shares[rank][0]) and torch.equal(soft, shares[rank][1])  # rank from the group
        all_images, all_soft = torch.cat([s[0] for s in shares]), torch.cat([s[1] for s in shares])
        for spec in ("ohem", "class_ohem+cb"):
            reference = sw.WeightedLoss("focal", spec, gamma=1.0, distributed=False, **FACTS)
            criterion = sw.WeightedLoss("focal", spec, gamma=1.0, **FACTS)
            expected = reference(all_images.flatten(1) @ weights, all_soft.double())
            criterion(mixed.flatten(1) @ weights, soft.double())
            assert torch.equal(criterion.last_weights, reference.last_weights[own_part(rank, sizes)]), (name, spec)
            assert torch.equal(criterion.last_value, expected), (name, spec)


def sigmoid_tasks_check(rank: int) -> None:
    """Multilabel targets [B, L] and per-term weights are gathered with the rest; binary 0/1 targets too: weights and
    Eq. 3 equal one process's on the whole batch, and SPL/OHEM select over the global batch by the summed loss."""
    generator = torch.Generator().manual_seed(11)
    label_counts = torch.tensor([[80, 95, 60], [20, 5, 40]])
    for sizes in ((5, 2), (4, 4), (3, 0)):
        total = sum(sizes)
        logits = torch.randn(total, 3, generator=generator, dtype=torch.float64) * 2
        labels = (torch.rand(total, 3, generator=generator) < 0.4).double()
        mine = own_part(rank, sizes)
        for spec in ("ohem+cb", "spl", "es"):
            facts = {"class_counts": label_counts, "num_epochs": 20, "batch_size": 8}
            reference = sw.WeightedLoss("bce", spec, task="multilabel", distributed=False, **facts)
            criterion = sw.WeightedLoss("bce", spec, task="multilabel", **facts)
            expected = reference(logits, labels)
            loss = criterion(logits[mine], labels[mine])
            where = f"multilabel {spec}, parts {sizes}, rank {rank}"
            assert torch.equal(criterion.last_weights, reference.last_weights[mine]), where
            torch.testing.assert_close(criterion.last_value, expected, rtol=1e-12, atol=1e-14)
            torch.testing.assert_close(distributed.all_reduce_sum(loss.detach()) / WORLD, expected)
        binary = torch.randint(0, 2, (total,), generator=generator)
        facts = {"class_counts": torch.tensor([60, 40]), "num_epochs": 20, "batch_size": 8}
        reference = sw.WeightedLoss("asl", "ohem+es", task="binary", distributed=False, **facts)
        criterion = sw.WeightedLoss("asl", "ohem+es", task="binary", **facts)
        expected = reference(logits[:, :1], binary)
        criterion(logits[mine, :1], binary[mine])
        assert torch.equal(criterion.last_weights, reference.last_weights[mine]), f"binary, parts {sizes}"
        torch.testing.assert_close(criterion.last_value, expected, rtol=1e-12, atol=1e-14)


def gradient_check(rank: int) -> None:
    """DDP's averaged gradient equals one process's gradient of Eq. 3 on the whole batch."""
    for spec in ("ohem", "class_ohem", "ohem+es"):
        for sizes in ((5, 3), (6, 6), (3, 0)):
            torch.manual_seed(0)
            network = nn.Linear(4, 4).double()
            single = copy.deepcopy(network)
            model = nn.parallel.DistributedDataParallel(network)
            generator = torch.Generator().manual_seed(sum(sizes))
            x = torch.randn(sum(sizes), 4, generator=generator, dtype=torch.float64)
            targets = torch.randint(0, 4, (sum(sizes),), generator=generator)
            mine = own_part(rank, sizes)
            sw.WeightedLoss("focal", spec, gamma=1.0, **FACTS)(model(x[mine]), targets[mine]).backward()
            sw.WeightedLoss("focal", spec, gamma=1.0, distributed=False, **FACTS)(single(x), targets).backward()
            for ours, expected in zip(network.parameters(), single.parameters(), strict=True):
                torch.testing.assert_close(ours.grad, expected.grad, rtol=1e-12, atol=1e-14)


def sharpness_aware_check(rank: int) -> None:
    """A SAM, ASAM or ImbSAM step over two processes equals one process's step on the whole batch: the gradients of
    every pass are all-reduced, and the weights of the first pass (OHEM over the global batch) are reused."""
    from sampleweight.engine.training import batch_closure

    counts = FACTS["class_counts"]
    for name, options in (
        ("sam", {}),
        ("sam", {"adaptive": True}),
        ("imbsam", {"class_counts": counts, "threshold": 10}),
    ):
        for sizes in ((5, 3), (6, 6)):
            torch.manual_seed(0)
            network = nn.Linear(4, 4).double()
            single = copy.deepcopy(network)
            model = nn.parallel.DistributedDataParallel(network)
            generator = torch.Generator().manual_seed(sum(sizes))
            x = torch.randn(sum(sizes), 4, generator=generator, dtype=torch.float64)
            targets = torch.randint(0, 4, (sum(sizes),), generator=generator)
            indices, mine = torch.arange(sum(sizes)), own_part(rank, sizes)
            ours = sw.create_optimizer(name, network.parameters(), lr=0.1, **options)
            theirs = sw.create_optimizer(name, single.parameters(), lr=0.1, **options)
            criterion = sw.WeightedLoss("focal", "ohem", gamma=1.0, **FACTS)
            reference = sw.WeightedLoss("focal", "ohem", gamma=1.0, distributed=False, **FACTS)
            plain = contextlib.nullcontext()
            for _ in range(2):  # the second step from the base optimizer's momentum
                ours.step(batch_closure(model, criterion, plain, x[mine], targets[mine], indices[mine]))
                theirs.step(batch_closure(single, reference, plain, x, targets, indices))
            for a, b in zip(network.parameters(), single.parameters(), strict=True):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14, msg=f"{name} {options} {sizes}")


def helpers_check(rank: int) -> None:
    shard = torch.arange(rank, 7, WORLD).double().unsqueeze(1)
    assert torch.equal(distributed.gather_interleaved(shard, 7), torch.arange(7.0).unsqueeze(1))
    norm = nn.BatchNorm1d(2)
    norm.running_mean.fill_(float(rank))
    norm.num_batches_tracked.fill_(5)
    ddp.average_buffers(norm)
    assert norm.running_mean.tolist() == [0.5, 0.5] and int(norm.num_batches_tracked) == 5
    # Under NCCL the lengths travel through a gloo group of their own (no GPU sync); force that path here.
    side = distributed._gloo_group()
    assert side is not dist.group.WORLD and distributed._gloo_group() is side  # made once
    host_group, distributed._host_group = distributed._host_group, distributed._gloo_group
    try:
        rows = torch.full((3 if rank == 0 else 1, 2), float(rank))
        gathered, sizes = distributed.gather_rows(rows)
        assert sizes == [3, 1] and gathered[:, 0].tolist() == [0.0, 0.0, 0.0, 1.0]
    finally:
        distributed._host_group = host_group


def test_weights_and_gradient_over_two_processes_equal_one_process_on_the_whole_batch() -> None:
    spawn(selection_worker)


# -- the engine, two processes: interrupted and resumed equals uninterrupted -------------------------


def tiny(out: Path, **overrides) -> dict:
    config = dict(
        data="synthetic:160", backbone="test_resnet", pretrained=False, image_size=32, batch_size=16, epochs=2,
        lr=1e-3, quiet=True, out=out, weighters=["class_ohem", "es"], device="cpu", mixer="remix",
    )  # fmt: skip
    return {**config, **overrides}


def resume_worker(rank: int, port: int, root: str, options: str = "{}") -> None:
    from sampleweight.engine import progress
    from sampleweight.engine.training import train

    overrides = json.loads(options)
    join_group(rank, port)  # train() keeps a group its caller initialised
    try:
        root_path = Path(root)
        whole = train(tiny(root_path / "whole", **overrides))
        original = progress.TrainingProgress.end_epoch

        def interrupt_after_first_epoch(self, epoch, record):
            original(self, epoch, record)
            if epoch == 0:
                raise KeyboardInterrupt

        progress.TrainingProgress.end_epoch = interrupt_after_first_epoch
        try:
            train(tiny(root_path / "parts", **overrides))
            raise AssertionError("the run was not interrupted")
        except KeyboardInterrupt:
            pass
        finally:
            progress.TrainingProgress.end_epoch = original
        dist.barrier()  # rank 0 has written the checkpoint (a real resume is a new launch)
        resumed = train(tiny(root_path / "parts", **overrides), resume=True)
        assert resumed == whole  # the same final metrics on every process
        dist.barrier()
        if rank == 0:
            a = torch.load(root_path / "whole" / "checkpoint.pt", weights_only=False)
            b = torch.load(root_path / "parts" / "checkpoint.pt", weights_only=False)
            for key, value in a["model"].items():
                assert torch.equal(value, b["model"][key]), key
            lines = RunDirectory(root_path / "parts").epochs()
            assert [line["epoch"] for line in lines] == [0, 1]  # one writer: no duplicated lines
            whole_lines = RunDirectory(root_path / "whole").epochs()
            figures = ("val_auc", "val_ap") if overrides.get("task") == "multilabel" else ("val_acc", "val_bacc")
            for key in ("train_loss", "mean_weight", "drawn", *figures):
                assert [line[key] for line in lines] == [line[key] for line in whole_lines], key
            if overrides.get("task") == "multilabel":  # every validation image once, in order, its labels gathered
                from sampleweight.data.multilabel import taxonomy_multilabel
                from sampleweight.taxonomy import ISIC2018_TAXONOMY

                records = read_dataset("synthetic:160")
                _, val = split_indices(records, split=0, seed=0)
                images, true, _, _, labels = read_predictions(root_path / "parts" / "predictions.csv")
                assert images == [records.image_ids[i] for i in val]
                tree = ISIC2018_TAXONOMY.with_classes(records.classes)
                expected = taxonomy_multilabel(records.labels[val], tree)
                assert true == [";".join(np.array(labels)[row == 1]) for row in expected]
    finally:
        dist.destroy_process_group()


def test_a_distributed_run_interrupted_and_resumed_equals_an_uninterrupted_one(tmp_path) -> None:
    spawn(resume_worker, str(tmp_path))


def test_a_distributed_multilabel_run_with_ohem_gathers_its_validation_labels_and_resumes_exactly(tmp_path) -> None:
    options = {"task": "multilabel", "weighters": ["ohem", "es"], "mixer": "none", "bootstrap": 0}
    spawn(resume_worker, str(tmp_path), json.dumps(options))


# -- every sampler: the processes' parts of every global batch are the single-process batch ----------------------

BUILTIN_SAMPLERS = ["instance", "class_balanced", "sqrt", "progressive", "repeat_factor", "drs"]
SAMPLER_OPTIONS = {"repeat_factor": {"threshold": 0.2}, "drs": {"start": 0.5}}  # drs: class-balanced from epoch 2
# (training samples, global batch) per number of processes; padded, every last global batch is short
SAMPLER_CASES = {2: [(37, 6), (50, 8)], 3: [(37, 6), (43, 12)]}


class Indices(torch.utils.data.Dataset):
    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> int:
        return index


def expected_global_batches(order: list[int], batch: int, world: int, min_part: int) -> list[list[int]]:
    """One process's sequence padded to a multiple of ``world`` by repeating its start, in global batches; a last
    batch that would give each process fewer than ``min_part`` samples is dropped."""
    padded = (order * world)[: -(-len(order) // world) * world]
    batches = [padded[i : i + batch] for i in range(0, len(padded), batch)]
    if len(batches[-1]) // world < min_part:
        batches.pop()
    return batches


def sampler_worker(rank: int, port: int, world: int) -> None:
    join_group(rank, port, world)
    try:
        for length, batch in SAMPLER_CASES[world]:
            targets = torch.arange(length) % 4
            for name in BUILTIN_SAMPLERS:
                facts = {"targets": targets, "seed": 5, "num_epochs": 4, **SAMPLER_OPTIONS.get(name, {})}
                single = sw.create_sampler(name, num_replicas=1, rank=0, **facts)
                for min_part in (1, 2):
                    sampler = sw.create_sampler(name, batch_size=batch, min_part=min_part, **facts)  # the group's W, r
                    assert (sampler.num_replicas, sampler.rank) == (world, rank)
                    loader = torch.utils.data.DataLoader(Indices(length), batch_size=batch // world, sampler=sampler)
                    for epoch in range(4):
                        single.set_epoch(epoch)
                        sampler.set_epoch(epoch)
                        expected = expected_global_batches(list(single), batch, world, min_part)
                        steps = [distributed.gather_rows(part)[0].tolist() for part in loader]
                        where = f"{name}, {length} samples, batch {batch}, min_part {min_part}, epoch {epoch}"
                        assert steps == expected, where  # the same steps on every process, each the global batch
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 3])
def test_every_sampler_shares_each_global_batch_over_the_processes(world: int) -> None:
    spawn(sampler_worker, world, world=world)


SEEN: dict[int, list[list[int]]] = {}  # epoch -> the global batches the recorder weighted (one per process)


class Recorder(sw.BaseWeighter):
    """A weighter that records the dataset indices of every (global) batch it weights, by epoch."""

    def forward(self, batch: sw.WeightingBatch) -> torch.Tensor:
        SEEN.setdefault(batch.epoch, []).append(batch.indices.tolist())
        return torch.ones_like(batch.losses)


class RecorderPlugin:
    @sw.hookimpl
    def register_weighters(self, register) -> None:
        register("recorder", Recorder)


def engine_sampler_worker(rank: int, port: int, root: str) -> None:
    from sampleweight import plugins
    from sampleweight.engine.training import train

    join_group(rank, port)
    plugins.set_registry(plugins.load_plugins(modules=[("recorder", RecorderPlugin())]))
    try:
        out = Path(root) / "run"
        # 128 training images in global batches of 14: nine full ones, then 2 images, one per process, which
        # test_resnet's BatchNorm cannot train on: dropped on both processes
        train(tiny(out, sampler="class_balanced", weighters=["recorder"], batch_size=14))
        records = read_dataset("synthetic:160")
        train_idx, _ = split_indices(records, split=0, seed=0)
        targets = torch.as_tensor(np.asarray(records.labels)[train_idx])
        single = sw.create_sampler("class_balanced", targets=targets, num_classes=7, seed=0, num_replicas=1, rank=0)
        drawn = []
        for epoch in (0, 1):
            single.set_epoch(epoch)
            expected = expected_global_batches(list(single), 14, WORLD, min_part=2)
            assert len(expected) == 9 and SEEN[epoch] == expected, (rank, epoch)
            drawn.append(np.bincount(targets[[i for b in expected for i in b]].numpy(), minlength=7).tolist())
        dist.barrier()
        if rank == 0:
            assert [list(line["drawn"].values()) for line in RunDirectory(out).epochs()] == drawn
    finally:
        dist.destroy_process_group()


def test_the_engine_trains_every_process_on_its_part_of_the_samplers_global_batches(tmp_path) -> None:
    spawn(engine_sampler_worker, str(tmp_path))


# -- torchrun end to end --------------------------------------------------------------------------------


def test_torchrun_trains_on_two_processes_and_rank_zero_writes_one_run_directory(tmp_path) -> None:
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
        "-m", "sampleweight", "train", "--data", "synthetic:160", "--backbone", "test_resnet", "--no-pretrained",
        "--image-size", "32", "--batch-size", "16", "--epochs", "1", "--weighter", "class_ohem", "--quiet",
        "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("mf1") == 1  # only rank 0 prints the result
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt", "config.json", "data.json", "metrics.json", "metrics.jsonl", "predictions.csv",
    ]  # fmt: skip
    assert [line["epoch"] for line in RunDirectory(out).epochs()] == [0]  # one writer
    final = json.loads((out / "metrics.json").read_text())
    images, true, pred, _, classes = read_predictions(out / "predictions.csv")
    records = read_dataset("synthetic:160")
    _, val = split_indices(records, split=0, seed=0)
    assert images == [records.image_ids[i] for i in val]  # every validation image once, in order
    assert final["n"] == len(val) == sum(c["support"] for c in final["per_class"].values())
    assert final["acc"] == pytest.approx(np.mean(np.array(true) == np.array(pred)))
    assert true == [classes[records.labels[i]] for i in val]
    assert json.loads((out / "config.json").read_text())["batch_size"] == 16  # the global batch
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1
