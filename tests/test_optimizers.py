"""Optimizers as plugins: adam and sgd as the trainer built them, SAM / ASAM / ImbSAM against hand derivations, the
closure the trainer passes (SPL/OHEM weights reused), a GradScaler's update, MaxNorm, and the run options."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import sampleweight as sw
from sampleweight.classifier import max_norm_, max_norm_limit
from sampleweight.cli import app
from sampleweight.engine.config import TrainConfig, complete_config, load_config
from sampleweight.engine.training import batch_closure, train

runner = CliRunner()


# -- a linear least-squares model, derived by hand in numpy ----------------------------------------------------


def problem(seed: int, n: int = 7, d: int = 3, classes: int = 3):
    rng = np.random.default_rng(seed)
    X, y, w = rng.normal(size=(n, d)), rng.normal(size=n), rng.normal(size=d)
    labels = rng.integers(0, classes, size=n)
    labels[:classes] = np.arange(classes)  # every class present
    return X, y, w, labels


def gradient(X: np.ndarray, y: np.ndarray, w: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """grad of (1/n) sum_{i kept} (x_i w - y_i)^2 / 2: the kept samples' terms over the whole batch."""
    r = X @ w - y
    if keep is not None:
        r = r * keep
    return X.T @ r / len(y)


def torch_closure(X, y, labels, w: torch.Tensor):
    Xt, yt, lt = torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(labels)

    def closure(classes: torch.Tensor | None = None) -> torch.Tensor:
        terms = (Xt @ w - yt) ** 2 / 2
        if classes is not None:
            terms = terms * classes[lt].double()
        loss = terms.sum() / len(yt)
        loss.backward()
        return loss.detach()

    return closure


@pytest.mark.parametrize("seed", range(4))
def test_one_sam_step_equals_the_hand_derivation(seed: int) -> None:
    X, y, w0, labels = problem(seed)
    lr, rho = 0.1, 0.05
    g = gradient(X, y, w0)
    e = rho * g / np.linalg.norm(g)
    expected = w0 - lr * gradient(X, y, w0 + e)  # plain SGD (momentum 0) from w with the gradient at w + e
    w = torch.tensor(w0, requires_grad=True)
    optimizer = sw.create_optimizer("sam", [w], lr=lr, momentum=0.0, rho=rho)
    loss = optimizer.step(torch_closure(X, y, labels, w))
    np.testing.assert_allclose(w.detach().numpy(), expected, rtol=1e-12, atol=1e-14)
    assert float(loss) == pytest.approx(0.5 * np.mean((X @ w0 - y) ** 2))  # the loss at w, unperturbed


@pytest.mark.parametrize("seed", range(3))
def test_one_adaptive_step_equals_asams_formula(seed: int) -> None:
    X, y, w0, labels = problem(seed)
    lr, rho, eta = 0.1, 0.5, 0.01
    g = gradient(X, y, w0)
    t = np.abs(w0) + eta
    e = rho * t**2 * g / np.linalg.norm(t * g)
    expected = w0 - lr * gradient(X, y, w0 + e)
    w = torch.tensor(w0, requires_grad=True)
    optimizer = sw.create_optimizer("sam", [w], lr=lr, momentum=0.0, adaptive=True)  # ASAM's rho 0.5 by default
    assert optimizer.rho == 0.5 and optimizer.eta == eta
    optimizer.step(torch_closure(X, y, labels, w))
    np.testing.assert_allclose(w.detach().numpy(), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", range(3))
def test_imbsam_makes_only_the_tail_loss_flat(seed: int) -> None:
    """Zhou et al. (ICCV 2023): grad L_head(w) + grad L_tail(w + e), e from grad L_tail(w) only."""
    X, y, w0, labels = problem(seed, n=9)
    counts = torch.tensor([50, 8, 3])  # tail below 10: classes 1 and 2
    tail = np.isin(labels, [1, 2]).astype(float)
    lr, rho = 0.1, 0.05
    g_tail = gradient(X, y, w0, tail)
    e = rho * g_tail / np.linalg.norm(g_tail)
    expected = w0 - lr * (gradient(X, y, w0, 1 - tail) + gradient(X, y, w0 + e, tail))
    w = torch.tensor(w0, requires_grad=True)
    optimizer = sw.create_optimizer("imbsam", [w], lr=lr, momentum=0.0, class_counts=counts, threshold=10)
    assert optimizer.classes.tolist() == [False, True, True]
    optimizer.step(torch_closure(X, y, labels, w))
    np.testing.assert_allclose(w.detach().numpy(), expected, rtol=1e-12, atol=1e-14)


def test_sam_keeps_the_base_optimizers_momentum_and_weight_decay() -> None:
    """Two steps of SAM around SGD with momentum and weight decay: torch's SGD stepped with the hand-made gradients."""
    X, y, w0, labels = problem(5)
    w, reference = torch.tensor(w0, requires_grad=True), torch.tensor(w0, requires_grad=True)
    optimizer = sw.create_optimizer("sam", [w], lr=0.05, momentum=0.9, weight_decay=0.01, rho=0.1)
    base = torch.optim.SGD([reference], lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)
    for _ in range(2):
        now = reference.detach().numpy()
        g = gradient(X, y, now)
        reference.grad = torch.from_numpy(gradient(X, y, now + 0.1 * g / np.linalg.norm(g)))
        base.step()
        optimizer.step(torch_closure(X, y, labels, w))
    torch.testing.assert_close(w, reference, rtol=1e-12, atol=1e-14)
    state = optimizer.state_dict()
    momentum = base.state_dict()["state"][0]["momentum_buffer"]
    torch.testing.assert_close(state["state"][0]["momentum_buffer"], momentum, rtol=1e-12, atol=1e-14)


def test_a_non_finite_gradient_norm_leaves_the_weights_unperturbed() -> None:
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    optimizer = sw.create_optimizer("sam", [w], lr=0.1, momentum=0.0)
    w.grad = torch.tensor([float("inf"), 1.0])
    assert all(bool((e == 0).all()) for e in optimizer.perturbation().values())


def test_a_grad_scalers_update_gives_the_unscaled_step() -> None:
    """The perturbation ignores a common scale of the gradients; ``update=scaler.step`` unscales the last ones."""
    X, y, w0, labels = problem(3)
    plain, scaled = torch.tensor(w0, requires_grad=True), torch.tensor(w0, requires_grad=True)
    sw.create_optimizer("sam", [plain], lr=0.1, momentum=0.0).step(torch_closure(X, y, labels, plain))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    optimizer = sw.create_optimizer("sam", [scaled], lr=0.1, momentum=0.0)

    def closure(classes=None):
        terms = (torch.from_numpy(X) @ scaled - torch.from_numpy(y)) ** 2 / 2
        scaler.scale(terms.mean()).backward()

    optimizer.step(closure, update=scaler.step)
    scaler.update()
    torch.testing.assert_close(scaled, plain, rtol=1e-12, atol=1e-14)


def test_a_sharpness_aware_step_without_a_closure_says_what_it_needs() -> None:
    optimizer = sw.create_optimizer("sam", [torch.zeros(2, requires_grad=True)])
    with pytest.raises(RuntimeError, match="needs a closure"):
        optimizer.step()


# -- adam and sgd as the trainer built them --------------------------------------------------------------------


def test_adam_and_sgd_are_the_paper_optimizers_with_the_fused_kernel() -> None:
    params = [nn.Parameter(torch.zeros(3))]
    adam = sw.create_optimizer("adam", params, device=torch.device("cpu"))
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["fused"] and adam.defaults["lr"] == 1e-5
    sgd = sw.create_optimizer("sgd", params, lr=0.1, momentum=0.9, weight_decay=1e-4, device="cpu")
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["weight_decay"] == 1e-4
    assert not sw.create_optimizer("sgd", params, momentum=0.0).defaults["nesterov"]
    # exactly what the trainer built before optimizers were plugins (engine/training.py, _optimizer)
    before = torch.optim.Adam(params, lr=1e-3, weight_decay=0.01, fused=True)
    assert sw.create_optimizer("adam", params, lr=1e-3, weight_decay=0.01, device="cpu").defaults == before.defaults
    before = torch.optim.SGD(params, lr=1e-2, momentum=0.9, nesterov=True, weight_decay=0.0, fused=True)
    assert sw.create_optimizer("sgd", params, lr=1e-2, momentum=0.9, device="cpu").defaults == before.defaults
    assert sorted(sw.list_optimizers()) == ["adam", "imbsam", "sam", "sgd"]


def test_bad_optimizer_names_and_options_are_config_errors() -> None:
    params = [nn.Parameter(torch.zeros(3))]
    with pytest.raises(sw.ConfigError, match=r"unknown optimizer 'adm'.*Did you mean 'adam'"):
        sw.create_optimizer("adm", params)
    with pytest.raises(sw.ConfigError, match=r"does not accept option.*rho"):
        sw.create_optimizer("adam", params, rho=0.1)
    with pytest.raises(sw.ConfigError, match="rho must be > 0"):
        sw.create_optimizer("sam", params, rho=0.0)
    with pytest.raises(sw.ConfigError, match="itself sharpness-aware"):
        sw.create_optimizer("sam", params, base="imbsam")
    with pytest.raises(sw.ConfigError, match="no class has fewer than 2"):
        sw.create_optimizer("imbsam", params, class_counts=torch.tensor([5, 3]), threshold=2)
    with pytest.raises(sw.ConfigError, match="needs class_counts"):
        sw.create_optimizer("imbsam", params)


# -- the trainer's closure: one weighting per step ---------------------------------------------------------------


@pytest.mark.parametrize("weighting", ["ohem", "spl", "class_ohem+es"])
def test_the_closure_weights_the_batch_once_and_reuses_the_weights_at_the_perturbed_point(weighting: str) -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 3).double()
    x, labels = torch.randn(8, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 0, 1, 0, 0])
    facts = {"class_counts": torch.tensor([50, 9, 3]), "num_epochs": 5, "batch_size": 8}
    criterion = sw.WeightedLoss("ce", weighting, **facts)
    closure = batch_closure(model, criterion, torch.autocast("cpu", enabled=False), x, labels, torch.arange(8))
    first = closure()
    weights, steps = criterion.last_weights.clone(), criterion.step
    with torch.no_grad():
        model.weight.add_(0.3)  # the perturbed point
    model.zero_grad()
    second = closure(classes=torch.tensor([False, True, True]))
    assert criterion.step == steps and torch.equal(criterion.last_weights, weights)  # the weighter ran once
    losses = nn.functional.cross_entropy(model(x), labels, reduction="none")
    keep = (labels > 0).double()
    torch.testing.assert_close(second, (weights * losses * keep).sum() / 8)
    assert torch.isfinite(first)
    expected = torch.autograd.grad((weights * losses * keep).sum() / 8, model.weight)[0]
    torch.testing.assert_close(model.weight.grad, expected)


# -- MaxNorm ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_max_norm_projects_each_class_row_into_the_ball(seed: int) -> None:
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(5, 4)) * rng.uniform(0.1, 3.0, size=(5, 1))
    norms = np.linalg.norm(weight, axis=1)
    limit = norms.min() + 0.3 * (norms.max() - norms.min())  # Alshammari et al.'s rule, threshold 0.3
    assert max_norm_limit(torch.from_numpy(weight), 0.3) == pytest.approx(limit)
    expected = weight * np.minimum(1.0, limit / norms)[:, None]
    projected = max_norm_(torch.from_numpy(weight.copy()), limit)
    np.testing.assert_allclose(projected.numpy(), expected, rtol=1e-12)
    assert np.linalg.norm(projected.numpy(), axis=1).max() <= limit * (1 + 1e-12)
    untouched = norms <= limit
    np.testing.assert_array_equal(projected.numpy()[untouched], weight[untouched])  # inside the ball: as it was
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        max_norm_limit(torch.from_numpy(weight), 1.5)


# -- run options: --optimizer, --optimizer-option, old config files ------------------------------------------


def test_old_config_files_with_sgd_or_adam_load_with_their_learning_rates() -> None:
    assert load_config(optimizer="sgd").lr == 1e-4 and load_config(optimizer="adam").lr == 1e-5
    old = {"model": "resnet18", "optimizer": "sgd", "lr": 1e-4}  # a config.json from before optimizers were plugins
    completed = complete_config(old)
    assert completed["optimizer"] == "sgd" and completed["optimizer_options"] == {}
    assert TrainConfig(**old).run_name == "resnet18-ce-none-sgd-s0"
    assert load_config(optimizer="sam").lr == 1e-4  # its base's (sgd)
    assert load_config(optimizer="sam", optimizer_options={"base": "adam"}).lr == 1e-5
    with pytest.raises(sw.ConfigError, match="unknown optimizer 'lion'"):
        load_config(optimizer="lion")


def test_cli_optimizer_options_reach_the_optimizer_and_bad_ones_exit_2(tmp_path) -> None:
    tiny = ["--data", "synthetic:120", "--backbone", "test_resnet", "--no-pretrained", "--image-size", "32",
            "--batch-size", "16", "--quiet", "--epochs", "1", "--bootstrap", "0"]  # fmt: skip
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["train", *tiny, "--optimizer", "sam", "--optimizer-option", "rho=0.1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["optimizer"] == "sam" and saved["optimizer_options"] == {"rho": 0.1}
    for bad, message in ((["--optimizer-option", "gamma=2"], "does not accept"),
                         (["--optimizer-option", "lr=0.1"], "run option"),
                         (["--optimizer", "lion"], "unknown optimizer")):  # fmt: skip
        result = runner.invoke(app, ["train", *tiny, "--optimizer", "sam", *bad, "--out", str(tmp_path / "x")])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output


# -- the trainer: resume, every sampler --------------------------------------------------------------------------


def tiny_config(out, **overrides) -> dict:
    config = dict(data="synthetic:160", backbone="test_resnet", pretrained=False, image_size=32, batch_size=16,
                  epochs=2, lr=1e-3, quiet=True, out=out, bootstrap=0)  # fmt: skip
    return {**config, **overrides}


@pytest.mark.parametrize("optimizer", ["sam", "imbsam"])
def test_a_resumed_sharpness_aware_run_equals_an_uninterrupted_one(
    tmp_path, monkeypatch, interrupt_after_epoch, optimizer: str
) -> None:
    options = {"epochs": 2, "weighters": ["ohem"], "optimizer": optimizer, "precision": "bf16"}
    whole = train(tiny_config(tmp_path / "whole", **options))
    interrupt_after_epoch(0)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tmp_path / "parts", **options))
    monkeypatch.undo()
    resumed = train(tiny_config(tmp_path / "parts", **options), resume=True)
    assert resumed == whole
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=False)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for key, value in a["optimizer"]["state"].items():
        for name, tensor in value.items():
            assert torch.equal(tensor, b["optimizer"]["state"][key][name]), (key, name)


@pytest.mark.parametrize("sampler", ["instance", "class_balanced", "sqrt", "progressive", "repeat_factor", "drs"])
def test_sam_trains_with_every_sampler(tmp_path, sampler: str) -> None:
    options = {"repeat_factor": {"threshold": 0.2}, "drs": {"start": 0.5}}.get(sampler, {})
    final = train(tiny_config(None, epochs=1, optimizer="sam", sampler=sampler, sampler_options=options,
                              weighters=["spl"]))  # fmt: skip
    assert 0 <= final["bacc"] <= 1


@pytest.mark.parametrize(("optimizer", "mixer"), [("sam", "mixup"), ("imbsam", "remix"), ("imbsam", "cutmix")])
def test_sharpness_aware_steps_train_on_mixed_batches(optimizer: str, mixer: str) -> None:
    # ImbSAM splits the loss by class: a mixed sample (soft targets) counts for the class of its largest mass
    config = tiny_config(None, epochs=1, optimizer=optimizer, mixer=mixer, weighters=["ohem"])
    first, again = train(config), train(config)
    assert 0 <= first["bacc"] <= 1
    assert first == again  # the mixing draws and both passes follow from the seed


# -- the contract kit and a third party's optimizer ---------------------------------------------------------------


def test_every_builtin_optimizer_keeps_the_contract() -> None:
    from sampleweight.plugins import load_plugins
    from sampleweight.testing import check_optimizer

    registry = load_plugins(entry_points=False, builtins=True, register_timm=False)
    for name, entry in registry.optimizers.items():
        check_optimizer(entry.factory, closure=bool(entry.info.get("closure"))), name


class _Forgetful(torch.optim.SGD):
    def load_state_dict(self, state_dict) -> None:  # drops the momentum buffers
        pass


class _Noisy(torch.optim.SGD):
    def step(self, closure=None):
        super().step(closure)
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    p.add_(torch.randn_like(p) * 1e-3)


BROKEN = {
    "descent": (lambda params, lr: torch.optim.SGD(params, lr=lr, maximize=True), {}),
    "deterministic": (lambda params, lr: _Noisy(params, lr=lr), {}),
    "state-dict": (lambda params, lr: _Forgetful(params, lr=lr, momentum=0.9), {}),
    "optimizer": (lambda params, lr: torch.optim.SGD([p.detach().clone().requires_grad_() for p in params], lr=lr), {}),
    "closure": (lambda params, lr: torch.optim.Adam(params, lr=lr), {"closure": True}),
}


@pytest.mark.parametrize("rule", BROKEN)
def test_a_broken_optimizer_fails_the_rule_it_breaks(rule: str) -> None:
    from sampleweight.testing import OPTIMIZER_RULES, check_optimizer

    factory, options = BROKEN[rule]
    with pytest.raises(AssertionError, match=rf"optimizer rule '{rule}' \({re.escape(OPTIMIZER_RULES[rule])}\)"):
        check_optimizer(factory, **options)


def test_a_third_party_optimizer_plugin_registers_and_creates_through_the_registry() -> None:
    import types

    from sampleweight.plugins import PluginWarning, load_plugins

    plugin = types.ModuleType("halving")

    def halving(params, *, lr: float = 0.1, factor: float = 0.5):
        """SGD at a fraction of the run's learning rate."""
        return torch.optim.SGD(params, lr=lr * factor)

    plugin.register_optimizers = sw.hookimpl(lambda register: register("halving", halving, lr=0.2))
    registry = load_plugins(entry_points=False, builtins=True, modules=[plugin], register_timm=False)
    assert registry.plugins[-1].optimizers == ["halving"] and "adam" in registry.optimizers
    optimizer = sw.create_optimizer("halving", [nn.Parameter(torch.zeros(2))], registry=registry, lr=0.4, factor=0.25)
    assert optimizer.param_groups[0]["lr"] == 0.1
    from sampleweight.factory import default_lr

    assert default_lr("halving", {}, registry=registry) == 0.2
    bad = types.ModuleType("bad_lr")
    bad.register_optimizers = sw.hookimpl(lambda register: register("worse", halving, lr=-1.0))
    with pytest.warns(PluginWarning, match="lr=-1.0"):
        registry = load_plugins(entry_points=False, builtins=True, modules=[bad], register_timm=False)
    assert "worse" not in registry.optimizers and "lr=-1.0" in registry.plugins[-1].error


@pytest.mark.parametrize("optimizer", ["sam", "imbsam"])
def test_the_plain_loop_example_trains_with_a_sharpness_aware_optimizer(optimizer: str) -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "sam_loop.py"
    spec = importlib.util.spec_from_file_location("sam_loop", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert 1 / 7 < module.train(optimizer, epochs=2) <= 1.0  # better than chance


def test_a_grid_takes_any_registered_optimizer_and_gives_each_run_its_options(tmp_path) -> None:
    from sampleweight.studies.grid import plan_grid

    options = {"data": "synthetic:120", "backbone": "test_resnet", "pretrained": False, "image_size": 32,
               "epochs": 1, "optimizer_options": {"rho": 0.1}}  # fmt: skip
    grid = plan_grid(tmp_path, models="cbam_vgg16", losses="ce", weighters="none", optimizers="adam,sam,imbsam",
                     splits="0", options=options)  # fmt: skip
    assert [run.name for run in grid.runs] == [f"cbam_vgg16-ce-none-{o}-s0" for o in ("adam", "sam", "imbsam")]
    assert [run.config.optimizer_options for run in grid.runs] == [{}, {"rho": 0.1}, {"rho": 0.1}]
    assert "--optimizer-option rho=0.1" in grid.train_command(grid.runs[1])
    assert "--optimizer-option" not in grid.train_command(grid.runs[0])
    with pytest.raises(sw.ConfigError, match="no optimizer of the grid"):
        plan_grid(tmp_path, models="cbam_vgg16", optimizers="adam", splits="0",
                  options={**options, "optimizer_options": {"rho": 0.1}})  # fmt: skip
    with pytest.raises(sw.ConfigError, match="unknown optimizer 'lion' in the grid"):
        plan_grid(tmp_path, models="cbam_vgg16", optimizers="adam,lion", splits="0", options=options)


def test_a_run_written_before_optimizers_were_plugins_resumes_and_is_skipped_by_a_grid(tmp_path) -> None:
    """Its config.json and checkpoint have no optimizer_options: resuming the finished run returns its metrics
    without training, and a grid of the same options counts it as finished."""
    from sampleweight.studies.grid import plan_grid, run_grid

    out = tmp_path / "cbam_vgg16-ce-none-sgd-s0"
    options = dict(data="synthetic:120", backbone="test_resnet", pretrained=False, image_size=32, batch_size=16,
                   epochs=1, lr=1e-3, quiet=True, bootstrap=0)  # fmt: skip
    final = train({**options, "model": "cbam_vgg16", "optimizer": "sgd", "out": out})
    config = json.loads((out / "config.json").read_text())
    del config["optimizer_options"]
    (out / "config.json").write_text(json.dumps(config))
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    del state["config"]["optimizer_options"]
    torch.save(state, out / "checkpoint.pt")
    written = (out / "metrics.json").stat().st_mtime_ns
    assert train({**options, "model": "cbam_vgg16", "optimizer": "sgd", "out": out}, resume=True) == final
    assert (out / "metrics.json").stat().st_mtime_ns == written
    grid = plan_grid(tmp_path, models="cbam_vgg16", losses="ce", weighters="none", optimizers="sgd", splits="0",
                     options={k: v for k, v in options.items() if k != "quiet"})  # fmt: skip
    outcomes = run_grid(grid, progress=False)
    assert [o.status for o in outcomes] == ["skipped"] and (out / "metrics.json").stat().st_mtime_ns == written


def test_sampleweight_plugins_lists_the_optimizers() -> None:
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    plugins = {entry["name"]: entry for entry in json.loads(result.output)}
    assert plugins["optimizers"]["optimizers"] == ["adam", "sgd", "sam", "imbsam"]
    assert plugins["optimizers"]["summaries"]["optimizers"]["sam"].startswith("Sharpness-aware minimisation")
