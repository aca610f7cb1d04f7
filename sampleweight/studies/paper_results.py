"""The paper's reported results (Tables 2-5), as data: what ``sampleweight report --paper`` shows beside ours.

Every figure is a percentage, the mean of the paper's two validation splits, transcribed from Tables 2-5
of C. Barata and C. Santiago, "How Important Is Each Dermoscopy Image?", CVPR Workshops 2020. Keys use this
package's names: models ``cbam_vgg16`` (the paper's flat model) and ``hierarchical_vgg16``, losses
``ce`` (the paper's CEL) and ``focal`` (FL), weightings ``none``, ``cb``, ``es``, ``spl``, ``ohem``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["PAPER_METRICS", "PAPER_RESULTS", "PAPER_TABLE_NUMBERS", "paper_result"]

PAPER_METRICS: Final = ("acc", "bacc", "mpr", "mf1")
"""The order of the four figures in each cell: Acc, BAcc, mPR, mF1."""

PAPER_TABLE_NUMBERS: Final[dict[tuple[str, str], int]] = {
    ("cbam_vgg16", "adam"): 2,
    ("hierarchical_vgg16", "adam"): 3,
    ("cbam_vgg16", "sgd"): 4,
    ("hierarchical_vgg16", "sgd"): 5,
}
"""Which table of the paper holds each (model, optimizer)."""

_Row = dict[str, tuple[float, float, float, float]]

PAPER_RESULTS: Final[dict[tuple[str, str], dict[str, _Row]]] = {
    # Table 2: flat, ADAM
    ("cbam_vgg16", "adam"): {
        "ce": {
            "none": (87.5, 72.5, 80.0, 75.5),
            "cb": (82.0, 78.8, 73.0, 75.0),
            "es": (83.5, 78.0, 77.5, 77.0),
            "spl": (87.0, 74.5, 80.0, 77.0),
            "ohem": (84.5, 74.0, 77.0, 74.5),
        },
        "focal": {
            "none": (87.0, 73.5, 79.5, 75.5),
            "cb": (81.0, 78.8, 73.0, 75.0),
            "es": (82.0, 78.7, 74.0, 75.5),
            "spl": (86.0, 71.9, 80.0, 75.0),
            "ohem": (87.0, 75.6, 80.5, 77.5),
        },
    },
    # Table 3: hierarchical, ADAM
    ("hierarchical_vgg16", "adam"): {
        "ce": {
            "none": (87.5, 75.5, 80.0, 77.0),
            "cb": (84.0, 78.4, 76.0, 76.5),
            "es": (84.5, 76.7, 77.0, 76.0),
            "spl": (85.5, 68.8, 76.5, 72.0),
            "ohem": (87.0, 76.4, 79.0, 76.5),
        },
        "focal": {
            "none": (87.0, 74.5, 79.0, 76.0),
            "cb": (83.0, 76.9, 73.0, 75.0),
            "es": (83.5, 78.0, 74.0, 75.5),
            "spl": (84.5, 65.3, 71.5, 67.5),
            "ohem": (88.0, 75.7, 80.5, 77.5),
        },
    },
    # Table 4: flat, SGD
    ("cbam_vgg16", "sgd"): {
        "ce": {
            "none": (78.5, 46.1, 57.0, 49.0),
            "cb": (70.5, 69.6, 55.5, 60.0),
            "es": (71.5, 68.9, 54.5, 59.5),
            "spl": (78.0, 45.4, 55.0, 48.0),
            "ohem": (78.0, 44.0, 61.0, 47.0),
        },
        "focal": {
            "none": (76.0, 42.4, 56.5, 44.5),
            "cb": (71.0, 69.0, 53.5, 59.0),
            "es": (71.5, 68.0, 54.0, 58.5),
            "spl": (77.0, 39.0, 60.0, 44.0),
            "ohem": (78.0, 46.1, 59.5, 50.0),
        },
    },
    # Table 5: hierarchical, SGD
    ("hierarchical_vgg16", "sgd"): {
        "ce": {
            "none": (80.5, 51.8, 56.0, 52.5),
            "cb": (75.0, 74.4, 60.5, 65.5),
            "es": (77.0, 73.8, 62.5, 66.5),
            "spl": (80.5, 52.1, 57.0, 53.0),
            "ohem": (82.5, 55.3, 75.0, 52.5),
        },
        "focal": {
            "none": (78.0, 49.0, 55.0, 51.0),
            "cb": (70.5, 69.8, 55.0, 60.0),
            "es": (72.5, 70.2, 55.5, 60.5),
            "spl": (77.0, 41.5, 52.0, 43.0),
            "ohem": (79.5, 49.2, 57.5, 52.0),
        },
    },
}
"""``PAPER_RESULTS[(model, optimizer)][loss][weighting] = (Acc, BAcc, mPR, mF1)`` in percent."""


def paper_result(model: str, optimizer: str, loss: str, weighting: str) -> dict[str, float] | None:
    """The paper's figures for one cell of Tables 2-5, or None where the paper has no such run.

    Args:
        model: ``cbam_vgg16`` or ``hierarchical_vgg16`` (a model name with a timm tag, such as
            ``cbam_vgg16.tv_in1k``, counts as the model).
        optimizer: ``adam`` or ``sgd``.
        loss: ``ce`` or ``focal``.
        weighting: ``none``, ``cb``, ``es``, ``spl`` or ``ohem`` (a composition such as ``ohem+es`` is
            not in the paper).

    Returns:
        ``{"acc", "bacc", "mpr", "mf1"}`` in percent.

    Example:
        >>> paper_result("hierarchical_vgg16", "adam", "focal", "ohem")
        {'acc': 88.0, 'bacc': 75.7, 'mpr': 80.5, 'mf1': 77.5}
    """
    table = PAPER_RESULTS.get((model.split(".")[0], optimizer), {})
    values = table.get(loss, {}).get(weighting)
    return None if values is None else dict(zip(PAPER_METRICS, values, strict=True))
