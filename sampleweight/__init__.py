"""sampleweight: sample-weighting strategies for torch/timm image classifiers on imbalanced data."""

from sampleweight.hookspecs import hookimpl as hookimpl
