"""The contract kit, ``sampleweight.testing``: every built-in keeps its contract, and a plugin that breaks one
rule fails naming that rule."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sampleweight as sw
from sampleweight import plugins, testing
from sampleweight.taxonomy import ISIC2018_CLASSES
from sampleweight.testing import check_loss, check_model, check_sampler, check_weighter

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = ROOT / "examples" / "third_party_plugin"
BUILTINS = plugins.load_plugins(entry_points=False, builtins=True, register_timm=False)
SMALL_IMAGES = (3, 32, 32)  # timm's test_resnet at stride 32: one location, the fastest input it takes


# -- every built-in passes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILTINS.weighters))
def test_every_builtin_weighter_keeps_the_contract(name: str) -> None:
    check_weighter(BUILTINS.weighters[name].factory)


@pytest.mark.parametrize(
    ("name", "task"), [(n, t) for n in sorted(BUILTINS.losses) for t in BUILTINS.tasks("losses", n)]
)
def test_every_builtin_loss_keeps_the_contract(name: str, task: str) -> None:
    facts = {"class_names": ISIC2018_CLASSES} if name == "hierarchical" else {}  # its taxonomy's classes
    check_loss(BUILTINS.losses[name].factory, task=task, **facts)


SAMPLER_TASKS = [(n, t) for n in sorted(BUILTINS.samplers) for t in BUILTINS.tasks("samplers", n)]


@pytest.mark.parametrize(("name", "task"), SAMPLER_TASKS)
def test_every_builtin_sampler_keeps_the_contract(name: str, task: str) -> None:
    check_sampler(BUILTINS.samplers[name].factory, task=task)


def test_multi_hot_targets_go_only_to_samplers_registered_for_the_multilabel_task() -> None:
    assert ("repeat_factor", "multilabel") in SAMPLER_TASKS
    assert ("class_balanced", "multilabel") not in SAMPLER_TASKS
    with pytest.raises(AssertionError, match=r"^sampler rule 'factory' "):  # why it must not be given them
        check_sampler(BUILTINS.samplers["class_balanced"].factory, task="multilabel")
    with pytest.raises(ValueError, match="multi-hot targets \\[N, L\\] are a multilabel task's, not a multiclass"):
        check_sampler(BUILTINS.samplers["instance"].factory, targets=torch.tensor([[0, 1], [1, 0]]))
    check_sampler(LabelWeighted, task="multilabel")  # the broken ones below are its variants
    check_sampler(BUILTINS.samplers["repeat_factor"].factory, task="multilabel", threshold=0.3)  # images repeated
    check_sampler(BUILTINS.samplers["repeat_factor"].factory, task="multilabel", threshold=0.3, num_samples=40)


def test_the_multilabel_facts_are_multi_hot_targets_and_the_two_row_table() -> None:
    facts = testing.default_facts(task="multilabel")
    targets, counts = facts["targets"], facts["class_counts"]
    assert targets.shape == (60, 4) and set(targets.unique().tolist()) == {0, 1}
    assert counts.tolist() == [[45, 52, 56, 58], [15, 8, 4, 2]]  # column l: without label l, with it
    assert torch.equal(counts[1], targets.sum(0)) and torch.equal(counts.sum(0), torch.full((4,), 60))
    held = targets.sum(1)
    assert (held == 0).any() and (held >= 2).any()  # images with no label and with several
    assert facts["num_classes"] == 4 and len(facts["class_names"]) == 4
    given = testing.default_facts(task="multilabel", class_counts=torch.tensor([[9, 4, 10], [1, 6, 0]]), seed=3)
    assert given["targets"].shape == (10, 3) and given["targets"].sum(0).tolist() == [1, 6, 0]
    assert torch.equal(given["targets"], testing.default_facts(task="multilabel", **given)["targets"])
    mine = torch.tensor([[1, 0], [1, 1], [0, 0]])
    assert testing.default_facts(task="multilabel", targets=mine)["class_counts"].tolist() == [[1, 2], [2, 1]]
    assert testing.default_facts(task="multilabel", num_classes=2)["class_counts"].tolist() == [[45, 52], [15, 8]]
    assert testing.default_facts(task="binary")["class_counts"].tolist() == [30, 15]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"targets": torch.tensor([0, 1, 1])}, "multi-hot \\[N, L\\] of 0/1, got shape \\(3,\\)"),
        ({"targets": torch.tensor([[0, 2]])}, "values other than 0 and 1"),
        ({"targets": torch.tensor([[1, 0], [1, 1]]), "class_counts": [[1, 1], [1, 1]]}, "disagree"),
        ({"class_counts": [3, 1]}, "the \\[2, L\\] table"),
        ({"class_counts": [[3, 1], [1, 1]]}, "sums to \\[4, 2\\]"),
    ],
)
def test_multilabel_facts_that_do_not_fit_are_refused(given: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_sampler(Shuffled, task="multilabel", **given)


def test_binary_facts_are_two_classes_and_an_unknown_task_is_refused() -> None:
    with pytest.raises(ValueError, match="a binary task's targets are 0 \\(negative\\) or 1"):
        check_sampler(Shuffled, task="binary", targets=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="a binary task has 2 classes"):
        check_sampler(Shuffled, task="binary", class_counts=[3, 2, 1])
    with pytest.raises(ValueError, match="task must be multiclass, binary or multilabel"):
        check_sampler(Shuffled, task="regression")


@pytest.mark.parametrize("name", sorted(BUILTINS.models))
def test_every_builtin_model_keeps_the_contract_with_a_tiny_backbone(name: str) -> None:
    check_model(BUILTINS.models[name].factory, hierarchical=name == "hierarchical_vgg16", input_size=SMALL_IMAGES)


def test_built_objects_options_and_other_facts_are_checked_too() -> None:
    counts = torch.tensor([6705, 1113, 1099, 514, 327, 142, 115])  # HAM10000: long epochs are sampled, not run
    check_weighter(sw.create_weighter("ohem+es", class_counts=counts, num_epochs=150, batch_size=20), batch_size=20)
    check_weighter(BUILTINS.weighters["es"].factory, class_counts=counts, num_epochs=150, normalize="batch")
    check_loss(sw.create_loss("focal", gamma=2.0), num_classes=7)
    check_loss(BUILTINS.losses["ldam"].factory, class_counts=counts, s=10.0)
    check_sampler(sw.create_sampler("sqrt", targets=torch.tensor([0, 0, 0, 1, 2, 2]), seed=3))
    check_sampler(BUILTINS.samplers["drs"].factory, targets=torch.tensor([0, 0, 0, 1, 2, 2]), start_epoch=2, seed=7)


def test_a_check_leaves_the_global_random_state_as_it_was() -> None:
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    check_weighter(BUILTINS.weighters["ohem"].factory)
    check_sampler(BUILTINS.samplers["instance"].factory)
    assert torch.equal(torch.rand(3), expected)


def test_options_go_to_a_factory_only() -> None:
    with pytest.raises(TypeError, match="does not take option"):
        check_weighter(BUILTINS.weighters["es"].factory, nomalize="batch")
    with pytest.raises(TypeError, match="are for a factory"):
        check_loss(sw.create_loss("ce"), gamma=1.0)


def test_the_kit_needs_neither_pytest_nor_anything_above_the_core() -> None:
    tree = ast.parse((ROOT / "sampleweight" / "testing.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {name for name in imported if name.split(".")[0] in ("pytest", "timm")}
    assert not {name for name in imported if name.startswith(("sampleweight.builtins", "sampleweight.engine"))}


def test_the_example_plugins_own_tests_use_the_kit_and_pass(mount_plugin) -> None:
    mount_plugin("sampleweight-isqrt", "0.1.0", entry_points={"isqrt": "sampleweight_isqrt"}, path=EXAMPLE_PLUGIN)
    path = EXAMPLE_PLUGIN / "tests" / "test_isqrt.py"
    spec = importlib.util.spec_from_file_location("sampleweight_isqrt_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tests = [function for name, function in vars(module).items() if name.startswith("test_")]
    assert len(tests) >= 2 and "check_weighter" in path.read_text()
    for test in tests:
        test()


# -- a plugin breaking one rule fails naming it ---------------------------------------------------------------


class Ones(sw.BaseWeighter):
    def forward(self, batch: sw.WeightingBatch) -> torch.Tensor:
        return torch.ones_like(batch.losses)


class RaisesInFactory(Ones):
    def __init__(self, class_counts: torch.Tensor) -> None:
        super().__init__()
        self.table = class_counts.weights  # a tensor has no such attribute


class TopTwo(Ones):
    def forward(self, batch):
        weights = torch.zeros_like(batch.losses)
        weights[batch.losses.topk(2).indices] = 1.0  # a batch of one sample has no top two
        return weights


class PerClassTable(Ones):
    def __init__(self, class_counts: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", 1.0 / class_counts.double())

    def forward(self, batch):
        return self.table.to(batch.losses)  # forgot [batch.targets]: one weight per class


class MassTimesTable(Ones):
    def __init__(self, class_counts: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", 1.0 / class_counts.double())

    def forward(self, batch):
        if batch.soft_targets is not None:  # w = sum_c y_c w_c, but the table is [C] and the masses [B, C]
            return (batch.soft_targets.double().T * self.table).to(batch.losses)  # transposed: [C, B] * [C]
        return self.table[batch.targets].to(batch.losses)


class IntegerWeights(Ones):
    def forward(self, batch):
        return torch.ones_like(batch.targets)


class FixedDevice(Ones):
    def forward(self, batch):
        return torch.ones(batch.size, device="meta")  # not where the losses are


class InverseLoss(Ones):
    def forward(self, batch):
        return 1.0 / batch.losses  # infinite for a loss of 0


class CentredLoss(Ones):
    def forward(self, batch):
        return batch.losses - batch.losses.mean()


class LearnedScale(Ones):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, batch):
        return self.scale.expand(batch.size)


class NormalisesInPlace(Ones):
    def forward(self, batch):
        batch.losses.div_(batch.losses.max().clamp_min(1.0))
        return torch.ones_like(batch.losses)


class GlobalRandom(Ones):
    def forward(self, batch):
        return (torch.rand(batch.size) < 0.5).to(batch.losses)


class ForgetsItsCount(Ones):
    def __init__(self) -> None:
        super().__init__()
        self.seen = 0  # a plain attribute: not in state_dict()

    def forward(self, batch):
        self.seen += 1
        return torch.full_like(batch.losses, 1.0 / self.seen)


class UnsavableState(Ones):
    def get_extra_state(self):
        return {"schedule": lambda epoch: epoch}

    def set_extra_state(self, state) -> None:
        pass


def as_function():
    return lambda batch: torch.ones_like(batch.losses)


def per_sample(function):
    """A loss module computing ``function(logits, targets)``."""

    class Loss(nn.Module):
        def forward(self, logits, targets):
            return function(logits, targets)

    Loss.__qualname__ = function.__name__
    return Loss


def raising_loss(num_classes):
    raise ValueError(f"only for 2 classes, got {num_classes}")


def ce(logits, targets):
    return F.cross_entropy(logits, targets, reduction="none")


class Smoothed(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("similarity", torch.eye(num_classes) * 0.9 + 0.1 / num_classes)

    def forward(self, logits, targets):
        return ce(logits @ self.similarity, targets)  # float64 logits and a float32 buffer do not multiply


def mean(logits, targets):
    return F.cross_entropy(logits, targets)


def in_float32(logits, targets):
    return F.cross_entropy(logits.float(), targets, reduction="none")


def on_meta(logits, targets):
    return ce(logits, targets).to("meta")


def log_margin(logits, targets):
    return -(logits.softmax(1).gather(1, targets[:, None]).squeeze(1) - 0.5).log()


def detached(logits, targets):
    return ce(logits.detach(), targets)


def rounded(logits, targets):
    return ce(logits.round(), targets)


def batch_normalised(logits, targets):
    losses = ce(logits, targets)
    return losses / losses.detach().mean()


def scales_in_place(logits, targets):
    logits.data.mul_(0.5)
    return ce(logits, targets)


class SmoothsSoftTargets(nn.Module):
    """Declares soft targets, but smooths a distribution it was not asked to: a one-hot target is not its class."""

    soft_targets = True

    def forward(self, logits, targets):
        if targets.ndim == 2:
            return -((targets * 0.9 + 0.1 / targets.shape[1]) * logits.log_softmax(1)).sum(1)
        return ce(logits, targets)


def gathers(logits, targets):
    return -logits.log_softmax(1).gather(1, targets[:, None]).squeeze(1)


class Shuffled(sw.BaseSampler):
    def __init__(self, targets, seed: int = 0) -> None:
        super().__init__(len(targets), seed)

    def epoch_indices(self, epoch):
        return torch.randperm(self.num_samples, generator=self.generator(epoch))


class RaisesInSampler(Shuffled):
    def __init__(self, targets, seed: int = 0) -> None:
        super().__init__(targets, seed)
        self.counts = targets.numpy().bincount()


def torch_sampler(targets, seed: int = 0):
    return torch.utils.data.RandomSampler(range(len(targets)))


class TwoEpochSchedule(Shuffled):
    schedule = (1.0, 0.5)

    def epoch_indices(self, epoch):
        share = self.schedule[epoch]  # epoch 2 is past the schedule
        return super().epoch_indices(epoch)[: max(1, int(share * self.num_samples))]

    def __len__(self):
        return max(1, int(self.schedule[min(self.epoch, 1)] * self.num_samples))


class OffByOne(Shuffled):
    def epoch_indices(self, epoch):
        return super().epoch_indices(epoch) + 1


class FloatIndices(Shuffled):
    def epoch_indices(self, epoch):
        return super().epoch_indices(epoch).double()


class TwoPasses(Shuffled):
    def __len__(self):
        return 2 * self.num_samples


class LengthAfterIterating(Shuffled):
    """Epochs of N - epoch indices, whose len() is updated only while iterating (a DataLoader reads it before)."""

    def __init__(self, targets, seed: int = 0) -> None:
        super().__init__(targets, seed)
        self.length = self.num_samples

    def epoch_indices(self, epoch):
        return super().epoch_indices(epoch)[: max(1, self.num_samples - epoch)]

    def __iter__(self):
        indices = self.epoch_indices(self.epoch).tolist()
        self.length = len(indices)
        return iter(indices)

    def __len__(self):
        return self.length


class GlobalShuffle(Shuffled):
    def epoch_indices(self, epoch):
        return torch.randperm(self.num_samples)


class SameEveryEpoch(Shuffled):
    def epoch_indices(self, epoch):
        return torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed))


class EmptyState(Shuffled):
    def state_dict(self):
        return {}


class LabelWeighted(sw.BaseSampler):
    """A multilabel sampler keeping the contract: N draws, image i with probability proportional to 1 + its labels."""

    def __init__(self, targets, seed: int = 0) -> None:
        super().__init__(len(targets), seed)
        self.weights = 1.0 + torch.as_tensor(targets).double().sum(1)

    def epoch_indices(self, epoch):
        return torch.multinomial(self.weights, self.num_samples, replacement=True, generator=self.generator(epoch))


class ClassIndicesOnly(LabelWeighted):
    def __init__(self, targets, seed: int = 0) -> None:
        super().__init__(targets, seed)
        self.class_counts = torch.bincount(targets)  # a multi-hot matrix is no class-index vector


class ImagesPerLabelSet(LabelWeighted):
    def epoch_indices(self, epoch):
        groups = {}
        for image, labels in enumerate(self.targets.tolist()):  # a list is no dict key
            groups.setdefault(labels, []).append(image)
        return torch.tensor([i for members in groups.values() for i in members])

    def __init__(self, targets, seed: int = 0) -> None:
        super().__init__(targets, seed)
        self.targets = targets


class EveryCell(LabelWeighted):
    """Treats the [N, L] matrix as N * L samples."""

    def __init__(self, targets, seed: int = 0) -> None:
        super().__init__(targets, seed)
        self.num_samples = targets.numel()

    def epoch_indices(self, epoch):
        return torch.randperm(self.num_samples, generator=self.generator(epoch))


class LabelledOnly(LabelWeighted):
    """Draws only images holding a label, but keeps len() at N."""

    def epoch_indices(self, epoch):
        labelled = (self.weights > 1).nonzero().flatten()
        return labelled[torch.randperm(len(labelled), generator=self.generator(epoch))]


class GlobalDraw(LabelWeighted):
    def epoch_indices(self, epoch):
        return torch.multinomial(self.weights, self.num_samples, replacement=True)


class SameDrawEveryEpoch(LabelWeighted):
    def epoch_indices(self, epoch):
        generator = torch.Generator().manual_seed(self.seed)
        return torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator)


class RenamedState(LabelWeighted):
    def state_dict(self):
        return {"label_epoch": self.epoch}


class Net(nn.Module):
    def __init__(self, num_classes: int = 4, outputs: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(32, num_classes if outputs is None else outputs)

    def features(self, x):
        return self.pool(torch.relu(self.norm(self.conv(x))))

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


def net(pretrained=False, **kwargs):
    return Net(**kwargs)


def model(cls):
    """The timm-style factory of ``cls``."""

    def factory(pretrained=False, **kwargs):
        return cls(**kwargs)

    factory.__qualname__ = cls.__name__
    return factory


def fixed_classes(pretrained=False, classes=4):
    return Net(classes)


def with_config(pretrained=False, **kwargs):
    return Net(**kwargs), {"input_size": (3, 224, 224)}


class Only224(Net):
    def forward(self, x):
        assert x.shape[-1] == 224, "expects 224 x 224 images"
        return super().forward(x)


class TenClasses(Net):
    def __init__(self, num_classes=4):
        super().__init__(num_classes, outputs=10)


class LogOfScores(Net):
    def forward(self, x):
        return super().forward(x).log()


class AlwaysDropout(Net):
    def forward(self, x):
        return self.fc(F.dropout(self.features(x).flatten(1), 0.5, training=True))


class UnusedHead(Net):
    def __init__(self, num_classes=4):
        super().__init__(num_classes)
        self.aux = nn.Linear(32, 2)


class RandomOffset(Net):
    def __init__(self, num_classes=4):
        super().__init__(num_classes)
        self.register_buffer("offset", torch.randn(num_classes), persistent=False)

    def forward(self, x):
        return super().forward(x) + self.offset


class FlattensWithView(Net):
    def forward(self, x):
        features = self.features(x)
        return self.fc(features.view(features.shape[0], -1))


class Tree(Net):
    def __init__(self, taxonomy=None, num_classes=None):
        super().__init__(sw.Taxonomy.isic2018().num_classes if taxonomy is None else taxonomy.num_classes)

    def forward(self, x):
        return super().forward(x).log_softmax(1)


class TreeLogits(Tree):
    def forward(self, x):
        return Net.forward(self, x)


class IsicOnly(Tree):
    def __init__(self, taxonomy=None, num_classes=None):
        super().__init__(None)


def no_taxonomy(pretrained=False, num_classes=4):
    return Tree(None)


BROKEN = [
    # kind, rule, broken plugin, facts and options of the check
    ("weighter", "factory", RaisesInFactory, {}),
    ("weighter", "protocol", as_function, {}),
    ("weighter", "call", TopTwo, {}),
    ("weighter", "shape", PerClassTable, {}),
    ("weighter", "call", MassTimesTable, {}),  # breaks on the mixed batch only
    ("weighter", "dtype", IntegerWeights, {}),
    ("weighter", "device", FixedDevice, {}),
    ("weighter", "finite-nonnegative", InverseLoss, {}),
    ("weighter", "finite-nonnegative", CentredLoss, {}),
    ("weighter", "no-grad", LearnedScale, {}),
    ("weighter", "inputs-unchanged", NormalisesInPlace, {}),
    ("weighter", "deterministic", GlobalRandom, {}),
    ("weighter", "state-dict", ForgetsItsCount, {}),
    ("weighter", "state-dict", UnsavableState, {}),
    ("loss", "factory", raising_loss, {}),
    ("loss", "module", lambda: ce, {}),
    ("loss", "call", Smoothed, {}),
    ("loss", "shape", per_sample(mean), {}),
    ("loss", "dtype", per_sample(in_float32), {}),
    ("loss", "device", per_sample(on_meta), {}),
    ("loss", "finite", per_sample(log_margin), {}),
    ("loss", "gradient", per_sample(detached), {}),
    ("loss", "gradient", per_sample(rounded), {}),
    ("loss", "per-sample", per_sample(batch_normalised), {}),
    ("loss", "inputs-unchanged", per_sample(scales_in_place), {}),
    ("loss", "soft-targets", SmoothsSoftTargets, {}),
    ("loss", "soft-targets", per_sample(gathers), {"soft_targets": True}),
    ("sampler", "factory", RaisesInSampler, {}),
    ("sampler", "protocol", torch_sampler, {}),
    ("sampler", "call", TwoEpochSchedule, {}),
    ("sampler", "indices", OffByOne, {}),
    ("sampler", "indices", FloatIndices, {}),
    ("sampler", "length", TwoPasses, {}),
    ("sampler", "length", LengthAfterIterating, {}),
    ("sampler", "deterministic", GlobalShuffle, {}),
    ("sampler", "set-epoch", SameEveryEpoch, {}),
    ("sampler", "state-dict", EmptyState, {}),
    ("sampler", "factory", ClassIndicesOnly, {"task": "multilabel"}),
    ("sampler", "protocol", torch_sampler, {"task": "multilabel"}),
    ("sampler", "call", ImagesPerLabelSet, {"task": "multilabel"}),
    ("sampler", "indices", EveryCell, {"task": "multilabel"}),
    ("sampler", "length", LabelledOnly, {"task": "multilabel"}),
    ("sampler", "deterministic", GlobalDraw, {"task": "multilabel"}),
    ("sampler", "set-epoch", SameDrawEveryEpoch, {"task": "multilabel"}),
    ("sampler", "state-dict", RenamedState, {"task": "multilabel"}),
    ("model", "factory", fixed_classes, {}),
    ("model", "module", with_config, {}),
    ("model", "forward", model(Only224), {}),
    ("model", "output-shape", model(TenClasses), {}),
    ("model", "finite", model(LogOfScores), {}),
    ("model", "eval-mode", model(AlwaysDropout), {}),
    ("model", "gradients", model(UnusedHead), {}),
    ("model", "state-dict", model(RandomOffset), {}),
    ("model", "channels-last", model(FlattensWithView), {}),
    ("model", "log-probabilities", model(TreeLogits), {"hierarchical": True}),
    ("model", "taxonomy", model(IsicOnly), {"hierarchical": True}),
    ("model", "taxonomy", no_taxonomy, {"hierarchical": True}),
]
CHECKS = {"weighter": check_weighter, "loss": check_loss, "sampler": check_sampler, "model": check_model}
RULES = {
    "weighter": testing.WEIGHTER_RULES,
    "loss": testing.LOSS_RULES,
    "sampler": testing.SAMPLER_RULES,
    "model": testing.MODEL_RULES,
}


@pytest.mark.parametrize(
    ("kind", "rule", "broken", "arguments"),
    BROKEN,
    ids=[
        f"{kind}-{rule}-{getattr(broken, '__qualname__', '')}{'-' + a['task'] if 'task' in a else ''}"
        for kind, rule, broken, a in BROKEN
    ],
)
def test_a_plugin_breaking_a_rule_fails_naming_that_rule(kind: str, rule: str, broken, arguments: dict) -> None:
    with pytest.raises(AssertionError, match=f"^{kind} rule '{rule}' ") as error:
        CHECKS[kind](broken, **arguments)
    assert RULES[kind][rule] in str(error.value)  # and says what the rule asks


def test_the_soft_target_rule_runs_only_for_a_loss_that_declares_soft_targets() -> None:
    check_loss(per_sample(gathers))  # class indices only: not asked for distributions
    check_loss(SmoothsSoftTargets, soft_targets=False)  # declared False by whoever registers it
    check_loss(per_sample(ce), soft_targets=True)  # F.cross_entropy takes probabilities: the rule holds


def test_every_rule_has_a_plugin_that_breaks_it() -> None:
    covered = {(kind, rule) for kind, rule, _, _ in BROKEN}
    assert covered == {(kind, rule) for kind, rules in RULES.items() for rule in rules}


def test_the_message_says_where_the_rule_broke() -> None:
    with pytest.raises(AssertionError) as error:
        check_weighter(TopTwo)
    message = str(error.value)
    assert "TopTwo failed on a batch of 1 (float32 losses, classes [0]) at epoch 0, step 7: RuntimeError: " in message
    assert "selected index k out of range (at " in message and "test_testing.py:" in message
    assert isinstance(error.value.__cause__, RuntimeError)
    with pytest.raises(AssertionError, match=r"needs window, which sampleweight does not pass .*window=\.\.\."):
        check_sampler(lambda targets, window: Shuffled(targets))
