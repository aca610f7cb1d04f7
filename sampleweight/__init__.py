"""sampleweight: sample-weighting strategies for torch/timm image classifiers on imbalanced data.

Example:
    >>> import sampleweight as sw
    >>> criterion = sw.WeightedLoss("focal", "ohem", gamma=1.0, num_epochs=150, batch_size=20)

Importing the package loads the plugins' models into timm's registry, so that
``timm.create_model("cbam_vgg16", ...)`` works after ``import sampleweight``; weighters and losses are
looked up in the same registry on first use.

This package is the library a training loop imports (weighting, losses, samplers, mixers, plugins, metrics) and
nothing more: ``sampleweight.data`` reads and caches images, ``sampleweight.engine`` runs one training
run, ``sampleweight.studies`` compares many, and ``sampleweight.cli`` is the command line over both;
none of them is imported here.
"""

from importlib import metadata as _metadata

from sampleweight import classifier as classifier, functional as functional
from sampleweight.errors import (
    ConfigError as ConfigError,
    DataError as DataError,
    LossError as LossError,
    OutputError as OutputError,
    PluginError as PluginError,
    RunDirectoryInUseError as RunDirectoryInUseError,
    SampleWeightError as SampleWeightError,
    WeightError as WeightError,
)
from sampleweight.factory import (
    create_loss as create_loss,
    create_mixer as create_mixer,
    create_optimizer as create_optimizer,
    create_sampler as create_sampler,
    create_weighter as create_weighter,
    list_losses as list_losses,
    list_mixers as list_mixers,
    list_models as list_models,
    list_optimizers as list_optimizers,
    list_samplers as list_samplers,
    list_weighters as list_weighters,
)
from sampleweight.hookspecs import hookimpl as hookimpl
from sampleweight.mixing import BaseMixer as BaseMixer, Mixer as Mixer
from sampleweight.plugins import (
    PluginInfo as PluginInfo,
    list_plugins as list_plugins,
    load_at_import as _load_at_import,
)
from sampleweight.sampling import (
    BaseSampler as BaseSampler,
    ClassSampler as ClassSampler,
    Sampler as Sampler,
    ShardedSampler as ShardedSampler,
)
from sampleweight.taxonomy import ISIC2018_TAXONOMY as ISIC2018_TAXONOMY, Taxonomy as Taxonomy
from sampleweight.weighted_loss import WeightedLoss as WeightedLoss
from sampleweight.weighting import (
    BaseWeighter as BaseWeighter,
    ProductWeighter as ProductWeighter,
    Weighter as Weighter,
    WeightingBatch as WeightingBatch,
)

__all__ = [
    "ISIC2018_TAXONOMY",
    "BaseMixer",
    "BaseSampler",
    "BaseWeighter",
    "ClassSampler",
    "ConfigError",
    "DataError",
    "LossError",
    "Mixer",
    "OutputError",
    "PluginError",
    "PluginInfo",
    "ProductWeighter",
    "RunDirectoryInUseError",
    "SampleWeightError",
    "Sampler",
    "ShardedSampler",
    "Taxonomy",
    "WeightError",
    "WeightedLoss",
    "Weighter",
    "WeightingBatch",
    "classifier",
    "create_loss",
    "create_mixer",
    "create_optimizer",
    "create_sampler",
    "create_weighter",
    "functional",
    "hookimpl",
    "list_losses",
    "list_mixers",
    "list_models",
    "list_optimizers",
    "list_plugins",
    "list_samplers",
    "list_weighters",
]

try:
    __version__ = _metadata.version("sampleweight")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

# Models must be in timm's registry as soon as the package is imported (timm has no lazy lookup).
_load_at_import()  # its plugin warnings are shown on the registry's next use
