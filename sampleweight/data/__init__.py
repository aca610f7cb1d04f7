"""Data: read ISIC 2018 / HAM10000 (or any labelled image folder, a folder of images to score without labels,
or the built-in synthetic set), split it
by lesion, colour-normalise and cache the images once, and serve them to torch.

Typical use::

    from sampleweight.data import read_dataset, build_datasets

    records = read_dataset("path/to/HAM10000")  # or "synthetic:2000"; the layout is detected
    data = build_datasets(records, split=0, seed=0, image_size=299)
    data.train, data.val, data.class_counts  # torch Datasets and the training-side class counts

See ``docs/data.md`` for the layouts, the split protocol, the cache and the augmentation.
"""

from sampleweight.data.cache import (
    CACHE_DIR_ENV as CACHE_DIR_ENV,
    CachedImages as CachedImages,
    PrepareSummary as PrepareSummary,
    cache_key as cache_key,
    default_cache_dir as default_cache_dir,
    prepare as prepare,
    prepare_cache as prepare_cache,
)
from sampleweight.data.colour import illuminant as illuminant, shades_of_gray as shades_of_gray
from sampleweight.data.dataset import (
    AUGMENT_MODES as AUGMENT_MODES,
    CachedImageDataset as CachedImageDataset,
    SplitDatasets as SplitDatasets,
    build_datasets as build_datasets,
    build_eval_dataset as build_eval_dataset,
)
from sampleweight.data.inventory import DataInventory as DataInventory
from sampleweight.data.layouts import HAM10000_DX as HAM10000_DX, LAYOUTS as LAYOUTS, read_dataset as read_dataset
from sampleweight.data.records import (
    ISIC_CLASSES as ISIC_CLASSES,
    UNLABELLED as UNLABELLED,
    DatasetRecords as DatasetRecords,
)
from sampleweight.data.splits import (
    split_class_counts as split_class_counts,
    split_indices as split_indices,
    split_strata as split_strata,
)
from sampleweight.data.synthetic import (
    DEFAULT_SYNTHETIC_SIZE as DEFAULT_SYNTHETIC_SIZE,
    synthetic_records as synthetic_records,
)
from sampleweight.data.transforms import (
    IMAGENET_MEAN as IMAGENET_MEAN,
    IMAGENET_STD as IMAGENET_STD,
    Augmentation as Augmentation,
    BatchAugment as BatchAugment,
    decode_image as decode_image,
    eval_transform as eval_transform,
    preprocess_image as preprocess_image,
    train_transform as train_transform,
)
