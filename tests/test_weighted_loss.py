"""WeightedLoss: Eq. 3, no gradient through the weights, validation, option routing, state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sampleweight as sw
from sampleweight.weighting import WeightingBatch


class FixedWeights(sw.BaseWeighter):
    """A test weighter returning whatever it is told to."""

    name = "fixed"

    def __init__(self, weights) -> None:
        super().__init__()
        self.weights = weights

    def forward(self, batch: WeightingBatch):
        return self.weights(batch) if callable(self.weights) else self.weights


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("spec", ["none", "cb", "es", "ohem", "spl", "ohem+es"])
def test_equals_mean_of_weighted_per_sample_losses(registry, seed: int, spec: str) -> None:
    generator = torch.Generator().manual_seed(seed)
    batch_len = 1 + seed % 20  # includes B = 1 and short batches (B <= batch_size)
    logits = torch.randn(batch_len, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 7, (batch_len,), generator=generator)
    counts = torch.randint(1, 1000, (7,), generator=generator)
    criterion = sw.WeightedLoss(
        "focal", spec, gamma=2.0, class_counts=counts, num_epochs=20, batch_size=20, registry=registry
    )
    criterion.set_epoch(seed % 20)
    loss = criterion(logits, targets)
    weights = criterion.last_weights
    per_sample = sw.functional.focal_loss(logits, targets, gamma=2.0)
    assert not weights.requires_grad
    torch.testing.assert_close(loss, (weights * per_sample).sum() / batch_len)
    # the gradient is (1/B) sum_j w_j grad l_j: weights are constants
    (grad,) = torch.autograd.grad(loss, logits)
    expected = torch.autograd.grad((weights.detach() * per_sample).sum() / batch_len, logits)[0]
    torch.testing.assert_close(grad, expected)


def test_readme_usage(registry) -> None:
    criterion = sw.WeightedLoss("focal", "ohem", gamma=1.0, num_epochs=150, batch_size=20, registry=registry)
    model = nn.Linear(4, 7)
    for epoch in (0, 75):
        criterion.set_epoch(epoch)
        loss = criterion(model(torch.randn(20, 4)), torch.randint(0, 7, (20,)))
        loss.backward()
        assert int(criterion.last_weights.sum()) == (10 if epoch == 0 else 20)
    assert criterion.step == 2 and model.weight.grad is not None


def test_epoch_keyword_overrides_set_epoch(registry) -> None:
    criterion = sw.WeightedLoss("ce", "spl", num_epochs=10, batch_size=4, registry=registry)
    criterion(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), epoch=9)
    assert int(criterion.last_weights.sum()) == 4
    criterion(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    assert int(criterion.last_weights.sum()) == 2


def test_options_are_routed_by_name(registry) -> None:
    criterion = sw.WeightedLoss("focal", "es", gamma=0.5, beta=0.9, class_counts=[4, 1], registry=registry)
    assert criterion.loss.gamma == 0.5
    expected = torch.tensor([(1 - 0.9) / (1 - 0.9**4), (1 - 0.9) / (1 - 0.9)])
    torch.testing.assert_close(criterion.weighter.class_weights, expected)


def test_unknown_and_ambiguous_options_raise(registry) -> None:
    with pytest.raises(sw.ConfigError, match=r"'gama' is accepted by neither.*loss options: alpha, gamma"):
        sw.WeightedLoss("focal", "none", gama=1.0, registry=registry)
    both = FixedWeights(lambda b: torch.ones_like(b.losses))

    def fake_factory(gamma: float = 1.0) -> FixedWeights:
        return both

    from sampleweight.plugins import PluginInfo, Registered

    registry.weighters["gamma_weighter"] = Registered("gamma_weighter", fake_factory, PluginInfo("test"))
    with pytest.raises(sw.ConfigError, match=r"'gamma' is accepted by both.*loss_options=\{'gamma': ...\}"):
        sw.WeightedLoss("focal", "gamma_weighter", gamma=1.0, registry=registry)
    criterion = sw.WeightedLoss(
        "focal", "gamma_weighter", loss_options={"gamma": 2.0}, weighter_options={"gamma": 3.0}, registry=registry
    )
    assert criterion.loss.gamma == 2.0


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (torch.tensor([1.0, float("nan"), 1.0]), r"weighter 'fixed' returned non-finite weights.*positions \[1\]"),
        (torch.tensor([1.0, float("inf"), 1.0]), "non-finite"),
        (torch.tensor([1.0, -0.5, 1.0]), r"weighter 'fixed' returned negative weights at batch positions \[1\]"),
        (torch.ones(2), r"shape \[2\] for a batch of 3.*shape \[3\]"),
        (torch.ones(3, 1), r"shape \[3, 1\]"),
        (torch.ones(3, dtype=torch.long), "torch.int64 weights; return a float tensor"),
        ([1.0, 1.0, 1.0], "returned list"),
        (
            torch.ones(3, device="meta"),
            r"returned weights on meta for losses on cpu; create them on batch.losses.device",
        ),
    ],
)
def test_bad_weights_raise_naming_the_weighter(registry, weights, message: str) -> None:
    criterion = sw.WeightedLoss("ce", FixedWeights(weights), registry=registry)
    with pytest.raises(sw.WeightError, match=message):
        criterion(torch.randn(3, 4), torch.tensor([0, 1, 2]))


def test_bad_component_of_a_product_is_named(registry) -> None:
    bad = FixedWeights(torch.tensor([1.0, float("nan")]))
    product = sw.ProductWeighter([sw.create_weighter("none", registry=registry), bad])
    criterion = sw.WeightedLoss("ce", product, registry=registry)
    with pytest.raises(sw.WeightError, match="weighter 'fixed'"):
        criterion(torch.randn(2, 4), torch.tensor([0, 1]))


def test_loss_that_reduces_is_rejected(registry) -> None:
    criterion = sw.WeightedLoss(nn.CrossEntropyLoss(), "none", registry=registry)
    with pytest.raises(sw.LossError, match=r"returned \[\] for a batch of 3.*no reduction"):
        criterion(torch.randn(3, 4), torch.tensor([0, 1, 2]))


def test_objects_can_be_passed_directly(registry) -> None:
    criterion = sw.WeightedLoss(nn.CrossEntropyLoss(reduction="none"), FixedWeights(torch.tensor([2.0, 0.0])))
    logits, targets = torch.randn(2, 3), torch.tensor([0, 2])
    expected = nn.functional.cross_entropy(logits, targets, reduction="none")[0] * 2 / 2
    torch.testing.assert_close(criterion(logits, targets), expected)
    with pytest.raises(sw.ConfigError, match="weighter must be a registered name or a Weighter"):
        sw.WeightedLoss("ce", object(), registry=registry)


class CountingWeighter:
    """A plain (non-Module) weighter with Python state, to test state round trips."""

    name = "counting"

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, batch: WeightingBatch) -> torch.Tensor:
        self.seen += batch.size
        return torch.ones_like(batch.losses)

    def state_dict(self) -> dict:
        return {"seen": self.seen}

    def load_state_dict(self, state) -> None:
        self.seen = state["seen"]


def test_state_dict_round_trips_epoch_step_and_plain_weighter_state(registry) -> None:
    source = sw.WeightedLoss("ce", CountingWeighter(), registry=registry)
    source.set_epoch(3)
    for _ in range(2):
        source(torch.randn(5, 2), torch.zeros(5, dtype=torch.long))
    target = sw.WeightedLoss("ce", CountingWeighter(), registry=registry)
    target.load_state_dict(source.state_dict())
    assert (target.epoch, target.step, target.weighter.seen) == (3, 2, 10)


def test_indices_and_step_reach_the_weighter(registry) -> None:
    seen: list[WeightingBatch] = []
    criterion = sw.WeightedLoss("ce", FixedWeights(lambda b: seen.append(b) or torch.ones_like(b.losses)))
    criterion(torch.randn(2, 3), torch.tensor([0, 1]), indices=torch.tensor([7, 9]))
    criterion(torch.randn(2, 3), torch.tensor([0, 1]))
    assert seen[0].indices.tolist() == [7, 9] and seen[1].indices is None
    assert [b.step for b in seen] == [0, 1]
    assert not seen[0].losses.requires_grad


def test_bf16_logits_give_float32_loss(registry) -> None:
    criterion = sw.WeightedLoss("focal", "es", gamma=1.0, class_counts=[10, 3], registry=registry)
    loss = criterion(torch.randn(4, 2).bfloat16(), torch.tensor([0, 1, 1, 0]))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_an_open_factory_receives_options_nobody_names(registry) -> None:
    from sampleweight.plugins import PluginInfo, Registered

    received = {}

    def open_factory(**kwargs):
        received.update(kwargs)
        return FixedWeights(lambda b: torch.ones_like(b.losses))

    registry.weighters["open"] = Registered("open", open_factory, PluginInfo("test"))
    criterion = sw.WeightedLoss("focal", "open", gamma=2.0, temperature=0.5, registry=registry)
    assert criterion.loss.gamma == 2.0 and received == {"temperature": 0.5}
    assert sw.create_weighter("open", registry=registry, temperature=0.7) is not None and received["temperature"] == 0.7


def test_a_factory_that_returns_a_non_weighter_fails_when_the_loss_is_built(registry) -> None:
    from sampleweight.plugins import PluginInfo, Registered

    registry.weighters["hollow"] = Registered("hollow", lambda: None, PluginInfo("hollow_plugin", "hollow-dist", "1.2"))
    with pytest.raises(
        sw.PluginError, match=r"weighter 'hollow' of plugin hollow_plugin \(hollow-dist 1.2\).*NoneType"
    ):
        sw.WeightedLoss("ce", "hollow", registry=registry)
    registry.losses["hollow"] = Registered("hollow", lambda: 3, PluginInfo("hollow_plugin"))
    with pytest.raises(sw.PluginError, match=r"loss 'hollow'.*returned int, not a callable"):
        sw.create_loss("hollow", registry=registry)


class RankWeighter(sw.BaseWeighter):
    """Forgets super().__init__(), a common slip."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self.register_buffer("offset", torch.zeros(()))

    def forward(self, batch: WeightingBatch) -> torch.Tensor:
        ranks = batch.losses.argsort().argsort().to(batch.losses.dtype)
        return self.scale * (ranks + 1) / batch.size + self.offset


def test_a_base_weighter_that_skips_super_init_works_through_checkpoints(registry) -> None:
    import copy

    criterion = sw.WeightedLoss("ce", RankWeighter(2.0), registry=registry)
    loss = criterion(torch.randn(4, 3, requires_grad=True), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert sorted(criterion.last_weights.tolist()) == [0.5, 1.0, 1.5, 2.0]
    criterion.weighter.offset.fill_(0.25)
    restored = sw.WeightedLoss("ce", RankWeighter(2.0), registry=registry)
    restored.load_state_dict(criterion.state_dict())
    assert float(restored.weighter.offset) == 0.25 and restored.step == 1
    assert copy.deepcopy(criterion).weighter.scale == 2.0
    assert repr(criterion.weighter) == "RankWeighter(name='RankWeighter')"


class Exploding(sw.BaseWeighter):
    name = "exploding"

    def forward(self, batch: WeightingBatch) -> torch.Tensor:
        if batch.step == 2:
            return batch.losses / 0 if batch.losses.dtype == torch.long else {}["missing"]
        return torch.ones_like(batch.losses)


@pytest.mark.parametrize("spec", ["alone", "in_a_product"])
def test_an_exception_inside_a_weighter_names_it_the_epoch_and_the_step(registry, spec: str) -> None:
    weighter = Exploding() if spec == "alone" else sw.ProductWeighter([sw.create_weighter("none"), Exploding()])
    criterion = sw.WeightedLoss("ce", weighter, registry=registry)
    criterion.set_epoch(1)
    for _ in range(2):
        criterion(torch.randn(3, 2), torch.tensor([0, 1, 1]))
    with pytest.raises(sw.WeightError) as caught:
        criterion(torch.randn(3, 2), torch.tensor([0, 1, 1]))
    message = str(caught.value)
    assert "weighter 'exploding' failed at epoch 1, global step 2 (batch of 3): KeyError: 'missing'" in message
    assert "test_weighted_loss.py" in message  # where it was raised
    assert isinstance(caught.value.__cause__, KeyError) and (caught.value.epoch, caught.value.step) == (1, 2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("loss_dtype", [torch.float32, torch.float64])
def test_weights_take_the_dtype_of_the_losses(registry, dtype, loss_dtype) -> None:
    weights = torch.tensor([0.5, 1.5, 2.0], dtype=dtype)
    criterion = sw.WeightedLoss("ce", FixedWeights(weights), registry=registry)
    logits, targets = torch.randn(3, 4, dtype=loss_dtype), torch.tensor([0, 1, 2])
    loss = criterion(logits, targets)
    assert criterion.last_weights.dtype == loss_dtype == loss.dtype
    expected = (weights.to(loss_dtype) * nn.functional.cross_entropy(logits, targets, reduction="none")).mean()
    torch.testing.assert_close(loss, expected)


def test_eval_mode_gives_the_plain_mean_with_no_step_and_no_collective(registry, monkeypatch) -> None:
    from sampleweight import distributed

    class Classifier(nn.Module):  # a criterion held by the model, as in a LightningModule
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Linear(5, 3)
            self.criterion = sw.WeightedLoss("focal", "ohem", gamma=1.0, num_epochs=10, batch_size=8, registry=registry)

    model = Classifier()
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    model.criterion(model.net(x), y)
    trained_weights = model.criterion.last_weights
    model.eval()

    def no_collectives(*args, **kwargs):
        raise AssertionError("a collective ran in eval mode")

    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "gather_rows", no_collectives)
    model.criterion.weighter.forward = no_collectives
    with torch.no_grad():
        value = model.criterion(model.net(x), y)
    torch.testing.assert_close(value, sw.functional.focal_loss(model.net(x), y, gamma=1.0).mean())
    assert model.criterion.step == 1 and model.criterion.last_weights is trained_weights
    model.train()
    monkeypatch.setattr(distributed, "is_distributed", lambda: False)
    del model.criterion.weighter.forward
    model.criterion(model.net(x), y)
    assert model.criterion.step == 2 and int(model.criterion.last_weights.sum()) == 4
