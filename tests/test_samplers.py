"""Samplers: each built-in's class frequencies against its formula, determinism, state, sharding, the
engine's use of them (drawn counts, warnings, a last batch too small for BatchNorm), errors, and a
third-party sampler discovered through a real entry point.

The statistical tests draw with fixed seeds and compare the observed class counts with the formula by
Pearson's chi-square statistic, summed over epochs (independent epochs: chi-square with E (C - 1)
degrees of freedom), against its 1 - 1e-6 quantile; each also checks that the same statistic for a
nearby wrong formula exceeds that bound, so the tolerance cannot let a wrong sampler through.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from test_training import TINY, tiny_config  # the tiny synthetic run of the engine's tests
from typer.testing import CliRunner

import sampleweight as sw
from sampleweight import plugins
from sampleweight.builtins.samplers import RepeatFactorSampler, repeat_factor
from sampleweight.cli import app
from sampleweight.engine.loader import smallest_part
from sampleweight.engine.rundir import RunDirectory
from sampleweight.engine.training import train
from sampleweight.testing import check_sampler

runner = CliRunner()
BUILTINS = ["class_balanced", "drs", "instance", "progressive", "repeat_factor", "sqrt"]
COUNTS = np.array([500, 200, 60, 20, 5])
TARGETS = torch.repeat_interleave(torch.arange(5), torch.as_tensor(COUNTS))[
    torch.randperm(int(COUNTS.sum()), generator=torch.Generator().manual_seed(0))
]  # shuffled: a sample's position says nothing about its class
EPOCHS = 60
DRAWS = 20_000  # per epoch: enough to tell t / T from t / (T - 1) in the progressive interpolation
THRESHOLD = 0.1  # repeat_factor's t: the three rarest classes are oversampled


# -- each sampler's formula, computed independently (numpy) -------------------------------------------------


def formula(name: str, epoch: int, *, progressive_denominator: int = EPOCHS, start: int = 48, root: bool = True):
    """p_c of ``name`` at ``epoch``; the keyword arguments make the nearby wrong formulas of the power checks."""
    counts = COUNTS.astype(float)
    instance = counts / counts.sum()
    balanced = np.full(len(counts), 1 / len(counts))
    if name == "class_balanced":
        return balanced
    if name == "sqrt":
        return np.sqrt(counts) / np.sqrt(counts).sum()
    if name == "progressive":
        share = epoch / progressive_denominator
        return (1 - share) * instance + share * balanced
    if name == "repeat_factor":
        fraction = counts / counts.sum()
        factor = np.maximum(1.0, np.sqrt(THRESHOLD / fraction) if root else THRESHOLD / fraction)
        return counts * factor / (counts * factor).sum()
    if name == "drs":
        return instance if epoch < start else balanced
    raise AssertionError(name)


WRONG = {
    "class_balanced": lambda epoch: formula("sqrt", epoch),
    "sqrt": lambda epoch: np.power(COUNTS, 0.4) / np.power(COUNTS, 0.4).sum(),
    "progressive": lambda epoch: formula("progressive", epoch, progressive_denominator=EPOCHS - 1),
    "repeat_factor": lambda epoch: formula("repeat_factor", epoch, root=False),
    "drs": lambda epoch: formula("drs", epoch, start=49),
}


def pearson(observed: np.ndarray, probabilities: np.ndarray) -> float:
    expected = probabilities * observed.sum()
    return float(((observed - expected) ** 2 / expected).sum())


def drawn_classes(name: str, **options) -> list[np.ndarray]:
    sampler = sw.create_sampler(name, targets=TARGETS, seed=11, num_epochs=EPOCHS, **options)
    epochs = []
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        epochs.append(np.bincount(TARGETS[list(sampler)].numpy(), minlength=len(COUNTS)))
    return epochs


@pytest.mark.parametrize("name", ["class_balanced", "sqrt", "progressive", "repeat_factor", "drs"])
def test_class_frequencies_follow_the_formula_over_many_epochs(name: str) -> None:
    options = {"threshold": THRESHOLD} if name == "repeat_factor" else {}  # num_samples: a fixed-length epoch
    epochs = drawn_classes(name, num_samples=DRAWS, **options)
    bound = stats.chi2.ppf(1 - 1e-6, EPOCHS * (len(COUNTS) - 1))
    statistic = sum(pearson(observed, formula(name, e)) for e, observed in enumerate(epochs))
    assert statistic < bound, f"{name}: chi-square {statistic:.0f} over the bound {bound:.0f}"
    wrong = sum(pearson(observed, WRONG[name](e)) for e, observed in enumerate(epochs))
    assert wrong > bound, f"{name}: the test cannot tell the formula from a wrong one ({wrong:.0f})"


@pytest.mark.parametrize("name", ["instance", "drs"])
def test_instance_epochs_draw_every_sample_once(name: str) -> None:
    sampler = sw.create_sampler(name, targets=TARGETS, seed=11, num_epochs=EPOCHS)
    for epoch in (0, 47):  # drs: instance sampling before 0.8 E = 48
        sampler.set_epoch(epoch)
        assert sorted(sampler) == list(range(len(TARGETS)))
    longer = sw.create_sampler(name, targets=TARGETS, num_samples=2 * len(TARGETS) + 5, num_epochs=EPOCHS)
    longer.set_epoch(0)
    counts = np.bincount(list(longer), minlength=len(TARGETS))
    assert counts.sum() == 2 * len(TARGETS) + 5 and set(counts.tolist()) == {2, 3}  # whole passes, then a part


def test_samples_of_a_class_are_drawn_uniformly() -> None:
    sampler = sw.create_sampler("class_balanced", targets=TARGETS, seed=5, num_samples=50_000)
    sampler.set_epoch(0)
    per_sample = np.bincount(list(sampler), minlength=len(TARGETS))
    statistic, freedom = 0.0, 0
    for c in range(len(COUNTS)):
        members = per_sample[TARGETS.eq(c).numpy()]
        statistic += pearson(members, np.full(len(members), 1 / len(members)))
        freedom += len(members) - 1
    bound = stats.chi2.ppf(1 - 1e-6, freedom)
    assert statistic < bound
    members = per_sample[(TARGETS == 0).numpy()]  # power: members drawn 2:3 by halves would be caught
    lopsided = np.repeat([2.0, 3.0], [250, 250])
    assert pearson(members, lopsided / lopsided.sum()) > stats.chi2.ppf(1 - 1e-6, 499)


def test_an_epoch_of_a_million_indices_is_one_vectorised_draw() -> None:
    sampler = sw.create_sampler("sqrt", targets=TARGETS, num_samples=1_000_000)
    indices = sampler.sampler.epoch_indices(0)
    assert indices.shape == (1_000_000,) and indices.dtype == torch.long
    assert int(indices.min()) >= 0 and int(indices.max()) < len(TARGETS)


# -- determinism and state -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTINS)
def test_the_sequence_is_a_function_of_seed_and_epoch(name: str) -> None:
    def sequence(seed: int, epoch: int, *, visit_first: int | None = None) -> list[int]:
        sampler = sw.create_sampler(name, targets=TARGETS, seed=seed, num_epochs=10, num_samples=300)
        if visit_first is not None:
            sampler.set_epoch(visit_first)
            list(sampler)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert sequence(3, 9) == sequence(3, 9, visit_first=2)  # whatever was drawn before (a resumed run)
    assert sequence(3, 9) != sequence(3, 8) and sequence(3, 9) != sequence(4, 9)


@pytest.mark.parametrize("name", BUILTINS)
def test_state_dict_round_trip(name: str) -> None:
    def make() -> sw.ShardedSampler:
        return sw.create_sampler(name, targets=TARGETS, seed=2, num_epochs=10, batch_size=6, num_replicas=3, rank=1)

    sampler = make()
    sampler.set_epoch(9)
    state = sampler.state_dict()
    restored = make()
    restored.load_state_dict(state)
    assert restored.epoch == 9 and list(restored) == list(sampler)
    assert json.loads(json.dumps(state)) == state  # plain data: fits any checkpoint


def test_the_instance_sampler_is_the_engines_former_shuffle() -> None:
    sampler = sw.create_sampler("instance", targets=TARGETS, seed=3)
    sampler.set_epoch(4)
    generator = torch.Generator().manual_seed(sw.sampling.epoch_seed(3, 4, stream=1))
    assert list(sampler) == torch.randperm(len(TARGETS), generator=generator).tolist()


# -- repeat_factor: LVIS's epochs ---------------------------------------------------------------------------------

HAM10000 = {"NV": 6705, "MEL": 1113, "BKL": 1099, "BCC": 514, "AKIEC": 327, "VASC": 142, "DF": 115}  # the release's
HAM_TARGETS = torch.repeat_interleave(torch.arange(7), torch.tensor(list(HAM10000.values())))
HAM_FACTORS = np.maximum(1.0, np.sqrt(0.1 / (np.array(list(HAM10000.values())) / 10015)))  # r_c at t = 0.1


def repeat_sampler(targets: torch.Tensor = HAM_TARGETS, **options) -> sw.ShardedSampler:
    return sw.create_sampler("repeat_factor", targets=targets, threshold=0.1, seed=7, **options)


def test_repeat_factor_repeats_each_image_its_factor_per_epoch() -> None:
    """LVIS (Gupta et al. 2019): image i is repeated r_i times per epoch, floor(r_i) or one more (detectron2's
    stochastic rounding), so NV, MEL and BKL images come exactly once, and over many epochs every class's images
    come r_c times on average; the epoch grows to about sum_i r_i = 10,923 images."""
    sampler, epochs = repeat_sampler(), 200
    per_image = np.zeros(len(HAM_TARGETS))
    lengths = []
    whole = np.floor(HAM_FACTORS)[HAM_TARGETS.numpy()]
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        lengths.append(len(sampler))  # known before iterating: what the loader and the progress bar read
        counts = np.bincount(list(sampler), minlength=len(HAM_TARGETS))
        assert counts.sum() == lengths[-1]
        assert ((counts == whole) | (counts == whole + 1)).all(), f"epoch {epoch}: a repeat outside floor(r_i) + 0/1"
        per_image += counts
    fraction = HAM_FACTORS - np.floor(HAM_FACTORS)
    classes = HAM_TARGETS.numpy()
    for c, name in enumerate(HAM10000):
        draws = epochs * HAM10000[name]  # Bernoulli(frac(r_c)) per image and epoch
        spread = np.sqrt(draws * fraction[c] * (1 - fraction[c])) or 1e-9
        extra = per_image[classes == c].sum() - draws * np.floor(HAM_FACTORS[c])
        assert abs(extra - draws * fraction[c]) < 5 * spread, name
    mean_repeats = {name: per_image[classes == c].mean() / epochs for c, name in enumerate(HAM10000)}
    assert list(mean_repeats.values()) == pytest.approx([1.0, 1.0, 1.0, 1.396, 1.750, 2.656, 2.951], abs=0.01)
    expected = float((HAM_FACTORS * np.array(list(HAM10000.values()))).sum())
    assert round(expected) == 10923 and sampler.sampler.expected_length == pytest.approx(expected)
    spread = np.sqrt((fraction * (1 - fraction) * np.array(list(HAM10000.values()))).sum())
    assert all(abs(length - expected) < 5 * spread for length in lengths) and len(set(lengths)) > 1
    assert abs(np.mean(lengths) - expected) < 5 * spread / np.sqrt(epochs)
    assert sampler.sampler.expected_repeats().tolist() == pytest.approx(HAM_FACTORS.tolist())


def test_repeat_factor_fixed_length_keeps_the_former_epoch_of_n_draws() -> None:
    """fixed_length=true (or num_samples) draws N times with replacement, p_c ∝ N_c r_c: each image r_c N / sum r_i
    times in expectation, 0.917 r_c on HAM10000 at t = 0.1; the draw is the former sampler's."""
    fixed = repeat_sampler(fixed_length=True)
    assert len(fixed) == 10015 and fixed.sampler.fixed_length
    assert fixed.sampler.expected_repeats().tolist() == pytest.approx((HAM_FACTORS * 10015 / 10923.2254).tolist())
    assert round(float(fixed.sampler.expected_repeats()[0]), 3) == 0.917
    fixed.set_epoch(3)
    reference = sw.ClassSampler.epoch_indices(fixed.sampler, 3)  # the former draw: classes by p_c, then uniformly
    assert list(fixed) == reference.tolist()
    assert repeat_sampler(num_samples=500).sampler.fixed_length  # an epoch length given: fixed
    with pytest.raises(sw.ConfigError, match="num_samples fixes the epoch length, and fixed_length=false grows it"):
        repeat_sampler(num_samples=500, fixed_length=False)


def test_repeat_factor_without_a_rare_class_is_the_instance_sampler() -> None:
    instance = sw.create_sampler("instance", targets=HAM_TARGETS, seed=7)
    repeat = sw.create_sampler("repeat_factor", targets=HAM_TARGETS, seed=7)  # t = 0.001: every r_c is 1
    for epoch in (0, 5):
        instance.set_epoch(epoch)
        repeat.set_epoch(epoch)
        assert len(repeat) == 10015 and list(repeat) == list(instance)


def test_repeat_factor_epochs_follow_from_seed_and_epoch_and_resume() -> None:
    def sequence(seed: int, epoch: int, visit_first: int | None = None) -> list[int]:
        sampler = sw.create_sampler("repeat_factor", targets=TARGETS, threshold=THRESHOLD, seed=seed)
        if visit_first is not None:
            sampler.set_epoch(visit_first)
            list(sampler)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert sequence(3, 9) == sequence(3, 9, visit_first=2) == sequence(3, 9, visit_first=9)
    assert sequence(3, 9) != sequence(3, 8) and sequence(3, 9) != sequence(4, 9)
    sampler = sw.create_sampler("repeat_factor", targets=TARGETS, threshold=THRESHOLD, seed=3)
    sampler.set_epoch(9)
    state = sampler.state_dict()
    assert state["sampler"] == {"epoch": 9, "fixed_length": False} and json.loads(json.dumps(state)) == state
    restored = sw.create_sampler("repeat_factor", targets=TARGETS, threshold=THRESHOLD, seed=3)
    restored.load_state_dict(state)
    assert len(restored) == len(sampler) and list(restored) == sequence(3, 9)
    check_sampler(repeat_factor, targets=TARGETS, threshold=THRESHOLD, num_epochs=4)


def test_a_repeat_factor_state_saved_before_lvis_continues_with_fixed_length_epochs() -> None:
    """A state without fixed_length was written when every repeat_factor epoch had N draws: its run goes on so."""
    old = {"epoch": 4, "sampler": {"epoch": 4}}
    resumed = sw.create_sampler("repeat_factor", targets=TARGETS, threshold=THRESHOLD, seed=3)
    with pytest.warns(UserWarning, match="continues with fixed-length epochs of 785 draws, as it began"):
        resumed.load_state_dict(old)
    fixed = sw.create_sampler("repeat_factor", targets=TARGETS, threshold=THRESHOLD, seed=3, fixed_length=True)
    fixed.set_epoch(4)
    assert resumed.sampler.fixed_length and len(resumed) == 785 and list(resumed) == list(fixed)
    for epoch in (5, 6):
        resumed.set_epoch(epoch)
        fixed.set_epoch(epoch)
        assert list(resumed) == list(fixed)
    asked = sw.create_sampler("repeat_factor", targets=TARGETS, threshold=THRESHOLD, fixed_length=False)
    with pytest.raises(ValueError, match="the state is of a repeat_factor sampler with fixed_length=True"):
        asked.load_state_dict(old)
    with pytest.raises(ValueError, match="fixed_length=False, but this one has fixed_length=True"):
        fixed.load_state_dict({"epoch": 1, "sampler": {"epoch": 1, "fixed_length": False}})


def lvis_image_factors(multi_hot: np.ndarray, threshold: float) -> np.ndarray:
    """LVIS's rule, written out per image: f_l = images with l / N, r_l = max(1, sqrt(t / f_l)), r_i = max r_l."""
    n = len(multi_hot)
    label_factor = {
        label: max(1.0, np.sqrt(threshold / (multi_hot[:, label].sum() / n)))
        for label in range(multi_hot.shape[1])
        if multi_hot[:, label].any()
    }
    return np.array([max([label_factor[label] for label in np.flatnonzero(row)], default=1.0) for row in multi_hot])


def random_multi_hot(seed: int, n: int, rates: list[float]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(n, len(rates), generator=generator) < torch.tensor(rates)).long()


@pytest.mark.parametrize(
    ("seed", "rates", "threshold"),
    [
        (0, [0.6, 0.1, 0.03, 0.0, 0.3], 0.2),  # label 3 absent from every image; many images have no label
        (1, [0.5, 0.02, 0.2], 0.05),
        (2, [0.04], 0.3),  # L = 1: most images have no label
        (3, [1.0, 0.01], 0.1),  # every image holds label 0
    ],
)
def test_multilabel_repeat_factors_are_lvis_rarest_label_rule(seed: int, rates: list[float], threshold: float) -> None:
    targets = random_multi_hot(seed, 400, rates)
    expected = lvis_image_factors(targets.numpy(), threshold)
    for given in (targets, targets.float(), targets.bool(), targets.to(torch.uint8)):  # any numeric 0/1 dtype
        sampler = sw.create_sampler("repeat_factor", targets=given, threshold=threshold, seed=0).sampler
        assert sampler.multilabel
        np.testing.assert_allclose(sampler.image_factors.numpy(), expected, rtol=1e-12)
        assert sampler.expected_length == pytest.approx(expected.sum())
    assert (expected == 1).sum() > 0 and (expected > 1).sum() > 0


def test_multilabel_repeat_factor_with_one_hot_targets_is_the_class_index_rule() -> None:
    """One label per image: LVIS's multi-label rule is the class-index rule (the same r_i for every image)."""
    one_hot = torch.nn.functional.one_hot(TARGETS, 5)
    multi = sw.create_sampler("repeat_factor", targets=one_hot, threshold=THRESHOLD, seed=3).sampler
    single = sw.create_sampler("repeat_factor", targets=TARGETS, threshold=THRESHOLD, seed=3).sampler
    assert torch.equal(multi.image_factors, single.image_factors)
    assert torch.equal(multi.repeat_factors, single.repeat_factors)
    for epoch in (0, 4):  # the growing epoch draws from the per-image factors alone: the same indices
        assert torch.equal(multi.epoch_indices(epoch), single.epoch_indices(epoch))


def test_multilabel_repeat_factor_epochs_repeat_each_image_its_factor() -> None:
    """Each image floor(r_i) or floor(r_i) + 1 times per epoch, r_i on average over many epochs."""
    targets = random_multi_hot(4, 300, [0.5, 0.08, 0.02, 0.0])
    factors = lvis_image_factors(targets.numpy(), 0.25)
    sampler, epochs = sw.create_sampler("repeat_factor", targets=targets, threshold=0.25, seed=5), 400
    total = np.zeros(len(targets))
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        counts = np.bincount(list(sampler), minlength=len(targets))
        assert len(sampler) == counts.sum()
        assert ((counts == np.floor(factors)) | (counts == np.floor(factors) + 1)).all()
        total += counts
    fraction = factors - np.floor(factors)
    spread = np.sqrt(epochs * fraction * (1 - fraction)) + 1e-9
    assert (np.abs(total - epochs * factors) < 5 * spread + 1e-9).all()  # per image: Binomial(epochs, frac(r_i))
    grand = np.sqrt((epochs * fraction * (1 - fraction)).sum())
    assert abs(total.sum() - epochs * factors.sum()) < 5 * grand
    assert abs(total.sum() - epochs * np.ceil(factors).sum()) > 5 * grand  # the test can tell a wrong rounding


def test_multilabel_repeat_factor_fixed_length_draws_images_by_their_factor() -> None:
    """fixed_length: num_samples draws, image i with probability r_i / sum_j r_j (chi-square over the images)."""
    targets = random_multi_hot(6, 60, [0.5, 0.1, 0.05])
    factors = lvis_image_factors(targets.numpy(), 0.3)
    sampler = sw.create_sampler("repeat_factor", targets=targets, threshold=0.3, num_samples=30_000, seed=2)
    assert sampler.sampler.fixed_length and len(sampler) == 30_000
    sampler.set_epoch(0)
    observed = np.bincount(list(sampler), minlength=60)
    bound = stats.chi2.ppf(1 - 1e-6, 59)
    assert stats.chisquare(observed, 30_000 * factors / factors.sum()).statistic < bound
    uniform = np.full(60, 30_000 / 60)
    assert stats.chisquare(observed, uniform).statistic > bound  # the test can tell it from no repeat factor


def test_multilabel_repeat_factor_is_deterministic_and_resumes() -> None:
    targets = random_multi_hot(7, 200, [0.4, 0.05, 0.01])

    def sequence(seed: int, epoch: int, **options) -> list[int]:
        sampler = sw.create_sampler("repeat_factor", targets=targets, threshold=0.2, seed=seed, **options)
        sampler.set_epoch(epoch)
        return list(sampler)

    for options in ({}, {"fixed_length": True}):
        assert sequence(3, 5, **options) == sequence(3, 5, **options)
        assert sequence(3, 5, **options) != sequence(3, 6, **options) != sequence(4, 5, **options)
        sampler = sw.create_sampler("repeat_factor", targets=targets, threshold=0.2, seed=3, **options)
        sampler.set_epoch(5)
        state = sampler.state_dict()
        assert json.loads(json.dumps(state)) == state
        restored = sw.create_sampler("repeat_factor", targets=targets, threshold=0.2, seed=3, **options)
        restored.load_state_dict(state)
        assert len(restored) == len(sampler) and list(restored) == sequence(3, 5, **options)
        assert all(0 <= i < len(targets) for i in list(restored))


def test_multilabel_repeat_factor_facts_and_bad_targets() -> None:
    targets = random_multi_hot(8, 50, [0.5, 0.1])
    positives = targets.sum(0)
    table = torch.stack([50 - positives, positives])  # the [2, L] table the multilabel weighters read
    sw.create_sampler("repeat_factor", targets=targets, class_counts=table, num_classes=2, seed=0)
    assert "multilabel" in plugins.get_registry().tasks("samplers", "repeat_factor")
    assert "multilabel" not in plugins.get_registry().tasks("samplers", "class_balanced")
    with pytest.raises(sw.ConfigError, match="disagree with the multi-hot targets"):
        sw.create_sampler("repeat_factor", targets=targets, class_counts=table.flip(0), seed=0)
    with pytest.raises(sw.ConfigError, match="multi-hot matrix \\[N, L\\] of 0/1"):
        sw.create_sampler("repeat_factor", targets=targets * 2, seed=0)
    with pytest.raises(sw.ConfigError, match="multi-hot matrix \\[N, L\\] of 0/1"):
        sw.create_sampler("repeat_factor", targets=targets[None], seed=0)
    with pytest.raises(ValueError, match="must hold only 0 and 1"):
        RepeatFactorSampler(targets.float() * 0.5)
    with pytest.raises(ValueError, match="but the multi-hot targets have 2 labels"):
        RepeatFactorSampler(targets, num_classes=3)


def test_a_growing_epoch_loads_through_a_dataloader_and_shards_equally() -> None:
    targets = torch.arange(103) % 5  # 103 samples: r_c = sqrt(0.3 / 0.2) = 1.22 for every class at t = 0.3
    options = {"targets": targets, "threshold": 0.3, "seed": 1}
    single = sw.create_sampler("repeat_factor", **options)
    loader = torch.utils.data.DataLoader(list(range(103)), batch_size=8, sampler=single)
    lengths = set()
    for epoch in range(4):
        single.set_epoch(epoch)
        lengths.add(len(single))
        assert len(loader) == -(-len(single) // 8)
        assert [i for batch in loader for i in batch.tolist()] == list(single)
    assert len(lengths) > 1  # the epochs differ in length
    for world in (2, 3):
        made = [sw.create_sampler("repeat_factor", batch_size=6 * world, num_replicas=world, rank=r, **options)
                for r in range(world)]  # fmt: skip
        for epoch in range(4):
            single.set_epoch(epoch)
            for sampler in made:
                sampler.set_epoch(epoch)
            parts = [list(sampler) for sampler in made]
            assert len({len(part) for part in parts}) == 1 and len(parts[0]) == len(made[0])
            padded = list(made[0].global_indices())
            assert len(padded) == -(-len(single) // world) * world and padded[: len(single)] == list(single)
            steps = [[i for part in parts for i in part[k : k + 6]] for k in range(0, len(parts[0]), 6)]
            assert [i for step in steps for i in step] == padded  # each step's parts, in rank order: a global batch


# -- sharding --------------------------------------------------------------------------------------------------


def shares(name: str, length: int, batch: int, world: int, **options) -> list[list[int]]:
    targets = torch.arange(length) % 3  # every class present once length >= 3
    made = [
        sw.create_sampler(name, targets=targets, seed=1, num_epochs=5, batch_size=batch, num_replicas=world, rank=r,
                          **options)
        for r in range(world)
    ]  # fmt: skip
    for sampler in made:
        sampler.set_epoch(4)
    return [list(sampler) for sampler in made]


@pytest.mark.parametrize(("length", "batch", "world", "kept"), [
    (49, 8, 1, 48),  # a last batch of one: dropped
    (50, 8, 1, 50),  # of two: kept
    (50, 8, 2, 48),  # two processes, one sample each: dropped on both
    (52, 8, 2, 52),  # two each: kept
    (37, 6, 3, 36),  # padded to 39: one each, dropped
    (41, 6, 3, 42),  # padded to 42: two each, kept
    (1, 2, 1, 0),  # nothing left: the engine refuses it
])  # fmt: skip
def test_min_part_drops_a_last_batch_that_would_leave_a_process_one_sample(length, batch, world, kept) -> None:
    parts = shares("instance", length, batch, world, min_part=2)
    assert len({len(p) for p in parts}) == 1 and sum(map(len, parts)) == kept
    assert sum(map(len, shares("instance", length, batch, world))) == -(-length // world) * world  # default: kept
    dropped = shares("instance", length, batch, world, drop_last=True)
    assert sum(map(len, dropped)) == (-(-length // world) * world) // batch * batch


def test_without_a_batch_size_the_shares_interleave_as_distributed_sampler_does() -> None:
    parts = shares("sqrt", 11, None, 3)
    single = shares("sqrt", 11, None, 1)[0]
    padded = single + single[:1]
    assert parts == [padded[r::3] for r in range(3)]


def test_the_sampler_plugin_sees_only_the_global_sequence() -> None:
    sampler = sw.create_sampler("class_balanced", targets=TARGETS, batch_size=4, num_replicas=2, rank=1)
    assert isinstance(sampler, sw.Sampler) and isinstance(sampler.sampler, sw.ClassSampler)
    assert sampler.rebalances_classes and sampler.name == "class_balanced"
    assert not sw.create_sampler("instance", targets=TARGETS).rebalances_classes


def test_smallest_part_is_two_for_a_model_with_batch_norm() -> None:
    assert smallest_part(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))) == 2
    assert smallest_part(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4))) == 1


# -- bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "message"), [
    ({"name": "clas_balanced"}, "unknown sampler 'clas_balanced'; choose one of: class_balanced, drs, instance, "
                                "progressive, repeat_factor, sqrt. Did you mean 'class_balanced'?"),
    ({"name": "sqrt", "threshold": 0.1}, "sampler 'sqrt' does not accept option(s) threshold; its options are: "
                                         "num_samples, skip_empty"),
    ({"name": "sqrt", "num_samples": 0}, "num_samples (the epoch length) must be a positive integer, got 0"),
    ({"name": "instance", "num_samples": -5}, "num_samples (the epoch length) must be a positive integer, got -5"),
    ({"name": "progressive"}, "sampler 'progressive' needs num_epochs (total training epochs)"),
    ({"name": "repeat_factor", "threshold": 0}, "threshold must lie in (0, 1], got 0"),
    ({"name": "class_balanced", "num_classes": 6}, "class 5 has no training samples, and a class with no training "
                                                   "samples is never drawn"),
    ({"name": "instance", "class_counts": [1, 2, 3, 4, 5]}, "disagree with the targets'"),
])  # fmt: skip
def test_bad_sampler_input_is_one_config_error(options: dict, message: str) -> None:
    with pytest.raises(sw.ConfigError) as error:
        sw.create_sampler(targets=TARGETS, **options)
    assert message in str(error.value)


def test_skip_empty_balances_the_classes_present() -> None:
    sampler = sw.create_sampler("class_balanced", targets=TARGETS, num_classes=6, skip_empty=True, num_samples=6000)
    sampler.set_epoch(0)
    counts = np.bincount(TARGETS[list(sampler)].numpy(), minlength=6)
    assert counts[5] == 0 and pearson(counts[:5], np.full(5, 0.2)) < stats.chi2.ppf(1 - 1e-6, 4)


def test_a_factory_that_returns_no_sampler_is_a_plugin_error() -> None:
    class NotASampler:
        pass

    class Plugin:
        @sw.hookimpl
        def register_samplers(self, register):
            register("broken", lambda targets: NotASampler())

    registry = plugins.load_plugins(entry_points=False, modules=[("broken", Plugin())])
    with pytest.raises(sw.PluginError, match=r"returned NotASampler, not a sampleweight\.Sampler"):
        sw.create_sampler("broken", targets=TARGETS, registry=registry)


def test_a_sampler_whose_length_lies_is_a_plugin_error() -> None:
    class Short(sw.BaseSampler):
        def epoch_indices(self, epoch):
            return torch.arange(self.num_samples - 1)

    with pytest.raises(sw.PluginError, match="Short yielded 4 indices in epoch 0, but its len"):
        list(sw.ShardedSampler(Short(5)))


# -- a third-party sampler, through a real entry point -----------------------------------------------------------

THIRD_PARTY = """
import torch
import sampleweight as sw

class RarestFirst(sw.BaseSampler):
    '''Every epoch: the samples sorted from the rarest class to the most common (a curriculum).'''

    def __init__(self, targets, class_counts, seed=0, reverse=False):
        super().__init__(len(targets), seed)
        rarity = class_counts[targets]
        self.order = torch.argsort(rarity, stable=True)
        if reverse:
            self.order = self.order.flip(0)

    def epoch_indices(self, epoch):
        return self.order

@sw.hookimpl
def register_samplers(register):
    register("rarest_first", RarestFirst)
"""


def test_a_third_party_sampler_is_discovered_and_trains(mount_plugin, tmp_path) -> None:
    mount_plugin(
        "sw-test-rarest", "0.3", entry_points={"rarest": "sw_test_rarest"}, modules={"sw_test_rarest": THIRD_PARTY}
    )
    info = next(p for p in sw.list_plugins() if p.name == "rarest")
    assert (info.distribution, info.samplers, info.error) == ("sw-test-rarest", ["rarest_first"], None)
    assert "rarest_first" in sw.list_samplers()
    sampler = sw.create_sampler("rarest_first", targets=TARGETS)
    assert TARGETS[list(sampler)[:5]].tolist() == [4] * 5
    result = runner.invoke(app, ["plugins", "--json"])
    assert json.loads(result.output)[-1]["samplers"] == ["rarest_first"]
    out = tmp_path / "run"
    train(tiny_config(out, sampler="rarest_first", sampler_options={"reverse": True}, epochs=1))
    drawn = RunDirectory(out).epochs()[0]["drawn"]
    assert sum(drawn.values()) == 128
    assert json.loads((out / "config.json").read_text())["sampler"] == "rarest_first"


# -- in the engine ------------------------------------------------------------------------------------------------


def test_metrics_record_what_the_sampler_drew_each_epoch(tmp_path) -> None:
    from sampleweight.data import read_dataset, split_indices

    train(tiny_config(tmp_path / "balanced", sampler="class_balanced", epochs=2))
    train(tiny_config(tmp_path / "instance", epochs=1))
    records = read_dataset("synthetic:160")
    train_idx, _ = split_indices(records, 0, 0)
    targets = torch.as_tensor(np.asarray(records.labels)[train_idx])
    expected = sw.create_sampler("class_balanced", targets=targets, num_classes=7, seed=0, batch_size=16)
    for line in RunDirectory(tmp_path / "balanced").epochs():
        expected.set_epoch(line["epoch"])
        counts = np.bincount(targets[list(expected)].numpy(), minlength=7)
        assert line["drawn"] == dict(zip(records.classes, counts.tolist(), strict=True))
    (line,) = RunDirectory(tmp_path / "instance").epochs()
    counts = np.bincount(targets.numpy(), minlength=7)
    assert line["drawn"] == dict(zip(records.classes, counts.tolist(), strict=True))  # every image once


def tiny_training_targets() -> tuple[torch.Tensor, list[str]]:
    """The class indices of the tiny run's training side (split 0, seed 0), and its class names."""
    from sampleweight.data import read_dataset, split_indices

    records = read_dataset("synthetic:160")
    train_idx, _ = split_indices(records, 0, 0)
    return torch.as_tensor(np.asarray(records.labels)[train_idx]), list(records.classes)


def test_a_run_whose_epochs_grow_counts_each_epochs_batches_and_images(tmp_path, monkeypatch) -> None:
    """repeat_factor's epochs differ in length (159, 157, 164 images here): the batch bar and images_per_second
    follow each epoch."""
    from sampleweight.engine import progress

    bars = []
    original = progress.TrainingProgress.end_epoch

    def end_epoch(self, epoch, record):
        bar = next(task for task in self._progress.tasks if task.id == self._batch_task)
        bars.append((bar.completed, bar.total))
        original(self, epoch, record)

    monkeypatch.setattr(progress.TrainingProgress, "end_epoch", end_epoch)
    out = tmp_path / "run"
    train(tiny_config(out, epochs=3, quiet=False, sampler="repeat_factor", sampler_options={"threshold": 0.2}))
    lines = RunDirectory(out).epochs()
    assert [sum(line["drawn"].values()) for line in lines] == [159, 157, 164]
    assert bars == [(10, 10), (10, 10), (11, 11)]  # batches of 16; the bar's total is the epoch's own
    for line in lines:
        assert line["images_per_second"] * line["seconds"] == pytest.approx(sum(line["drawn"].values()))


def test_a_repeat_factor_run_begun_before_lvis_resumes_with_fixed_length_epochs(
    tmp_path, monkeypatch, interrupt_after_epoch
) -> None:
    """A checkpoint whose sampler state lacks fixed_length was written when repeat_factor drew N per epoch: the
    resumed run keeps drawing so (and says so), instead of changing its sampler mid-run."""
    from sampleweight.engine.checkpoint import load_checkpoint, save_checkpoint

    options = {"epochs": 3, "sampler": "repeat_factor", "sampler_options": {"threshold": 0.2}}
    out = tmp_path / "run"
    interrupt_after_epoch(0)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(out, **options))
    monkeypatch.undo()
    state = load_checkpoint(out / "checkpoint.pt")
    del state["sampler"]["sampler"]["fixed_length"]  # as the version before LVIS's epochs saved it
    save_checkpoint(out / "checkpoint.pt", state)
    with pytest.warns(UserWarning, match="its run continues with fixed-length epochs of 128 draws, as it began"):
        train(tiny_config(out, **options), resume=True)
    targets, classes = tiny_training_targets()
    fixed = sw.create_sampler("repeat_factor", targets=targets, num_classes=7, threshold=0.2, fixed_length=True,
                              batch_size=16, min_part=2)  # fmt: skip
    for line in RunDirectory(out).epochs()[1:]:
        fixed.set_epoch(line["epoch"])
        counts = np.bincount(targets[fixed.global_indices()].numpy(), minlength=7)
        assert line["drawn"] == dict(zip(classes, counts.tolist(), strict=True)) and counts.sum() == 128
    config = json.loads((out / "config.json").read_text())
    assert config["sampler_options"] == {"threshold": 0.2}  # the run's options as given: resumable as before


def test_a_rebalancing_sampler_with_a_rebalancing_weighter_warns_once(tmp_path) -> None:
    args = ["train", *TINY, "--epochs", "1"]
    both = runner.invoke(app, [*args, "--sampler", "sqrt", "--weighter", "es", "--out", str(tmp_path / "a")])
    assert both.exit_code == 0, both.output
    warnings = [line for line in both.output.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: sampler sqrt and weighter es both rebalance the classes, so rare classes end up favoured over "
        "common ones; use --sampler instance or another weighter to rebalance once (docs/sampling.md)"
    ]
    once = runner.invoke(app, [*args, "--sampler", "sqrt", "--weighter", "ohem", "--out", str(tmp_path / "b")])
    assert once.exit_code == 0 and "warning" not in once.output


def test_every_way_a_run_rebalances_is_named_and_two_together_warn() -> None:
    from sampleweight.engine.config import TrainConfig
    from sampleweight.engine.rebalancing import rebalancing, rebalancing_twice, saved_run_rebalancing

    plain = TrainConfig(weighters=["ohem"])
    assert rebalancing(plain, sampler_rebalances=False) == []
    assert rebalancing_twice(plain, sampler_rebalances=True) is None  # a rebalancing sampler alone: once
    for loss in ("logit_adjusted", "balanced_softmax"):
        config = TrainConfig(loss=loss, sampler="class_balanced")
        assert rebalancing(config, sampler_rebalances=True) == ["sampler class_balanced", f"loss {loss}"]
        assert rebalancing_twice(config, sampler_rebalances=True) == (
            f"sampler class_balanced and loss {loss} both rebalance the classes, so rare classes end up favoured "
            "over common ones; use --sampler instance or another loss to rebalance once (docs/sampling.md)"
        )
    ldam_drs = TrainConfig(loss="ldam", sampler="drs")  # Cao et al.'s LDAM-DRS: named, not warned about
    assert rebalancing(ldam_drs, sampler_rebalances=True) == ["sampler drs", "loss ldam"]
    assert rebalancing_twice(ldam_drs, sampler_rebalances=True) is None
    no_shift = TrainConfig(loss="logit_adjusted", loss_options={"tau": 0.0}, sampler="sqrt")
    assert rebalancing_twice(no_shift, sampler_rebalances=True) is None  # tau = 0 is plain cross-entropy
    three = TrainConfig(loss="balanced_softmax", weighters=["drw"], sampler="sqrt")
    assert rebalancing_twice(three, sampler_rebalances=True).startswith(
        "sampler sqrt and weighter drw and loss balanced_softmax all rebalance the classes"
    )
    # a crt/lws stage learns its classifier again: only the stage's sampler and loss count
    es_run = TrainConfig(weighters=["es"], sampler="sqrt")
    assert rebalancing(es_run, True, {"method": "crt", "sampler": "instance", "loss": "ce"}) == []
    assert rebalancing(es_run, True, {"method": "crt", "sampler": "instance", "loss": "balanced_softmax"}) == [
        "retrained stage crt (loss balanced_softmax)"
    ]
    assert rebalancing(plain, False, {"method": "lws"}) == ["retrained stage lws (class_balanced batches)"]
    assert rebalancing(es_run, True, {"method": "tau_norm"}) == [
        "sampler sqrt",
        "weighter es",
        "retrained stage tau_norm",
    ]
    assert rebalancing(es_run, True, {"method": "ncm"}) == ["retrained stage ncm"]
    counts = [50, 5, 1, 2, 9, 9, 9]
    saved = {"model": "cbam_vgg16", "weighters": ["cb"], "sampler": "sqrt", "retrain": {"method": "tau_norm"}}
    assert saved_run_rebalancing(saved, counts) == ["sampler sqrt", "weighter cb", "retrained stage tau_norm"]
    assert saved_run_rebalancing({**saved, "sampler": "instance", "retrain": None}, counts) == ["weighter cb"]
    assert saved_run_rebalancing({"model": "cbam_vgg16"}, counts) == []  # an old run: today's defaults
    assert saved_run_rebalancing({"model": "cbam_vgg16", "sampler": "not_installed"}, counts) == [
        "sampler not_installed"
    ]  # a sampler whose plugin is not installed here counts as rebalancing


def test_the_run_name_gains_the_sampler_unless_instance() -> None:
    from sampleweight.engine.config import load_config

    config = load_config(**tiny_config(None))
    assert config.run_name == "cbam_vgg16-ce-none-adam-s0"
    assert load_config(**tiny_config(None), sampler="drs").run_name == "cbam_vgg16-ce-none-adam-s0-drs"


def image_folder(root: Path, labels: list[str], corrupt: tuple[int, ...] = ()) -> Path:
    """A labels.csv layout: one lesion per image; the images listed in ``corrupt`` do not decode."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    generator = np.random.default_rng(0)
    rows = ["image,label,group"]
    for i, label in enumerate(labels):
        path = root / "images" / f"img{i}.png"
        if i in corrupt:
            path.write_bytes(b"not an image")
        else:
            Image.fromarray(generator.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path)
        rows.append(f"img{i},{label},lesion{i}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def folder_args(folder: Path, tmp_path: Path, batch: int) -> list[str]:
    return ["train", "--data", str(folder), "--backbone", "test_resnet", "--no-pretrained", "--image-size", "32",
            "--batch-size", str(batch), "--epochs", "2", "--quiet", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip


def test_a_last_batch_of_one_image_is_dropped_for_a_model_with_batch_norm(tmp_path) -> None:
    folder = image_folder(tmp_path / "data", ["a" if i % 3 else "b" for i in range(61)])  # 49 training images
    result = runner.invoke(app, [*folder_args(folder, tmp_path, 8), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    lines = RunDirectory(tmp_path / "run").epochs()
    assert [sum(line["drawn"].values()) for line in lines] == [48, 48]  # 6 batches of 8; the 49th sample waits


def test_skip_bad_leaving_one_image_over_a_batch_trains(tmp_path) -> None:
    from sampleweight.data import read_dataset, split_indices

    folder = image_folder(tmp_path / "data", ["a" if i % 3 else "b" for i in range(63)])
    train_idx, _ = split_indices(read_dataset(str(folder)), 0, 0)
    assert len(train_idx) == 50
    (folder / "images" / f"img{train_idx[0]}.png").write_bytes(b"broken")  # the split stays; 49 training images
    result = runner.invoke(app, [*folder_args(folder, tmp_path, 8), "--skip-bad", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert sum(RunDirectory(tmp_path / "run").epochs()[0]["drawn"].values()) == 48


def test_the_sampler_is_checked_before_any_image_is_read(tmp_path) -> None:
    cases = [({"sampler": "nope"}, "unknown sampler 'nope'"),
             ({"sampler_options": {"q": 1}}, "sampler 'instance' does not accept option(s) q")]  # fmt: skip
    for options, message in cases:
        with pytest.raises(sw.ConfigError, match=re.escape(message)):
            train(tiny_config(tmp_path / "run", data=str(tmp_path / "no such folder"), **options))


def test_a_batch_of_one_sample_per_step_is_refused_for_a_model_with_batch_norm(tmp_path) -> None:
    with pytest.raises(sw.ConfigError, match="--batch-size 1 gives each process 1 sample per step, and a model with "
                       "BatchNorm needs at least 2; use --batch-size 2 or more"):  # fmt: skip
        train(tiny_config(tmp_path / "run", batch_size=1))
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_rebalancing_sampler_refuses_a_class_with_no_training_image(tmp_path) -> None:
    labels = ["a" if i % 2 else "b" for i in range(30)] + ["c"]
    folder = image_folder(tmp_path / "data", labels, corrupt=(30,))  # c's only image does not decode
    args = [*folder_args(folder, tmp_path, 8), "--skip-bad", "--sampler", "class_balanced"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.startswith("error")]
    assert lines == [
        "error: sampler 'class_balanced': c has no training samples, and a class with no training samples is never "
        "drawn, so the classes cannot be balanced; pass skip_empty=true (--sampler-option skip_empty=true) to "
        "balance the other classes, or use the instance sampler"
    ]
    fine = runner.invoke(app, [*args, "--sampler-option", "skip_empty=true", "--out", str(tmp_path / "ok")])
    assert fine.exit_code == 0, fine.output
    assert all(line["drawn"]["c"] == 0 for line in RunDirectory(tmp_path / "ok").epochs())


@pytest.mark.parametrize(("args", "message"), [
    (["--sampler", "nope"], "unknown sampler 'nope'; choose one of: class_balanced, drs, instance, progressive, "
                            "repeat_factor, sqrt"),
    (["--sampler", "drs", "--sampler-option", "threshold=0.1"], "sampler 'drs' does not accept option(s) threshold"),
    (["--sampler-option", "num_samples=0"], "num_samples (the epoch length) must be a positive integer, got 0"),
    (["--sampler-option", "num_samples=-3"], "num_samples (the epoch length) must be a positive integer, got -3"),
    (["--sampler-option", "seed=3"], "--sampler-option seed: seed comes from the run"),
    (["--sampler-option", "oops"], "malformed --sampler-option 'oops'"),
])  # fmt: skip
def test_bad_sampler_flags_exit_2_with_one_line(tmp_path, args: list[str], message: str) -> None:
    base = ["train", *TINY, "--epochs", "1"]
    result = runner.invoke(app, [*base, *args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
