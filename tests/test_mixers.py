"""Mixers: the plugin kind, the built-ins on timm.data.Mixup, Remix's rule, and the contract kit's check_mixer."""

from __future__ import annotations

import json
import random
import types

import numpy as np
import pytest
import torch
from timm.data import Mixup

import sampleweight as sw
from sampleweight import plugins
from sampleweight.builtins import mixers as builtin_mixers
from sampleweight.mixing import mixing_seed, numpy_seeded, remix_label_share
from sampleweight.testing import MIXER_RULES, check_mixer

BUILTINS = plugins.load_plugins(entry_points=False, builtins=True, register_timm=False)
COUNTS = torch.tensor([60, 20, 6, 2])


def test_the_built_in_mixers_are_registered_with_none_the_default() -> None:
    assert sw.list_mixers(BUILTINS) == ["cutmix", "mixup", "mixup_cutmix", "none", "remix"]
    assert BUILTINS.defaults("mixers") == ["none"]
    info = next(p for p in BUILTINS.plugins if p.name == "mixers")
    assert info.builtin and info.mixers == ["none", "mixup", "cutmix", "mixup_cutmix", "remix"]


def test_a_third_party_mixer_registers_through_the_hook() -> None:
    mine = types.ModuleType("mine")

    class Swap(sw.BaseMixer):
        def mix(self, images, targets, seed):
            return images.flip(0), torch.nn.functional.one_hot(targets, self.num_classes).float().flip(0)

    mine.register_mixers = sw.hookimpl(lambda register: register("swap", Swap))
    registry = plugins.load_plugins(entry_points=False, builtins=True, modules=[mine], register_timm=False)
    mixer = sw.create_mixer("swap", num_classes=3, seed=1, num_epochs=4, registry=registry)  # facts it names
    images, soft = mixer(torch.arange(2.0).view(2, 1), torch.tensor([0, 2]), epoch=0, step=0)
    assert images.flatten().tolist() == [1.0, 0.0] and soft.argmax(1).tolist() == [2, 0]


def test_a_mixer_factory_receives_the_facts_its_signature_names_and_plugins_lists_the_mixers() -> None:
    seen = {}

    def factory(class_counts, num_classes, num_epochs, batch_size, class_names, seed, strength: float = 1.0):
        seen.update(counts=class_counts.tolist(), classes=num_classes, epochs=num_epochs, batch=batch_size,
                    names=list(class_names), seed=seed, strength=strength)  # fmt: skip
        return builtin_mixers.NoMixing()

    mine = types.ModuleType("mine")
    mine.register_mixers = sw.hookimpl(lambda register: register("facts", factory))
    registry = plugins.load_plugins(entry_points=False, builtins=True, modules=[mine], register_timm=False)
    sw.create_mixer("facts", class_counts=[3, 1], num_epochs=4, batch_size=8, class_names=["a", "b"], seed=5,
                    strength=2, registry=registry)  # fmt: skip
    assert seen == {"counts": [3, 1], "classes": 2, "epochs": 4, "batch": 8, "names": ["a", "b"], "seed": 5,
                    "strength": 2.0}  # fmt: skip
    from typer.testing import CliRunner

    from sampleweight.cli import app

    listed = CliRunner().invoke(app, ["plugins", "--json"])
    assert listed.exit_code == 0
    mixers = next(p for p in json.loads(listed.stdout) if p["name"] == "mixers")
    assert mixers["mixers"] == ["none", "mixup", "cutmix", "mixup_cutmix", "remix"]
    assert mixers["summaries"]["mixers"]["remix"].startswith("Remix (Chou et al.")


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("none", {}),
        ("mixup", {}),
        ("mixup", {"mode": "elem", "alpha": 0.4}),
        ("cutmix", {}),
        ("cutmix", {"mode": "pair", "prob": 0.5}),
        ("mixup_cutmix", {}),
        ("remix", {}),
        ("remix", {"mode": "elem", "cutmix_alpha": 1.0, "kappa": 1.5}),
    ],
)
def test_every_built_in_mixer_keeps_the_contract(name: str, options: dict) -> None:
    factory = BUILTINS.mixers[name].factory
    if options.get("mode") == "pair":  # pair mode needs even batches: check it on those only
        mixer = factory(num_classes=4, **options)
        images, targets = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1])
        _, soft = mixer(images, targets, epoch=0, step=0, rank=0)
        assert torch.allclose(soft.sum(1), torch.ones(6))
        with pytest.raises(ValueError, match="even batch"):
            mixer(images[:5], targets[:5], epoch=0, step=0, rank=0)
        return
    check_mixer(factory, **options)
    check_mixer(factory, class_counts=[5, 3], **options)  # C = 2


def test_a_built_mixer_passes_the_check_too() -> None:
    check_mixer(sw.create_mixer("remix", class_counts=COUNTS, seed=4, registry=BUILTINS))


@pytest.mark.parametrize("mode", ["batch", "elem", "pair"])
@pytest.mark.parametrize("alphas", [(1.0, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_the_mixing_is_timms_mixup_under_the_steps_seed(mode: str, alphas: tuple[float, float]) -> None:
    mixup_alpha, cutmix_alpha = alphas
    mixer = builtin_mixers.TimmMixer(5, seed=3, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, mode=mode)
    reference = Mixup(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, mode=mode, label_smoothing=0.0, num_classes=5)
    for step in range(6):
        images, targets = torch.randn(8, 3, 16, 16), torch.randint(0, 5, (8,))
        ours = mixer(images, targets, epoch=2, step=step, rank=1)
        np.random.seed(mixing_seed(3, 2, step, 1))
        expected = reference(images.clone(), targets)
        assert torch.equal(ours[0], expected[0]) and torch.equal(ours[1], expected[1])


def test_mixing_follows_seed_epoch_step_and_rank_and_leaves_the_global_generators_alone() -> None:
    mixer = sw.create_mixer("mixup", num_classes=4, seed=0, registry=BUILTINS)
    images, targets = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    np.random.seed(11)
    random.seed(11)
    torch.manual_seed(11)
    states = (np.random.get_state()[1].copy(), random.getstate(), torch.get_rng_state())
    results = {key: mixer(images, targets, epoch=key[0], step=key[1], rank=key[2]) for key in
               [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0)]}  # fmt: skip
    assert (np.random.get_state()[1] == states[0]).all() and random.getstate() == states[1]
    assert torch.equal(torch.get_rng_state(), states[2])
    again = mixer(images, targets, epoch=0, step=1, rank=0)
    assert torch.equal(again[1], results[0, 1, 0][1])
    shares = {key: round(float(soft[0, 0]), 6) for key, (_, soft) in results.items()}
    assert len(set(shares.values())) == 4  # each (epoch, step, rank) draws its own ratio
    reseeded = sw.create_mixer("mixup", num_classes=4, seed=1, registry=BUILTINS)
    assert not torch.equal(reseeded(images, targets, epoch=0, step=0, rank=0)[1], results[0, 0, 0][1])


def test_off_epoch_switches_mixing_off_from_that_epoch_on() -> None:
    mixer = sw.create_mixer("cutmix", num_classes=4, off_epoch=2, registry=BUILTINS)
    images, targets = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    assert mixer(images, targets, epoch=1, step=0)[1].shape == (4, 4)
    for epoch in (2, 3):
        mixed, same = mixer(images, targets, epoch=epoch, step=0)
        assert mixed is images and same is targets  # class indices, as without a mixer
    none = sw.create_mixer("none", registry=BUILTINS)
    assert none(images, targets, epoch=0, step=0) == (images, targets)


def _remix_reference(lam_x: float, n_a: int, n_b: int, kappa: float, tau: float) -> float:
    """Chou et al. (2020), Sec. 3: lam_y = 0 if n_i/n_j >= kappa and lam < tau; 1 if n_i/n_j <= 1/kappa and
    1 - lam < tau; lam otherwise (in exact rational arithmetic)."""
    from fractions import Fraction

    ratio = Fraction(n_a, n_b)
    if ratio >= Fraction(kappa).limit_denominator() and lam_x < tau:
        return 0.0
    if ratio <= 1 / Fraction(kappa).limit_denominator() and 1 - lam_x < tau:
        return 1.0
    return lam_x


def test_remix_label_share_is_the_papers_definition_on_random_pairs() -> None:
    rng = np.random.default_rng(0)
    for kappa, tau in [(3.0, 0.5), (1.5, 0.3), (2.0, 0.8), (1.0, 0.5)]:
        lam = rng.uniform(size=400)
        lam[:6] = [tau, 1 - tau, 0.0, 1.0, tau - 1e-9, 1 - tau + 1e-9]  # the boundaries
        n_a, n_b = rng.integers(1, 40, size=400), rng.integers(1, 40, size=400)
        n_a[:3], n_b[:3] = [3 * int(kappa * 2), 2, 7], [2, 3 * int(kappa * 2), 7]
        n_a[6:8], n_b[6:8] = [int(kappa * 4), 4], [4, int(kappa * 4)]  # a ratio of exactly kappa (and 1/kappa)
        got = remix_label_share(*map(torch.from_numpy, (lam, n_a, n_b)), kappa=kappa, tau=tau)
        cases = zip(lam.tolist(), n_a.tolist(), n_b.tolist(), strict=True)
        expected = [_remix_reference(*case, kappa, tau) for case in cases]
        assert got.tolist() == expected


def test_remix_targets_move_the_label_to_the_minority_and_keep_mixups_images() -> None:
    counts = torch.tensor([90, 30, 10])
    remixer = builtin_mixers.RemixMixer(counts, seed=5, mode="elem", kappa=3.0, tau=0.5)
    mixer = builtin_mixers.TimmMixer(3, seed=5, mode="elem")
    for step in range(5):
        targets = torch.randint(0, 3, (7,))  # odd: the middle sample is its own partner
        images = torch.randn(7, 3, 8, 8)
        mixed, soft = remixer(images, targets, epoch=0, step=step)
        mixup_images, mixup_soft = mixer(images, targets, epoch=0, step=step)
        assert torch.equal(mixed, mixup_images)
        for i in range(7):
            j = 6 - i
            lam = float(mixup_soft[i, targets[i]]) if targets[i] != targets[j] else None
            expected = torch.zeros(3)
            if lam is None:  # same class: all mass on it, whatever the rule
                expected[targets[i]] = 1.0
            else:
                share = _remix_reference(lam, int(counts[targets[i]]), int(counts[targets[j]]), 3.0, 0.5)
                expected[targets[i]] += share
                expected[targets[j]] += 1 - share
            torch.testing.assert_close(soft[i], expected, atol=1e-6, rtol=0)


def test_one_sample_batches_and_two_classes_mix() -> None:
    for name in ("mixup", "cutmix", "mixup_cutmix", "remix"):
        mixer = sw.create_mixer(name, class_counts=[9, 1], registry=BUILTINS)
        images = torch.randn(1, 3, 8, 8)
        mixed, soft = mixer(images, torch.tensor([1]), epoch=0, step=0)
        assert torch.allclose(mixed, images) and soft.tolist() == [[0.0, 1.0]]  # mixed with itself


def test_mixed_batches_train_through_weighted_loss_with_a_class_weighter() -> None:
    counts = torch.tensor([40, 12, 6, 2])
    mixer = sw.create_mixer("remix", class_counts=counts, seed=0, registry=BUILTINS)
    criterion = sw.WeightedLoss("focal", "cb", class_counts=counts, label_smoothing=0.1)
    logits = torch.randn(8, 4, requires_grad=True)
    _, soft = mixer(torch.randn(8, 3, 8, 8), torch.tensor([0, 0, 1, 2, 3, 0, 1, 0]), epoch=0, step=0)
    criterion(logits, soft).backward()
    weights = sw.create_weighter("cb", class_counts=counts).class_weights
    torch.testing.assert_close(criterion.last_weights, soft @ weights.to(soft))
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "mixpu", "num_classes": 3}, "unknown mixer 'mixpu'.*Did you mean 'mixup'"),
        ({"name": "mixup", "num_classes": 3, "kappa": 3}, "does not accept option.*kappa.*alpha"),
        ({"name": "mixup", "num_classes": 3, "alpha": -1.0}, "alphas must be >= 0"),
        ({"name": "mixup", "num_classes": 3, "alpha": "abc"}, "option alpha must be float"),
        ({"name": "mixup", "num_classes": 3, "mode": "row"}, "mode"),
        ({"name": "remix", "num_classes": 3}, "needs class_counts"),
        ({"name": "remix", "class_counts": [3, 1], "tau": 2.0}, "tau must lie in"),
        ({"name": "cutmix"}, "needs num_classes"),
        ({"name": "mixup", "num_classes": 3, "off_epoch": -1}, "off_epoch must be"),
    ],
)
def test_bad_mixer_input_is_one_config_error(options: dict, message: str) -> None:
    with pytest.raises(sw.ConfigError, match=message):
        sw.create_mixer(**options, registry=BUILTINS)


def test_a_factory_that_returns_no_mixer_is_a_plugin_error() -> None:
    mine = types.ModuleType("mine")
    mine.register_mixers = sw.hookimpl(lambda register: register("broken", lambda: "nope"))
    registry = plugins.load_plugins(entry_points=False, builtins=False, modules=[mine], register_timm=False)
    with pytest.raises(sw.PluginError, match=r"not a sampleweight\.Mixer"):
        sw.create_mixer("broken", registry=registry)


# -- broken mixers fail the rule they break ---------------------------------------------------------------------


class GlobalDraws(sw.BaseMixer):
    def mix(self, images, targets, seed):
        lam = float(torch.rand(()))  # the global generator: not reproducible, and it moves dropout's draws
        one_hot = torch.nn.functional.one_hot(targets, self.num_classes).float()
        return lam * images + (1 - lam) * images.flip(0), lam * one_hot + (1 - lam) * one_hot.flip(0)


class NumpyDraws(sw.BaseMixer):
    def mix(self, images, targets, seed):
        np.random.rand()  # numpy's global generator, left advanced
        return images, targets


class InPlace(sw.BaseMixer):
    def mix(self, images, targets, seed):
        images.mul_(0.5).add_(0.5 * images.flip(0))
        one_hot = torch.nn.functional.one_hot(targets, self.num_classes).float()
        return images, 0.5 * one_hot + 0.5 * one_hot.flip(0)


class Unnormalised(sw.BaseMixer):
    def mix(self, images, targets, seed):
        one_hot = torch.nn.functional.one_hot(targets, self.num_classes).float()
        return images.clone(), one_hot + one_hot.flip(0)


class Elsewhere(sw.BaseMixer):
    def mix(self, images, targets, seed):
        return images.clone(), torch.full((len(targets), self.num_classes), 1.0 / self.num_classes)


class Cropped(sw.BaseMixer):
    def mix(self, images, targets, seed):
        return images[..., :4, :4].clone(), targets


class NoState:
    def __call__(self, images, targets, *, epoch, step, rank=None):
        return images, targets


class Forgetful(sw.BaseMixer):
    """Mixes only after it has been called once: a state it does not save."""

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes)
        self.calls = 0

    def mix(self, images, targets, seed):
        self.calls += 1
        if self.calls == 1:
            return images, targets
        one_hot = torch.nn.functional.one_hot(targets, self.num_classes).float()
        return images.flip(0).clone(), one_hot.flip(0)


class EvenOnly(sw.BaseMixer):
    """timm's Mixup.__call__ as it is: refuses an odd batch (a process's short last part)."""

    def mix(self, images, targets, seed):
        with numpy_seeded(seed):
            return Mixup(label_smoothing=0.0, num_classes=self.num_classes)(images.clone(), targets)


class ForgetsOnRestore(sw.BaseMixer):
    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes)
        self.scale = 1.0

    def mix(self, images, targets, seed):
        return images * self.scale, targets

    def state_dict(self):
        return {"scale": self.scale}

    def load_state_dict(self, state_dict):
        self.scale = 2 * state_dict["scale"]  # a wrong restore


BROKEN = [
    (GlobalDraws, "global-random-state"),
    (NumpyDraws, "global-random-state"),
    (InPlace, "inputs-unchanged"),
    (Unnormalised, "targets"),
    (Elsewhere, "batch-classes"),
    (Cropped, "images"),
    (NoState, "protocol"),
    (Forgetful, "deterministic"),
    (lambda num_classes: 1 / 0, "factory"),
    (lambda: NoState(), "protocol"),
    (EvenOnly, "call"),
    (ForgetsOnRestore, "state-dict"),
]


def test_every_mixer_rule_has_a_mixer_that_breaks_it() -> None:
    assert {rule for _, rule in BROKEN} == set(MIXER_RULES)


@pytest.mark.parametrize(
    ("mixer", "rule"),
    BROKEN,
    ids=[f"{rule}-{getattr(mixer, '__qualname__', '')}" for mixer, rule in BROKEN],
)
def test_a_broken_mixer_fails_the_rule_it_breaks(mixer, rule: str) -> None:
    assert rule in MIXER_RULES
    with pytest.raises(AssertionError, match=f"mixer rule '{rule}'"):
        check_mixer(mixer)


def test_numpy_seeded_restores_the_global_state_after_an_error() -> None:
    np.random.seed(2)
    before = np.random.get_state()[1].copy()
    with pytest.raises(RuntimeError), numpy_seeded(5):
        np.random.rand()
        raise RuntimeError
    assert (np.random.get_state()[1] == before).all()
