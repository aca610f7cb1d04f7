"""Built-in optimizers: adam and sgd (the paper's), sam (Foret et al., ICLR 2021; ``adaptive``: ASAM, Kwon et al.,
ICML 2021) and imbsam (Zhou et al., ICCV 2023).

An optimizer factory takes the parameters first, then its options and the facts its signature names: the run's
``lr``, ``momentum``, ``weight_decay`` and ``device``, and the data set's ``class_counts``, ``num_classes``, ...
(`sampleweight.create_optimizer`). adam and sgd are what the trainer built before optimizers were plugins, with
the same arguments (torch's fused kernel on CUDA and the CPU), so runs and their results are unchanged.

sam and imbsam are `SharpnessAware` optimizers: registered ``closure=True``, their ``step(closure)`` calls the
closure several times per step (``docs/training.md`` gives the contract and the formulas).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from sampleweight.factory import create_optimizer, default_lr
from sampleweight.hookspecs import hookimpl
from sampleweight.plugins import get_registry

ADAM_LR = 1e-5
SGD_LR = 1e-4
"""The paper's learning rates: ADAM 1e-5, SGD (Nesterov momentum 0.9) 1e-4."""
FUSED_DEVICES = ("cuda", "cpu")
"""Devices on which adam and sgd use torch's fused implementation (``fused=True``): one kernel for every
parameter instead of a loop of small ops (``benchmarks/execution_settings.py`` measures what it buys)."""
SAM_RHO = 0.05
"""Foret et al.'s neighbourhood radius rho (their default, ICLR 2021)."""
ASAM_RHO = 0.5
ASAM_ETA = 0.01
"""ASAM's defaults, rho 0.5 and eta 0.01 (Kwon et al., ICML 2021; SamsungLabs/ASAM, ``asam.py``)."""


def _fused(device: torch.device | str | None) -> dict[str, bool]:
    return {"fused": True} if device is not None and torch.device(device).type in FUSED_DEVICES else {}


def adam(
    params: Iterable[Any],
    *,
    lr: float = ADAM_LR,
    weight_decay: float = 0.0,
    device: torch.device | str | None = None,
) -> torch.optim.Adam:
    """ADAM (Kingma & Ba, 2015), torch's, fused on CUDA and the CPU: the paper's first optimizer."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **_fused(device))


def sgd(
    params: Iterable[Any],
    *,
    lr: float = SGD_LR,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    device: torch.device | str | None = None,
) -> torch.optim.SGD:
    """SGD with Nesterov momentum (plain SGD at momentum 0), fused on CUDA and the CPU: the paper's second."""
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay, **_fused(device)
    )


class SharpnessAware(torch.optim.Optimizer):
    """Sharpness-aware minimisation around a base optimizer: SAM, ASAM and ImbSAM.

    With the loss L, the gradient g = grad L(w) and rho > 0, one step moves the weights to the worst point of
    the neighbourhood to first order, ``e = rho g / ||g||`` (ASAM, ``adaptive``: ``e = rho T^2 g / ||T g||`` with
    ``T = |w| + eta`` element-wise), takes the gradient there, grad L(w + e), and lets the base optimizer step
    from w with it (Foret et al., ICLR 2021, Eq. 2-3). ``||.||`` is the L2 norm over all parameters together.

    With ``classes`` (ImbSAM, Zhou et al., ICCV 2023, Eq. 6-7) only the loss of the samples of those classes
    (the tail) is made flat: ``L = L_head + L_tail`` and the step's gradient is
    ``grad L_head(w) + grad L_tail(w + e)``, ``e`` computed from ``grad L_tail(w)``.

    ``step(closure)`` needs the closure (registration ``closure=True``): ``closure(classes=None)`` runs the
    forward and backward pass of the batch at the current weights, with only the samples of the classes marked
    in ``classes`` (a bool mask [C]; None: all) in the loss, and returns the loss. The optimizer clears the
    gradients before each call. SAM calls it twice, ImbSAM three times (head at w, tail at w, tail at w + e:
    the official code's two backward passes of one forward cannot both be all-reduced by DDP).

    A non-finite gradient norm (an fp16 overflow) leaves the weights unperturbed (e = 0) for that step; the
    gradients are used as they come, which a ``GradScaler`` may scale: e is unchanged by a common factor of the
    gradients, and ``update=scaler.step`` makes the last step the scaler's (it unscales, and skips a
    non-finite one).

    Args:
        base: The optimizer that takes the step (its parameter groups are this optimizer's).
        rho: The radius of the neighbourhood.
        adaptive: ASAM's scale-invariant neighbourhood.
        eta: ASAM's offset of ``T``.
        classes: ImbSAM: a bool mask [C] of the classes whose loss is made flat.
    """

    def __init__(
        self,
        base: torch.optim.Optimizer,
        *,
        rho: float = SAM_RHO,
        adaptive: bool = False,
        eta: float = ASAM_ETA,
        classes: Tensor | None = None,
    ) -> None:
        if not rho > 0:
            raise ValueError(f"rho must be > 0, got {rho}")
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        self.base = base
        self.rho, self.adaptive, self.eta = float(rho), bool(adaptive), float(eta)
        self.classes = None if classes is None else torch.as_tensor(classes, dtype=torch.bool)
        super().__init__(base.param_groups, {})
        self.param_groups = base.param_groups  # one set of groups: a scheduler's lr is the base's

    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"] if p.grad is not None]

    @torch.no_grad()
    def perturbation(self) -> dict[Tensor, Tensor]:
        """``e`` of each parameter with a gradient, from the gradients in ``.grad`` (see the class doc)."""
        params = self._params()
        if not params:
            return {}
        scales = [(p.abs() + self.eta) if self.adaptive else None for p in params]
        scaled = [p.grad if t is None else t * p.grad for p, t in zip(params, scales, strict=True)]
        wide = torch.float64 if any(g.dtype == torch.float64 for g in scaled) else torch.float32
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dtype=wide) for g in scaled]))
        factor = torch.where(norm.isfinite(), self.rho / (norm + 1e-12), torch.zeros_like(norm))
        return {
            p: torch.where(factor > 0, (p.grad if t is None else t * t * p.grad) * factor.to(p.dtype), 0.0)
            for p, t in zip(params, scales, strict=True)
        }

    def step(  # type: ignore[override]
        self,
        closure: Callable[..., Any] | None = None,
        update: Callable[[torch.optim.Optimizer], Any] | None = None,
    ) -> Any:
        """One sharpness-aware step (see the class doc).

        Args:
            closure: ``closure(classes=None)``: forward and backward at the current weights; returns the loss.
            update: What takes the base optimizer's step (``GradScaler.step``); default ``base.step()``.

        Returns:
            The closure's first loss (at w).
        """
        if closure is None:
            raise RuntimeError(
                "a sharpness-aware optimizer needs a closure: optimizer.step(closure), where closure(classes=None) "
                "runs the forward and backward pass at the current weights (docs/training.md)"
            )
        with torch.enable_grad():
            if self.classes is None:
                loss = self._call(closure, None)
                kept: dict[Tensor, Tensor] = {}
            else:
                classes = self.classes
                loss = self._call(closure, ~classes)
                kept = {p: p.grad.detach().clone() for p in self._params()}
                self._call(closure, classes)
            perturbation = self.perturbation()
            with torch.no_grad():
                for p, e in perturbation.items():
                    p.add_(e)
            self._call(closure, self.classes)
        with torch.no_grad():
            for p, e in perturbation.items():
                p.sub_(e)
            for p, g in kept.items():
                p.grad = g if p.grad is None else p.grad.add_(g)
        update(self.base) if update is not None else self.base.step()
        return loss

    def _call(self, closure: Callable[..., Any], classes: Tensor | None) -> Any:
        self.zero_grad(set_to_none=True)
        return closure() if classes is None else closure(classes=classes)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """The base optimizer's state: a step leaves nothing of its own (e is undone within it)."""
        return self.base.state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:  # type: ignore[override]
        """Load the base optimizer's state (and share its new parameter groups)."""
        self.base.load_state_dict(dict(state_dict))
        self.param_groups = self.base.param_groups

    def __repr__(self) -> str:
        tail = "" if self.classes is None else f", classes={self.classes.nonzero().flatten().tolist()}"
        return f"{type(self).__name__}(rho={self.rho}, adaptive={self.adaptive}{tail}, base={self.base!r})"


def _base(
    params: Iterable[Any], base: str, lr: float | None, momentum: float, weight_decay: float, device: Any
) -> torch.optim.Optimizer:
    if get_registry().info("optimizers", base).get("closure"):
        raise ValueError(f"base {base!r} is itself sharpness-aware; the base must take a plain step (e.g. sgd)")
    facts = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "device": device}
    return create_optimizer(base, params, **{k: v for k, v in facts.items() if v is not None})


def sam(
    params: Iterable[Any],
    *,
    base: str = "sgd",
    rho: float | None = None,
    adaptive: bool = False,
    eta: float = ASAM_ETA,
    lr: float | None = None,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    device: torch.device | str | None = None,
) -> SharpnessAware:
    """Sharpness-aware minimisation (Foret et al., ICLR 2021) around a base optimizer; adaptive: ASAM.

    Args:
        params: The parameters.
        base: The registered optimizer that takes the step (default sgd, as Foret et al.).
        rho: The neighbourhood's radius (default 0.05, SAM's; 0.5 with ``adaptive``, ASAM's).
        adaptive: ASAM (Kwon et al., ICML 2021): the neighbourhood scaled by ``|w| + eta``.
        eta: ASAM's offset (default 0.01, theirs).
        lr: The base's learning rate (default the base's).
        momentum: The base's momentum (sgd).
        weight_decay: The base's weight decay.
        device: Where the parameters live (the base's fused kernel).
    """
    radius = rho if rho is not None else (ASAM_RHO if adaptive else SAM_RHO)
    return SharpnessAware(
        _base(params, base, lr, momentum, weight_decay, device), rho=radius, adaptive=adaptive, eta=eta
    )


def tail_classes(class_counts: Tensor, threshold: float | None = None) -> Tensor:
    """ImbSAM's tail: the classes with fewer training samples than ``threshold`` (default the median count).

    Example:
        >>> tail_classes(torch.tensor([500, 90, 30, 10]), threshold=50).tolist()
        [False, False, True, True]
    """
    counts = torch.as_tensor(class_counts).long()
    limit = float(counts.float().median()) if threshold is None else float(threshold)
    return counts < limit


def imbsam(
    params: Iterable[Any],
    *,
    class_counts: Tensor,
    threshold: float | None = None,
    base: str = "sgd",
    rho: float = SAM_RHO,
    lr: float | None = None,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    device: torch.device | str | None = None,
) -> SharpnessAware:
    """ImbSAM (Zhou et al., ICCV 2023): sharpness-aware on the tail classes' loss only, a plain gradient for the head.

    Args:
        params: The parameters.
        class_counts: The training side's count per class.
        threshold: A class with fewer samples than this is a tail class (default: the median class count; the
            paper sets a count per data set).
        base: The registered optimizer that takes the step (default sgd, as Zhou et al.).
        rho: The neighbourhood's radius (default 0.05).
        lr: The base's learning rate (default the base's).
        momentum: The base's momentum (sgd).
        weight_decay: The base's weight decay.
        device: Where the parameters live (the base's fused kernel).
    """
    tail = tail_classes(class_counts, threshold)
    if not bool(tail.any()):
        raise ValueError(
            f"no class has fewer than {threshold} samples (counts {torch.as_tensor(class_counts).tolist()}): "
            "there is no tail for ImbSAM; raise threshold"
        )
    return SharpnessAware(_base(params, base, lr, momentum, weight_decay, device), rho=rho, classes=tail)


def _base_lr(options: Mapping[str, Any]) -> float:
    """A sharpness-aware optimizer's default learning rate: its base's."""
    return default_lr(str(options.get("base", "sgd")), {})


def _base_scaled(options: Mapping[str, Any]) -> bool:
    """Whether a sharpness-aware optimizer's update scales with the loss: its base's does."""
    value = get_registry().info("optimizers", str(options.get("base", "sgd"))).get("loss_scaled", False)
    return bool(value(options) if callable(value) else value)


@hookimpl
def register_optimizers(register) -> None:
    register("adam", adam, default=True, lr=ADAM_LR)
    register("sgd", sgd, default=True, lr=SGD_LR, loss_scaled=True)
    register("sam", sam, lr=_base_lr, loss_scaled=_base_scaled, closure=True)
    register("imbsam", imbsam, lr=_base_lr, loss_scaled=_base_scaled, closure=True, splits_by_class=True)
