"""`WeightedLoss`: a per-sample loss and a weighter, reduced as the paper's Eq. 3 (over the global batch
when several processes train together)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from sampleweight import distributed as dist_helpers
from sampleweight.deferred import DeferredCheck
from sampleweight.errors import ConfigError, LossError, WeightError
from sampleweight.factory import FACTS, SCOPE, accepted_options, check_task, create_loss, create_weighter, lookup
from sampleweight.plugins import TASKS, Registry, get_registry
from sampleweight.weighting import (
    Weighter,
    WeightingBatch,
    apply_weighter,
    check_weights,
    weight_flags,
    weight_problem,
    weighter_name,
)

__all__ = ["WeightedLoss"]


class WeightedLoss(nn.Module):
    """``(1/B) sum_j w_j l_j``: per-sample losses weighted by a weighter (Eq. 3).

    The weights are computed from the detached losses and carry no gradient, so the gradient is
    ``(1/B) sum_j w_j grad l_j``. ``B`` is the length of the batch (a short last batch divides by its
    own size).

    **Several processes** (``torch.distributed`` initialised with more than one process, e.g. under
    ``torchrun`` with DDP): each process passes its own part of the batch, and the weighter sees the
    *global* batch: the losses, targets and indices of all processes, gathered (parts of different
    lengths too) and concatenated in rank order. So SPL/OHEM and their per-class forms select over
    the global batch exactly as one process would on the concatenated batch; every weighter,
    third-party ones included, sees what it would see in one process. Each process keeps the weights
    of its own samples and returns ``(W / B_global) sum_{j in its part} w_j l_j``: DDP averages the
    gradients over the W processes, so the update is ``(1/B_global) sum_j w_j grad l_j`` over the
    global batch, Eq. 3, even when the parts differ in length. Costs two small all-gathers per batch;
    a single process runs none of this.

    **Validation** (``eval()`` mode, as ``model.eval()`` sets it on a criterion that is a submodule of the
    model, e.g. in a LightningModule): the same criterion returns the plain mean ``(1/B) sum_j l_j`` of this
    process's per-sample losses; the weighter is not called, `step` does not advance, ``last_*`` keep the
    last training batch's values, and no collective runs. ``train()`` turns weighting back on.

    **Soft targets.** ``targets`` may be class distributions [B, C] (float, rows summing to 1: what
    ``timm.data.Mixup`` returns) instead of class indices [B]. The loss gets them as they are (each built-in
    loss has a soft form, ``docs/long-tail.md``); the weighter gets them in `WeightingBatch.soft_targets`,
    with ``targets`` the class of largest mass of each sample (gathered over processes like the rest). A loss
    must declare that it takes them: registered with ``soft_targets=True``, or a module whose attribute
    ``soft_targets`` is True; a registered loss that does not, or a module whose ``soft_targets`` is False, is
    refused with a `ConfigError` (a module with no such attribute is trusted: you chose it).

    **Weights** are cast to the dtype of the losses (float16/bfloat16 weights are widened), so
    ``last_weights`` is float32 (float64 for float64 losses); integer weights are refused.

    **A weighter that raises** is reported as a `WeightError` naming it, the epoch and the global step;
    the original exception is its ``__cause__``.

    **Tasks.** ``task="multiclass"`` (the default with a softmax loss) is all of the above. A sigmoid loss (one
    registered with ``tasks`` binary/multilabel, such as ``bce``) trains a ``"binary"`` task, targets 0/1 [B] and one
    logit [B, 1], or a ``"multilabel"`` one, targets [B, L] (0/1) and one logit per label: then 2-D targets are label
    targets, not class distributions; the weighter sees each sample's loss summed over its labels and may return one
    weight per (sample, label) [B, L] (a class weighter does), which weighs the loss's terms (its ``terms(output,
    targets) -> [B, L]``): ``(1/B) sum_j sum_l w_jl l_jl``. A loss or weighter that does not serve the task is a
    `ConfigError` naming it and the task.

    Keyword options are routed by name: dataset facts (``class_counts``, ``num_classes``,
    ``num_epochs``, ``batch_size``, ``class_names``) go to every factory that declares them; any
    other option goes to the loss or the weighter(s), whichever accepts it. An option both accept
    is ambiguous: pass it in ``loss_options`` or ``weighter_options`` instead. A weighter option scoped
    as ``"NAME.KEY"`` (``weighter_options={"es.normalize": "classes"}``) reaches only the component
    NAME of a composition such as ``"ohem+es"``, and is ignored by a weighting without NAME.

    Args:
        loss: A registered loss name (``"ce"``, ``"focal"``, ...) or a per-sample loss module
            ``(output, targets) -> [B]``.
        weighter: A registered weighter name, several (``"ohem+es"`` or a list; weights multiply),
            or a `Weighter` object.
        loss_options: Options for the loss only.
        weighter_options: Options for the weighter(s) only.
        validate: Check every weight vector (shape [B], float, on the device; finite and >= 0)
            and raise a `WeightError` naming the weighter that produced a bad one (for a product,
            the component). ``True``: in the call, which costs one host sync per batch;
            ``"deferred"``: the shape in the call, the values on the device with no host sync,
            raised by `raise_if_invalid` (call it every so many steps: the training engine does);
            ``False``: no check.
        registry: Where names are looked up; default the process-wide registry.
        task: ``"multiclass"``, ``"binary"`` or ``"multilabel"``; default: multiclass for a loss that serves it,
            else binary for class-index targets and multilabel for [B, L] targets, told apart per batch.
        distributed: Select over the global batch of all processes: None (default) when
            ``torch.distributed`` is initialised with more than one process, True to require it
            (an error otherwise), False never (each process weights its own part alone, and returns
            the mean over its own part, as other libraries do).
        **options: Facts and options, routed as above.

    Attributes:
        epoch: The epoch weighters see (set it with `set_epoch`).
        step: Batches weighted so far.
        last_weights: The weights of this process's samples in the last batch [B] (detached), for
            logging.
        last_losses: Their unweighted per-sample losses [B] (detached).
        last_value: Eq. 3 of the last batch, detached: the returned loss in one process; with several,
            the global mean ``(1/B_global) sum_j w_j l_j``, the same on every process.

    Example:
        >>> import sampleweight as sw, torch
        >>> criterion = sw.WeightedLoss("focal", "ohem", gamma=1.0, num_epochs=150, batch_size=20)
        >>> criterion.set_epoch(0)
        >>> loss = criterion(torch.randn(20, 7, requires_grad=True), torch.randint(0, 7, (20,)))
        >>> int(criterion.last_weights.sum())
        10
    """

    def __init__(
        self,
        loss: str | nn.Module = "ce",
        weighter: str | Sequence[str] | Weighter = "none",
        *,
        loss_options: Mapping[str, Any] | None = None,
        weighter_options: Mapping[str, Any] | None = None,
        validate: bool | Literal["deferred"] = True,
        registry: Registry | None = None,
        distributed: bool | None = None,
        task: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        if validate not in (True, False, "deferred"):
            raise ConfigError(f"validate must be True, False or 'deferred', got {validate!r}")
        if task is not None and task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        if task is not None and isinstance(loss, str):
            check_task("losses", loss, task, registry=registry)
        if task is not None and isinstance(weighter, (str, list, tuple)):
            check_task("weighters", weighter, task, registry=registry)
        to_loss, to_weighter = _route(loss, weighter, options, registry)
        to_loss.update(loss_options or {})
        to_weighter.update(weighter_options or {})
        served = _served_tasks(loss, registry)  # before a name becomes a module: its registration's word
        declared: bool | None = None
        if isinstance(loss, str):
            declared = bool(lookup(registry, "losses", loss).info.get("soft_targets", False))
            loss = create_loss(loss, registry=registry, **to_loss)
        elif not callable(loss):
            raise ConfigError(f"loss must be a registered name or a module, got {type(loss).__name__}")
        attribute = getattr(loss, "soft_targets", None)
        if declared is not None:  # a registered loss: its registration or its module says so, else it does not
            declared = declared or attribute is True
        elif attribute is not None:  # a module passed directly: its own word, if it gives one
            declared = bool(attribute)
        self.soft_targets: bool | None = declared
        """Whether the loss takes class distributions as targets: True, False, or None (a module that does not
        say; soft targets are passed to it)."""
        if isinstance(weighter, (str, list, tuple)):
            weighter = create_weighter(weighter, registry=registry, **to_weighter)
        elif not isinstance(weighter, Weighter):
            raise ConfigError(
                f"weighter must be a registered name or a Weighter (callable with state_dict/load_state_dict), "
                f"got {type(weighter).__name__}"
            )
        if task is not None and served is not None and task not in served:  # a module's own ``tasks``
            raise ConfigError(
                f"loss {type(loss).__name__} serves {', '.join(served)} tasks, not the {task} task; pass one that does"
            )
        if task is None:  # a softmax loss (or a module that does not say): multiclass; a sigmoid loss: per batch
            task = "multiclass" if served is None or "multiclass" in served else None
        self.task: str | None = task
        """The task; None: a sigmoid loss's, binary or multilabel by the targets' shape."""
        self.loss = loss
        self.weighter = weighter
        self.validate = validate
        self.distributed = distributed
        self.epoch = 0
        self.step = 0
        self.last_weights: Tensor | None = None
        self.last_losses: Tensor | None = None
        self.last_value: Tensor | None = None
        self._share = 1.0  # what a batch's sum of weighted losses is multiplied by: 1/B, or W/B_global
        self._deferred = DeferredCheck()

    def set_epoch(self, epoch: int) -> None:
        """Set the (0-based) epoch that the weighters see from the next batch on."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def forward(
        self,
        output: Any,
        targets: Tensor,
        *,
        epoch: int | None = None,
        indices: Tensor | None = None,
        samples: Tensor | None = None,
        reuse: bool = False,
    ) -> Tensor:
        """Weighted mean loss of one batch.

        Args:
            output: The model's output (logits [B, C], or whatever the loss takes).
            targets: Class indices [B], or class distributions [B, C] (mixing; see the class doc).
            epoch: Overrides the epoch set by `set_epoch` for this batch.
            indices: Dataset indices of the samples [B], for weighters that keep per-sample state.
            samples: A bool mask [B]: only these samples' terms make the returned loss, still divided by the
                whole (global) batch (the weights are those of the whole batch). ImbSAM's split of the loss.
            reuse: Weight the batch with the last training batch's weights instead of calling the weighter (the
                same batch at other weights: a sharpness-aware optimizer's later passes); ``step`` does not
                advance, ``last_*`` stay those of the weighted pass, and no collective runs.

        Returns:
            A scalar tensor: Eq. 3 in training mode, the plain mean of the losses in ``eval()`` mode.

        Raises:
            WeightError: The weighter raised (naming it, the epoch and the step) or returned invalid weights.
            LossError: The loss did not return one value per sample.
            ConfigError: Soft targets for a loss that does not take them, or targets of another form.
        """
        task = self.task or ("multilabel" if isinstance(targets, Tensor) and targets.ndim == 2 else "binary")
        soft_targets = None if task != "multiclass" else self._soft_targets(targets)
        terms: Tensor | None = None  # the loss of each (sample, label) [B, L], for per-term weights (multilabel)
        split = getattr(self.loss, "terms", None)
        if task == "multilabel" and callable(split):
            terms = split(output, targets)
            losses = terms.sum(dim=-1)
        else:
            losses = self.loss(output, targets)
        batch_len = targets.shape[0]
        if not isinstance(losses, Tensor) or tuple(losses.shape) != (batch_len,):
            shape = list(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__
            raise LossError(
                f"loss {type(self.loss).__name__} returned {shape} for a batch of {batch_len}; "
                f"a per-sample loss must return shape [{batch_len}] (no reduction)"
            )
        if not self.training:  # validation: the plain mean; no weighter, no step, no collective
            return losses.mean()
        keep = None if samples is None else samples.to(losses.device, losses.dtype)
        if reuse:
            if self.last_weights is None or self.last_weights.shape[0] != batch_len:
                raise ConfigError("reuse=True needs the weights of this very batch: call the criterion on it first")
            weighted = self._weighted(self.last_weights, losses, terms)
            return (weighted if keep is None else weighted * keep).sum() * self._share
        epoch = self.epoch if epoch is None else epoch
        if soft_targets is not None:
            targets = soft_targets.argmax(dim=1)  # the class of largest mass (the first on a tie)
        if self._is_global():
            return self._global_forward(losses, targets, epoch, indices, soft_targets, terms, task, keep)
        batch = WeightingBatch(
            losses=losses.detach(),
            targets=targets.detach() if task == "multilabel" else targets,
            epoch=epoch,
            step=self.step,
            indices=indices,
            soft_targets=soft_targets,
            task=task,
        )
        weights = self._weigh(batch)
        self.last_weights, self.last_losses = weights, batch.losses
        self._share = 1.0 / batch_len
        weighted = self._weighted(weights, losses, terms)
        loss = weighted.mean()
        self.last_value = loss.detach()
        return loss if keep is None else (weighted * keep).sum() / batch_len

    def _weighted(self, weights: Tensor, losses: Tensor, terms: Tensor | None) -> Tensor:
        """``w_j l_j`` per sample [B], or ``sum_l w_jl l_jl`` for per-term weights [B, L]."""
        if weights.ndim == 1:
            return weights.to(losses.dtype) * losses
        if terms is None:
            raise LossError(
                f"weighter {weighter_name(self.weighter)!r} weighs each (sample, label) term, but loss "
                f"{type(self.loss).__name__} gives no terms(output, targets) -> [B, L]; use a loss that does (bce, ...)"
            )
        return (weights.to(terms.dtype) * terms).sum(dim=-1)

    def _soft_targets(self, targets: Tensor) -> Tensor | None:
        """The class distributions [B, C] of soft targets (detached), None for class indices; refuses soft
        targets for a loss that does not declare it takes them."""
        if not isinstance(targets, Tensor) or targets.ndim not in (1, 2):
            shape = list(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
            raise ConfigError(f"targets must be class indices [B] or class distributions [B, C], got {shape}")
        if targets.ndim == 1:
            return None
        if not targets.is_floating_point():
            raise ConfigError(
                f"targets of shape {list(targets.shape)} must be class distributions (floats), got {targets.dtype}"
            )
        if self.soft_targets is False:
            raise ConfigError(
                f"loss {type(self.loss).__name__} does not take soft targets (class distributions [B, C], as "
                "mixing gives): it is not registered with soft_targets=True; pass class indices [B] or a loss that does"
            )
        return targets.detach()

    def _weigh(self, batch: WeightingBatch) -> Tensor:
        """The weighter's (checked) weights for ``batch``; counts the step."""
        weights = apply_weighter(self.weighter, batch, weighter_name(self.weighter))
        if self.validate:
            parts = self._parts(weights)
            flags = torch.stack([weight_flags(part) for _, part in parts])  # [parts, 2]
            if self.validate == "deferred":
                self._deferred.update(flags.any(), epoch=batch.epoch, step=batch.step, detail=flags)
            elif bool(flags.any()):  # the one host sync
                for part_name, part in parts:
                    check_weights(part, batch, part_name)
        self.step += 1
        return weights

    def _parts(self, weights: Tensor) -> list[tuple[str, Tensor]]:
        """``(name, weights)`` to check: a product's components first (to blame the one that made a bad
        vector), then what the weighter returned."""
        return [*getattr(self.weighter, "last_parts", ()), (weighter_name(self.weighter), weights)]

    def raise_if_invalid(self) -> None:
        """Raise the `WeightError` of the first invalid weights since the last call (``validate="deferred"``).

        One host sync. The error names the weighter (the component of a product), the problem, and
        the epoch and step of the batch; the batch positions are known only to an immediate check.
        """
        failure = self._deferred.pop()
        if failure is None:
            return
        part = int(failure.detail.any(dim=1).nonzero()[0])
        found = weight_problem(failure.detail[part])
        # the failure was recorded by a forward (so last_weights is set) for flags set in this part
        assert found is not None and self.last_weights is not None
        problem, rule = found
        name, _ = self._parts(self.last_weights)[part]
        raise WeightError(
            f"weighter {name!r} returned {problem} (epoch {failure.epoch}, global step {failure.step}); {rule}",
            epoch=failure.epoch,
            step=failure.step,
            weighter=name,
            problem=f"returned {problem}; {rule}",
        )

    def _is_global(self) -> bool:
        """Whether this batch is weighted over all processes (see ``distributed``)."""
        if self.distributed is False:
            return False
        if dist_helpers.is_distributed():
            return True
        if self.distributed:
            raise ConfigError(
                "WeightedLoss(distributed=True) needs torch.distributed initialised with more than one "
                "process (launch with torchrun); use distributed=None to fall back to one process"
            )
        return False

    def _global_forward(
        self,
        losses: Tensor,
        targets: Tensor,
        epoch: int,
        indices: Tensor | None,
        soft_targets: Tensor | None,
        terms: Tensor | None,
        task: str,
        keep: Tensor | None = None,
    ) -> Tensor:
        """Weight the global batch of all processes and return this process's share of Eq. 3 (see class doc)."""
        blocks = [losses.detach(), targets] + ([] if indices is None else [indices])
        blocks += [b for b in (soft_targets, None if terms is None else terms.detach()) if b is not None]
        blocks = [block.unsqueeze(1) if block.ndim == 1 else block for block in blocks]
        # one all-gather for all columns: float64 holds the losses, integer ids and the target masses exactly
        packed = torch.cat([block.to(losses.device, torch.float64) for block in blocks], dim=1)
        rows, sizes = dist_helpers.gather_rows(packed)
        global_len = rows.shape[0]
        if global_len == 0:
            raise LossError("the global batch is empty on every process; nothing to weight")
        parts = list(rows.split([block.shape[1] for block in blocks], dim=1))
        global_losses = parts.pop(0).squeeze(1).to(losses.dtype)
        global_targets = parts.pop(0).to(targets.dtype)
        global_indices = None if indices is None else parts.pop(0).squeeze(1).to(indices.dtype)
        global_soft = None if soft_targets is None else parts.pop(0).to(soft_targets.dtype)
        global_terms = None if terms is None else parts.pop(0).to(terms.dtype)
        batch = WeightingBatch(
            losses=global_losses,
            targets=global_targets if targets.ndim == 2 else global_targets.squeeze(1),
            epoch=epoch,
            step=self.step,
            indices=global_indices,
            soft_targets=global_soft,
            task=task,
        )
        weights = self._weigh(batch)
        offset = sum(sizes[: dist_helpers.rank()])
        local = weights[offset : offset + losses.shape[0]]
        self.last_weights, self.last_losses = local, losses.detach()
        self.last_value = self._weighted(weights, batch.losses, global_terms).mean()
        self._share = len(sizes) / global_len
        weighted = self._weighted(local, losses, terms)
        return (weighted if keep is None else weighted * keep).sum() * self._share

    def get_extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"epoch": self.epoch, "step": self.step}
        if not isinstance(self.weighter, nn.Module):
            state["weighter"] = dict(self.weighter.state_dict())
        return state

    def set_extra_state(self, state: Mapping[str, Any]) -> None:
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        if "weighter" in state and not isinstance(self.weighter, nn.Module):
            self.weighter.load_state_dict(state["weighter"])

    def extra_repr(self) -> str:
        return f"epoch={self.epoch}, step={self.step}"


def _served_tasks(loss: str | nn.Module, registry: Registry | None) -> tuple[str, ...] | None:
    """The tasks a loss serves: its registration's (or its module's ``tasks``); None for a module that does not say."""
    if isinstance(loss, str):
        return (registry or get_registry()).tasks("losses", loss)
    declared = getattr(loss, "tasks", None)
    return tuple(declared) if declared is not None else None


def _route(
    loss: str | nn.Module,
    weighter: str | Sequence[str] | Weighter,
    options: Mapping[str, Any],
    registry: Registry | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split keyword options between the loss and the weighter(s) by the names their factories accept.

    A factory taking ``**kwargs`` is "open": it receives an option that no factory names, as long as
    the other side is not open too.
    """
    facts = {k: v for k, v in options.items() if k in FACTS}
    rest = {k: v for k, v in options.items() if k not in FACTS}
    loss_accepts, loss_open = _accepts(loss, "losses", registry)
    weighter_accepts, weighter_open = _accepts(weighter, "weighters", registry)
    to_loss = dict(facts if isinstance(loss, str) else {})
    to_weighter = dict(facts if isinstance(weighter, (str, list, tuple)) else {})
    for key, value in rest.items():
        if SCOPE in key:  # "es.normalize": scoped to one weighter, checked by create_weighter
            to_weighter[key] = value
            continue
        for_loss, for_weighter = key in loss_accepts, key in weighter_accepts
        if not (for_loss or for_weighter):
            for_loss, for_weighter = loss_open, weighter_open
        if for_loss and for_weighter:
            raise ConfigError(
                f"option {key!r} is accepted by both the loss and the weighter; pass it as "
                f"loss_options={{{key!r}: ...}} or weighter_options={{{key!r}: ...}}"
            )
        if not (for_loss or for_weighter):
            raise ConfigError(
                f"option {key!r} is accepted by neither the loss nor the weighter; loss options: "
                f"{', '.join(sorted(loss_accepts - set(FACTS))) or '(none)'}; weighter options: "
                f"{', '.join(sorted(weighter_accepts - set(FACTS))) or '(none)'}"
            )
        (to_loss if for_loss else to_weighter)[key] = value
    return to_loss, to_weighter


def _accepts(spec: Any, kind: str, registry: Registry | None) -> tuple[set[str], bool]:
    """Option names the named factories accept, and whether one takes ``**kwargs`` (objects take nothing)."""
    if isinstance(spec, str):
        names = spec.split("+") if kind == "weighters" else [spec]
    elif isinstance(spec, (list, tuple)):
        names = [p for n in spec for p in n.split("+")]
    else:
        return set(), False
    accepted: set[str] = set()
    open_ended = False
    for name in names:
        options = accepted_options(lookup(registry, kind, name.strip()).factory)
        if options is None:
            open_ended = True
        else:
            accepted |= options
    return accepted, open_ended
