"""The paper's Tables 2-5 (Barata and Santiago, CVPR Workshops 2020) as data: every cell against their
restatement in ../shared/paper/PAPER.md (beside the repository in the development tree)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sampleweight.studies.paper_results import PAPER_RESULTS, PAPER_TABLE_NUMBERS, paper_result

PAPER_MD = Path(__file__).resolve().parents[2] / "shared" / "paper" / "PAPER.md"
WEIGHTINGS = ("none", "cb", "es", "spl", "ohem")


def test_a_few_cells_by_hand() -> None:
    assert paper_result("cbam_vgg16", "adam", "ce", "none") == {"acc": 87.5, "bacc": 72.5, "mpr": 80.0, "mf1": 75.5}
    assert paper_result("hierarchical_vgg16", "adam", "focal", "ohem") == {
        "acc": 88.0, "bacc": 75.7, "mpr": 80.5, "mf1": 77.5,
    }  # fmt: skip
    assert paper_result("cbam_vgg16", "sgd", "focal", "spl")["bacc"] == 39.0
    assert paper_result("hierarchical_vgg16", "sgd", "ce", "ohem")["mpr"] == 75.0
    assert paper_result("cbam_vgg16.tv_in1k", "adam", "ce", "cb")["bacc"] == 78.8  # a weight tag is the same model


def test_cells_the_paper_does_not_report_are_none() -> None:
    assert paper_result("cbam_vgg16", "adam", "ce", "ohem+es") is None
    assert paper_result("resnet50", "adam", "ce", "none") is None
    assert paper_result("cbam_vgg16", "adam", "hierarchical", "none") is None


@pytest.mark.skipif(not PAPER_MD.is_file(), reason=f"{PAPER_MD} is only in the development tree")
def test_every_cell_equals_paper_md() -> None:
    text = PAPER_MD.read_text()
    for (model, optimizer), number in PAPER_TABLE_NUMBERS.items():
        section = text.split(f"(Table {number})", 1)[1].split("\n\n", 1)[0]
        rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| (CEL|FL) \|(.+)\|$", section, re.MULTILINE)}
        assert set(rows) == {"CEL", "FL"}, f"Table {number}"
        for name, loss in (("CEL", "ce"), ("FL", "focal")):
            cells = [c.strip() for c in rows[name].split("|")]
            printed = [tuple(float(v) for v in cell.split("/")) for cell in cells]
            assert printed == [PAPER_RESULTS[(model, optimizer)][loss][w] for w in WEIGHTINGS], f"Table {number} {name}"
