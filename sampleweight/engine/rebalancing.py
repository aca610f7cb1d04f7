"""Whether a run already compensates its training class frequencies, and how.

Four things rebalance the classes: a sampler that changes how often each class is drawn (its
``rebalances_classes``), a weighter that weighs by class frequency and a loss that shifts the logits or margins
by the class prior (their registrations' ``rebalances``), and a decoupled second stage
(``sampleweight retrain``). `rebalancing` lists them for one run. Two of them together over-correct (the
rare classes then weigh more than the common ones): ``train`` warns when a rebalancing sampler meets
another one (`rebalancing_twice`), and post-hoc logit adjustment, which divides by the natural training
prior, notes a run that already rebalances (``sampleweight evaluate --logit-adjust``, ``report
--logit-adjust``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from sampleweight.engine.config import TrainConfig, balanced_sampler, complete_config, default_name
from sampleweight.engine.rundir import stage_of
from sampleweight.factory import create_sampler, list_samplers
from sampleweight.plugins import get_registry

__all__ = [
    "loss_rebalances",
    "rebalancing",
    "rebalancing_twice",
    "sampler_rebalances",
    "saved_run_rebalancing",
]


def loss_rebalances(loss: str, options: Mapping[str, Any]) -> bool:
    """Whether ``loss`` with ``options`` accounts for the class prior by itself: its registration's
    ``rebalances``, True or a function of the options (e.g. a logit adjustment with ``tau=0`` does not)."""
    says = get_registry().info("losses", loss).get("rebalances", False)
    return bool(says(options) if callable(says) else says)


def _weighter_rebalances(name: str) -> bool:
    return bool(get_registry().info("weighters", name).get("rebalances"))


def rebalancing(config: TrainConfig, sampler_rebalances: bool, stage: Mapping[str, Any] | None = None) -> list[str]:
    """How a run compensates its training class frequencies: one phrase per way, none for a plain run.

    Args:
        config: The run's configuration.
        sampler_rebalances: Whether its sampler changes how often each class is drawn (the sampler's
            ``rebalances_classes``; `sampler_rebalances` rebuilds it from a finished run).
        stage: A retrained run's ``retrain`` table (``sampleweight retrain``), or None. ``crt`` and ``lws``
            learn the classifier again on the stage's own sampler (class-balanced by default) and loss, so
            the source run's sampler, weighter and loss no longer set its bias: only the stage's count;
            ``tau_norm`` equalises the norms of the source's class weights (its ways stay, and this one is
            added); ``ncm`` scores one mean per class, with no prior at all.

    Returns:
        Phrases such as ``"sampler class_balanced"``, ``"weighter cb"``, ``"loss balanced_softmax"``,
        ``"retrained stage crt (class_balanced batches)"``, the sampler first.

    Example:
        >>> rebalancing(TrainConfig(weighters=["ohem", "es"], loss="balanced_softmax"), sampler_rebalances=False)
        ['weighter es', 'loss balanced_softmax']
    """
    method = stage.get("method") if stage else None
    if method in ("crt", "lws"):
        sampler, loss = stage.get("sampler", balanced_sampler()), stage.get("loss", default_name("losses"))
        ways = [f"retrained stage {method} ({sampler} batches)"] if sampler != default_name("samplers") else []
        rebalances = loss_rebalances(loss, stage.get("loss_options") or {})
        return ways + ([f"retrained stage {method} (loss {loss})"] if rebalances else [])
    if method == "ncm":
        return ["retrained stage ncm"]
    ways = [f"sampler {config.sampler}"] if sampler_rebalances else []
    weighters = [name for name in config.weighters if _weighter_rebalances(name)]
    if weighters:
        ways.append(f"weighter {', '.join(weighters)}")
    if loss_rebalances(config.loss, config.loss_options):
        ways.append(f"loss {config.loss}")
    if method == "tau_norm":
        ways.append("retrained stage tau_norm")
    return ways


def rebalancing_twice(config: TrainConfig, sampler_rebalances: bool) -> str | None:
    """The warning for a class-rebalancing sampler combined with a weighter or loss that rebalances, else None.

    Both compensate the class frequencies, so together they over-correct (rare classes then weigh more
    than common ones); allowed, since some studies do it on purpose (``docs/sampling.md``). A loss registered
    ``pairs_with_rebalancing`` is not warned about: Cao et al. pair LDAM's margins with deferred re-sampling or
    re-weighting by design (LDAM-DRS, LDAM-DRW).
    """
    designed = get_registry().info("losses", config.loss).get("pairs_with_rebalancing")
    ways = [way for way in rebalancing(config, sampler_rebalances) if not (designed and way == f"loss {config.loss}")]
    if not sampler_rebalances or len(ways) < 2:
        return None
    others = ways[1:]
    kinds = " or ".join(dict.fromkeys(way.split()[0] for way in others))  # "weighter", "loss"
    return (
        f"{ways[0]} and {' and '.join(others)} {'both' if len(others) == 1 else 'all'} rebalance the classes, so "
        f"rare classes end up favoured over common ones; use --sampler instance or another {kinds} to rebalance "
        "once (docs/sampling.md)"
    )


def sampler_rebalances(config: TrainConfig, class_counts: Sequence[int] | np.ndarray) -> bool:
    """Whether a finished run's training sampler changed how often each class is drawn.

    The sampler is built again from the run's options and its training class counts (``data.json``), and
    asked (`sampleweight.Sampler`'s ``rebalances_classes``). One that cannot be built here (its plugin is
    not installed) counts as rebalancing unless it is the default one.

    Args:
        config: The run's configuration.
        class_counts: Its training images per class.
    """
    counts = torch.as_tensor(np.asarray(class_counts), dtype=torch.long)
    facts = {
        "targets": torch.repeat_interleave(torch.arange(len(counts)), counts),
        "class_counts": counts,
        "num_epochs": config.epochs,
        "batch_size": config.batch_size,
        "seed": config.seed,
    }
    if config.sampler not in list_samplers():
        return config.sampler != default_name("samplers")
    sampler = create_sampler(config.sampler, num_replicas=1, rank=0, **config.sampler_options, **facts)
    return bool(sampler.rebalances_classes)


def saved_run_rebalancing(saved: Mapping[str, Any], class_counts: Sequence[int] | np.ndarray) -> list[str]:
    """`rebalancing` of a finished run from its ``config.json`` (completed with today's defaults) and counts.

    Args:
        saved: The run's parsed ``config.json`` (a retrained run's includes its ``retrain`` table).
        class_counts: Its training images per class (``data.json``).
    """
    known = {key: value for key, value in complete_config(saved).items() if key in TrainConfig.model_fields}
    config = TrainConfig.model_construct(**known)  # read back, not validated again: only its options are used
    return rebalancing(config, sampler_rebalances(config, class_counts), stage_of(dict(saved)))
