"""The paper's Tables 2-5 (Barata and Santiago, CVPR Workshops 2020) as its models' registration metadata
(``published``): every cell against their restatement in ../shared/paper/PAPER.md (beside the repository in the
development tree)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sampleweight.plugins import load_plugins
from sampleweight.studies import report

PAPER_MD = Path(__file__).resolve().parents[2] / "shared" / "paper" / "PAPER.md"
WEIGHTINGS = ("none", "cb", "es", "spl", "ohem")
REGISTRY = load_plugins(entry_points=False, builtins=True, register_timm=False)


def published(model: str, optimizer: str, loss: str, weighting: str) -> dict[str, float] | None:
    """One cell of the figures a model's registration carries, read as `sampleweight report --paper` reads them."""
    return report.published(model, optimizer).get("results", {}).get(loss, {}).get(weighting)


def test_a_few_cells_by_hand() -> None:
    assert published("cbam_vgg16", "adam", "ce", "none") == {"acc": 87.5, "bacc": 72.5, "mpr": 80.0, "mf1": 75.5}
    assert published("hierarchical_vgg16", "adam", "focal", "ohem") == {
        "acc": 88.0, "bacc": 75.7, "mpr": 80.5, "mf1": 77.5,
    }  # fmt: skip
    assert published("cbam_vgg16", "sgd", "focal", "spl")["bacc"] == 39.0
    assert published("hierarchical_vgg16", "sgd", "ce", "ohem")["mpr"] == 75.0
    assert published("cbam_vgg16.tv_in1k", "adam", "ce", "cb")["bacc"] == 78.8  # a weight tag is the same model


def test_cells_the_paper_does_not_report_are_none() -> None:
    assert published("cbam_vgg16", "adam", "ce", "ohem+es") is None
    assert published("resnet50", "adam", "ce", "none") is None
    assert published("cbam_vgg16", "adam", "hierarchical", "none") is None


@pytest.mark.skipif(not PAPER_MD.is_file(), reason=f"{PAPER_MD} is only in the development tree")
def test_every_cell_equals_paper_md() -> None:
    text = PAPER_MD.read_text()
    sources = {
        (model, optimizer): table["source"]
        for model in ("cbam_vgg16", "hierarchical_vgg16")
        for optimizer, table in REGISTRY.info("models", model)["published"].items()
    }
    assert sorted(sources.values()) == [f"the paper's Table {n}" for n in (2, 3, 4, 5)]
    for (model, optimizer), source in sources.items():
        number = source.rsplit(" ", 1)[1]
        section = text.split(f"(Table {number})", 1)[1].split("\n\n", 1)[0]
        rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| (CEL|FL) \|(.+)\|$", section, re.MULTILINE)}
        assert set(rows) == {"CEL", "FL"}, f"Table {number}"
        for name, loss in (("CEL", "ce"), ("FL", "focal")):
            cells = [c.strip() for c in rows[name].split("|")]
            printed = [tuple(float(v) for v in cell.split("/")) for cell in cells]
            figures = [tuple(published(model, optimizer, loss, w).values()) for w in WEIGHTINGS]
            assert printed == figures, f"Table {number} {name}"
