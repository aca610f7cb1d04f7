"""The paper's published figures for its two models (its Tables 2-5), as the models' registration metadata.

Each model registers them under ``published`` (`sampleweight.plugins.INFO_KEYS`), and ``sampleweight report
--paper`` shows them beside a grid's own results. Every figure is a percentage, the mean of the paper's two
validation splits, transcribed from Tables 2-5 of C. Barata and C. Santiago, "How Important Is Each Dermoscopy
Image?", CVPR Workshops 2020; losses and weightings use this package's names: ``ce``
(the paper's CEL) and ``focal`` (FL), weightings ``none``, ``cb``, ``es``, ``spl``, ``ohem``.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["CBAM_VGG16", "HIERARCHICAL_VGG16"]


def _cell(acc: float, bacc: float, mpr: float, mf1: float) -> dict[str, float]:
    return {"acc": acc, "bacc": bacc, "mpr": mpr, "mf1": mf1}


CBAM_VGG16: Final[dict[str, Any]] = {
    "adam": {
        "source": "the paper's Table 2",
        "results": {
            "ce": {
                "none": _cell(87.5, 72.5, 80.0, 75.5),
                "cb": _cell(82.0, 78.8, 73.0, 75.0),
                "es": _cell(83.5, 78.0, 77.5, 77.0),
                "spl": _cell(87.0, 74.5, 80.0, 77.0),
                "ohem": _cell(84.5, 74.0, 77.0, 74.5),
            },
            "focal": {
                "none": _cell(87.0, 73.5, 79.5, 75.5),
                "cb": _cell(81.0, 78.8, 73.0, 75.0),
                "es": _cell(82.0, 78.7, 74.0, 75.5),
                "spl": _cell(86.0, 71.9, 80.0, 75.0),
                "ohem": _cell(87.0, 75.6, 80.5, 77.5),
            },
        },
    },
    "sgd": {
        "source": "the paper's Table 4",
        "results": {
            "ce": {
                "none": _cell(78.5, 46.1, 57.0, 49.0),
                "cb": _cell(70.5, 69.6, 55.5, 60.0),
                "es": _cell(71.5, 68.9, 54.5, 59.5),
                "spl": _cell(78.0, 45.4, 55.0, 48.0),
                "ohem": _cell(78.0, 44.0, 61.0, 47.0),
            },
            "focal": {
                "none": _cell(76.0, 42.4, 56.5, 44.5),
                "cb": _cell(71.0, 69.0, 53.5, 59.0),
                "es": _cell(71.5, 68.0, 54.0, 58.5),
                "spl": _cell(77.0, 39.0, 60.0, 44.0),
                "ohem": _cell(78.0, 46.1, 59.5, 50.0),
            },
        },
    },
}
"""The flat model's figures: ``CBAM_VGG16[optimizer]["results"][loss][weighting]`` (Tables 2 and 4)."""

HIERARCHICAL_VGG16: Final[dict[str, Any]] = {
    "adam": {
        "source": "the paper's Table 3",
        "results": {
            "ce": {
                "none": _cell(87.5, 75.5, 80.0, 77.0),
                "cb": _cell(84.0, 78.4, 76.0, 76.5),
                "es": _cell(84.5, 76.7, 77.0, 76.0),
                "spl": _cell(85.5, 68.8, 76.5, 72.0),
                "ohem": _cell(87.0, 76.4, 79.0, 76.5),
            },
            "focal": {
                "none": _cell(87.0, 74.5, 79.0, 76.0),
                "cb": _cell(83.0, 76.9, 73.0, 75.0),
                "es": _cell(83.5, 78.0, 74.0, 75.5),
                "spl": _cell(84.5, 65.3, 71.5, 67.5),
                "ohem": _cell(88.0, 75.7, 80.5, 77.5),
            },
        },
    },
    "sgd": {
        "source": "the paper's Table 5",
        "results": {
            "ce": {
                "none": _cell(80.5, 51.8, 56.0, 52.5),
                "cb": _cell(75.0, 74.4, 60.5, 65.5),
                "es": _cell(77.0, 73.8, 62.5, 66.5),
                "spl": _cell(80.5, 52.1, 57.0, 53.0),
                "ohem": _cell(82.5, 55.3, 75.0, 52.5),
            },
            "focal": {
                "none": _cell(78.0, 49.0, 55.0, 51.0),
                "cb": _cell(70.5, 69.8, 55.0, 60.0),
                "es": _cell(72.5, 70.2, 55.5, 60.5),
                "spl": _cell(77.0, 41.5, 52.0, 43.0),
                "ohem": _cell(79.5, 49.2, 57.5, 52.0),
            },
        },
    },
}
"""The hierarchical model's figures (Tables 3 and 5)."""
