"""The training engine: one run of any registered model x loss x weighter(s) x optimizer.

What ``sampleweight train`` and ``sampleweight evaluate`` call, and what a notebook calls::

    from sampleweight.engine import TrainConfig, train

    metrics = train(TrainConfig(data="synthetic:600", epochs=2, image_size=32, weighters=["ohem"]))

Modules, from the run down: `training` (the loop, checkpoints, resume), `loader` (a split as
per-epoch seeded loaders, per-process shares), `config` (`TrainConfig`: the paper's defaults, validated),
`evaluation` (trained runs and ensembles on other data, test-time augmentation, post-hoc logit adjustment),
`submission` (the ISIC 2018 Task 3 CSV), `retraining` (the decoupled second stage: cRT, tau-norm, LWS, NCM),
`rebalancing` (the ways a run already rebalances its classes), `checkpoint` and `rundir` (atomic files, the
run directory), `folder_lock` (one writer per run directory), `progress` (rich bars or quiet lines) and
`ddp` (torchrun + DistributedDataParallel). Nothing in
`sampleweight`'s core imports this package: ``import sampleweight`` stays light for a user's own loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sampleweight.engine.config import TrainConfig as TrainConfig, load_config as load_config

if TYPE_CHECKING:
    from sampleweight.engine.evaluation import evaluate as evaluate
    from sampleweight.engine.training import train as train

__all__ = ["TrainConfig", "evaluate", "load_config", "train"]


def __getattr__(name: str) -> Any:
    # train and evaluate bring the data stack (scikit-learn, ...): imported when first asked for, so that the
    # command line, which reads TrainConfig to build its options, starts without them.
    if name == "train":
        from sampleweight.engine.training import train

        return train
    if name == "evaluate":
        from sampleweight.engine.evaluation import evaluate

        return evaluate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
