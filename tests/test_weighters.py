"""Built-in weighters through the registry, against independent computations."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import sampleweight as sw
from sampleweight.weighting import WeightingBatch

HAM_COUNTS = torch.tensor([1113, 6705, 514, 327, 1099, 115, 142])


def batch_of(losses: list[float], targets: list[int], epoch: int = 0) -> WeightingBatch:
    return WeightingBatch(torch.tensor(losses), torch.tensor(targets), epoch=epoch)


def test_builtin_names(registry) -> None:
    assert sw.list_weighters(registry) == ["cb", "class_ohem", "class_spl", "drw", "es", "none", "ohem", "spl"]
    softmax = ["balanced_softmax", "ce", "focal", "hierarchical", "ldam", "logit_adjusted"]
    assert sw.list_losses(registry) == sorted([*softmax, "asl", "bce", "db", "sigmoid_focal"])
    assert sw.list_models(registry) == ["cbam_vgg16", "hierarchical_vgg16"]


def test_none_is_all_ones(registry) -> None:
    weights = sw.create_weighter("none", registry=registry)(batch_of([0.3, 2.0, 0.1], [0, 1, 1]))
    assert weights.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("seed", range(40))
def test_cb_and_es_weight_each_sample_by_its_class(registry, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    classes = 2 + seed % 6
    counts = torch.randint(1, 500, (classes,), generator=generator)
    batch_len = 1 + seed % 25
    targets = torch.randint(0, classes, (batch_len,), generator=generator)  # some classes absent
    batch = WeightingBatch(torch.rand(batch_len, generator=generator), targets)
    total = int(counts.sum())
    beta = (total - 1) / total
    cb = sw.create_weighter("cb", registry=registry, class_counts=counts)(batch)
    es = sw.create_weighter("es", registry=registry, class_counts=counts)(batch)
    expected_cb = [total / int(counts[t]) for t in targets]
    expected_es = [(1 - beta) / (1 - beta ** int(counts[t])) for t in targets]
    torch.testing.assert_close(cb, torch.tensor(expected_cb), rtol=1e-6, atol=0)
    torch.testing.assert_close(es, torch.tensor(expected_es), rtol=1e-5, atol=0)


def test_es_beta_override_and_normalize_modes(registry) -> None:
    batch = batch_of([1.0] * 4, [0, 1, 1, 2])
    es = sw.create_weighter("es", registry=registry, class_counts=[10, 100, 1000], beta=0.99)(batch)
    expected = torch.tensor([(1 - 0.99) / (1 - 0.99**n) for n in (10, 100, 100, 1000)])
    torch.testing.assert_close(es, expected)
    per_class = torch.tensor([1100 / 10, 1100 / 100, 1100 / 1000])
    classes = sw.create_weighter("cb", registry=registry, class_counts=[10, 100, 1000], normalize="classes")(batch)
    torch.testing.assert_close(classes, (per_class * 3 / per_class.sum())[[0, 1, 1, 2]])
    per_batch = sw.create_weighter("cb", registry=registry, class_counts=[10, 100, 1000], normalize="batch")(batch)
    assert per_batch.mean() == pytest.approx(1.0)
    torch.testing.assert_close(per_batch / per_batch[0], per_class[[0, 1, 1, 2]] / per_class[0])
    with pytest.raises(sw.ConfigError, match="normalize"):
        sw.create_weighter("cb", registry=registry, class_counts=[1, 2], normalize="mean")


def test_class_with_no_training_samples_warns_once_naming_it(registry) -> None:
    with pytest.warns(UserWarning, match="DF has no training samples") as record:
        weighter = sw.create_weighter("cb", registry=registry, class_counts=[5, 0, 3], class_names=["MEL", "DF", "NV"])
    assert len(record) == 1
    weights = weighter(batch_of([1.0, 1.0], [1, 0]))
    assert torch.isfinite(weights).all() and weights[0] == 8.0
    with pytest.warns(UserWarning, match="class 1 has no training samples"):
        sw.create_weighter("es", registry=registry, class_counts=[5, 0, 3])


@pytest.mark.parametrize("name", ["spl", "ohem"])
@pytest.mark.parametrize("seed", range(30))
def test_curriculum_keeps_exactly_m_extreme_samples(registry, name: str, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    epochs, nominal = 150, 20
    epoch = [0, 37, 75, 149, int(torch.randint(0, 150, (1,), generator=generator))][seed % 5]
    batch_len = [20, 20, 7, 1, 13][seed % 5]  # full batches, a short last batch and B = 1
    losses = torch.randint(0, 6, (batch_len,), generator=generator).float()  # many ties
    batch = WeightingBatch(losses, torch.zeros(batch_len, dtype=torch.long), epoch=epoch)
    weighter = sw.create_weighter(name, registry=registry, num_epochs=epochs, batch_size=nominal)
    weights = weighter(batch)
    alpha = 2 * math.log(2 * nominal - 1) / epochs
    m = min(batch_len, max(1, math.floor(batch_len / (1 + math.exp(-alpha * epoch)) + 0.5 + 1e-9)))
    hardest = name == "ohem"
    order = sorted(range(batch_len), key=lambda i: (-losses[i].item() if hardest else losses[i].item(), i))
    assert weights.tolist() == [1.0 if i in order[:m] else 0.0 for i in range(batch_len)]


def test_pace_override_and_missing_facts(registry) -> None:
    weighter = sw.create_weighter("ohem", registry=registry, pace=0.0)  # m = B/2 forever
    assert weighter(batch_of([1.0, 2.0, 3.0, 4.0], [0] * 4, epoch=1000)).tolist() == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(sw.ConfigError, match=r"'spl': the paper's pacing needs num_epochs.*pace="):
        sw.create_weighter("spl", registry=registry, batch_size=10)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("name", ["spl", "ohem", "class_spl", "class_ohem"])
def test_curriculum_weighters_take_the_batch_size_from_the_batches(registry, name: str, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    epochs, full, short = 12, 8 + seed, 1 + seed % 5  # the last batch of an epoch is short
    inferred = sw.create_weighter(name, registry=registry, num_epochs=epochs)
    stated = sw.create_weighter(name, registry=registry, num_epochs=epochs, batch_size=full)
    resumed = sw.create_weighter(name, registry=registry, num_epochs=epochs)
    for epoch in range(0, epochs, 2):
        for batch_len in (full, full, short):
            batch = WeightingBatch(
                torch.rand(batch_len, generator=generator),
                torch.randint(0, 3, (batch_len,), generator=generator),
                epoch,
            )
            assert inferred(batch).tolist() == stated(batch).tolist(), (epoch, batch_len)
        if epoch == 4:  # a checkpoint: the resumed weighter's first batch is short, and it still paces with M = full
            resumed.load_state_dict(inferred.state_dict())
            assert resumed(batch).tolist() == stated(batch).tolist()
    assert (inferred.batch_size, resumed.batch_size) == (full, full)
    assert "seen_batch_size" not in stated.state_dict()  # a stated M adds nothing to checkpoints


@pytest.mark.parametrize("name", ["spl", "ohem", "class_spl", "class_ohem"])
def test_a_batch_larger_than_the_stated_batch_size_is_an_error(registry, name: str) -> None:
    # under DDP the global batch: passing the per-process 8 of two processes used to change the pacing silently
    criterion = sw.WeightedLoss("ce", name, num_epochs=4, batch_size=8, registry=registry)
    criterion(torch.randn(8, 3), torch.randint(0, 3, (8,)))  # a full batch, and a short one, are fine
    criterion(torch.randn(3, 3), torch.randint(0, 3, (3,)))
    with pytest.raises(sw.ConfigError, match=rf"weighter '{name}' was given batch_size=8, but a batch has 16 samples"):
        criterion(torch.randn(16, 3), torch.randint(0, 3, (16,)))
    paced = sw.create_weighter(name, registry=registry, pace=0.5, batch_size=8)  # the pace given: M plays no part
    assert paced(WeightingBatch(torch.rand(16), torch.zeros(16, dtype=torch.long))).shape == (16,)


def test_cb_without_class_counts_says_what_to_pass(registry) -> None:
    with pytest.raises(sw.ConfigError, match=r"'cb' needs class_counts \(training-set counts per class\)"):
        sw.create_weighter("cb", registry=registry)


def test_unknown_name_lists_valid_ones(registry) -> None:
    with pytest.raises(
        sw.ConfigError,
        match=r"unknown weighter 'ohm'.*cb, class_ohem, class_spl, drw, es, none, ohem, spl.*Did you mean 'ohem'",
    ):
        sw.create_weighter("ohm", registry=registry)
    with pytest.raises(sw.ConfigError, match=r"unknown loss 'dice'.*balanced_softmax, bce, ce, db, focal"):
        sw.create_loss("dice", registry=registry)


def test_unknown_option_is_named(registry) -> None:
    with pytest.raises(sw.ConfigError, match=r"does not accept option\(s\) gamma; its options are: beta, normalize"):
        sw.create_weighter("es", registry=registry, class_counts=[1, 2], gamma=2.0)


def test_inconsistent_facts_raise(registry) -> None:
    with pytest.raises(sw.ConfigError, match="number of classes disagrees"):
        sw.create_weighter("cb", registry=registry, class_counts=[1, 2], num_classes=3)
    with pytest.raises(sw.ConfigError, match="num_epochs must be a positive integer"):
        sw.create_weighter("ohem", registry=registry, num_epochs=0, batch_size=2)


def test_composition_multiplies(registry) -> None:
    counts = torch.tensor([30, 5, 1])
    batch = WeightingBatch(torch.tensor([0.1, 3.0, 0.5, 2.0]), torch.tensor([0, 1, 2, 0]), epoch=0)
    kwargs = {"class_counts": counts, "num_epochs": 10, "batch_size": 4, "registry": registry}
    product = sw.create_weighter("ohem+es", **kwargs)(batch)
    as_list = sw.create_weighter(["ohem", "es"], **kwargs)(batch)
    expected = sw.create_weighter("ohem", **kwargs)(batch) * sw.create_weighter("es", **kwargs)(batch)
    torch.testing.assert_close(product, expected)
    torch.testing.assert_close(as_list, expected)
    assert product[0] == 0 and product[1] > 0


def test_weighters_follow_the_device_and_dtype_of_the_losses(registry) -> None:
    weighter = sw.create_weighter("es+ohem", registry=registry, class_counts=HAM_COUNTS, num_epochs=4, batch_size=8)
    batch = WeightingBatch(torch.rand(8, dtype=torch.float64), torch.randint(0, 7, (8,)))
    weights = weighter(batch)
    assert weights.dtype == torch.float64 and not weights.requires_grad


def test_state_dict_round_trips(registry) -> None:
    source = sw.create_weighter("ohem+es", registry=registry, class_counts=HAM_COUNTS, num_epochs=10, batch_size=6)
    target = sw.create_weighter(
        "ohem+es", registry=registry, class_counts=torch.ones(7, dtype=torch.long), num_epochs=10, batch_size=6
    )
    target.load_state_dict(source.state_dict())
    batch = WeightingBatch(torch.rand(6), torch.randint(0, 7, (6,)))
    torch.testing.assert_close(target(batch), source(batch))


def test_builtins_satisfy_the_protocol(registry) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sw.list_weighters(registry):
            weighter = sw.create_weighter(name, registry=registry, class_counts=[3, 1], num_epochs=2, batch_size=2)
            assert isinstance(weighter, sw.Weighter)
            assert weighter.name == name


def test_facts_reach_only_factories_that_name_them(registry) -> None:
    from sampleweight.plugins import PluginInfo, Registered

    received = {}

    def open_factory(**kwargs):
        received.update(kwargs)
        return sw.create_weighter("none", registry=registry)

    registry.weighters["open"] = Registered("open", open_factory, PluginInfo("test"))
    sw.create_weighter("open", registry=registry, class_counts=[1, 2], num_epochs=3, anything=1)
    assert received == {"anything": 1}
