"""Taxonomy: the default ISIC 2018 tree, custom trees, derived structures and validation."""

from __future__ import annotations

import copy
import pickle

import pytest

from sampleweight.errors import ConfigError
from sampleweight.taxonomy import (
    ISIC2018_CLASSES,
    ISIC2018_TAXONOMY,
    ISIC2018_TREE,
    Taxonomy,
    as_taxonomy,
)

ISIC2019_TREE = {
    "melanocytic": ["NV", "MEL"],
    "non_melanocytic": {"benign": ["BKL", "DF", "VASC"], "malignant": ["BCC", "AK", "SCC"]},
}
ISIC2019_CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]


def test_isic2018_default_is_the_papers_tree_in_isic_column_order() -> None:
    tax = Taxonomy.isic2018()
    assert tax == ISIC2018_TAXONOMY
    assert tax.classes == ISIC2018_CLASSES == ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
    assert tax.internal_nodes == ("root", "melanocytic", "non_melanocytic", "benign", "malignant")
    assert tax.children("root") == ("melanocytic", "non_melanocytic")
    assert tax.children("melanocytic") == ("NV", "MEL")
    assert tax.children("benign") == ("BKL", "DF", "VASC")
    assert tax.children("MEL") == ()
    assert tax.parent("DF") == "benign"
    assert tax.parent("root") is None
    assert tax.depths == (2, 2, 3, 3, 3, 3, 3)
    assert tax.max_depth == 3
    assert tax.path("MEL") == (("root", 0), ("melanocytic", 1))
    assert tax.path(5) == (("root", 1), ("non_melanocytic", 0), ("benign", 1))  # DF
    assert tax.leaves_under("malignant") == (2, 3)  # BCC, AKIEC
    assert tax.leaves_under("non_melanocytic") == (2, 3, 4, 5, 6)
    assert tax.leaves_under("root") == tuple(range(7))
    assert tax.leaves_under("VASC") == (6,)
    assert tax.nodes[:3] == ("root", "melanocytic", "non_melanocytic")
    assert len(tax.nodes) == 12
    assert tax.is_leaf("NV") and not tax.is_leaf("benign")


def test_custom_isic2019_taxonomy_with_scc_under_malignant() -> None:
    tax = Taxonomy(ISIC2019_TREE, classes=ISIC2019_CLASSES)
    assert tax.num_classes == len(tax) == 8
    assert list(tax) == ISIC2019_CLASSES
    assert tax.path("SCC") == (("root", 1), ("non_melanocytic", 1), ("malignant", 2))
    assert tax.depths == (2, 2, 3, 3, 3, 3, 3, 3)
    assert tax.leaves_under("malignant") == (2, 3, 7)


def test_classes_default_to_tree_order() -> None:
    tax = Taxonomy({"a": ["x", "y"], "b": ["z", "w"]})
    assert tax.classes == ("x", "y", "z", "w")


def test_mixed_children_lists_leaves_and_subtrees() -> None:
    tax = Taxonomy(["UNK", {"lesion": {"melanocytic": ["NV", "MEL"], "other": ["BCC", "BKL"]}}])
    assert tax.children("root") == ("UNK", "lesion")
    assert tax.depths == (1, 3, 3, 3, 3)
    assert Taxonomy.from_config(tax.to_config()) == tax


def test_with_classes_reorders_indices_not_the_tree() -> None:
    order = sorted(ISIC2018_CLASSES)
    tax = ISIC2018_TAXONOMY.with_classes(order)
    assert tax.classes == tuple(order)
    assert tax.internal_nodes == ISIC2018_TAXONOMY.internal_nodes
    assert tax.path("MEL") == ISIC2018_TAXONOMY.path("MEL")
    assert tax.class_index("MEL") == order.index("MEL")
    assert tax != ISIC2018_TAXONOMY


def test_config_round_trip_pickle_and_deepcopy() -> None:
    tax = Taxonomy(ISIC2019_TREE, classes=ISIC2019_CLASSES, root="lesion")
    config = tax.to_config()
    assert config["root"] == "lesion" and config["classes"] == ISIC2019_CLASSES
    assert Taxonomy.from_config(config) == tax
    assert pickle.loads(pickle.dumps(tax)) == tax
    assert copy.deepcopy(tax) == tax
    assert hash(Taxonomy.from_config(config)) == hash(tax)
    assert as_taxonomy(config) == tax
    assert as_taxonomy(None) is ISIC2018_TAXONOMY
    assert "SCC" in repr(tax)


def test_taxonomy_is_immutable() -> None:
    with pytest.raises(AttributeError, match="immutable"):
        ISIC2018_TAXONOMY._classes = ("X",)  # type: ignore[misc]
    with pytest.raises(TypeError):
        ISIC2018_TREE["melanocytic"] = ["NV"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("tree", "classes", "message"),
    [
        pytest.param(
            {"melanocytic": ["NV", "MEL"], "other": ["BCC", "BKL"]},
            ["MEL", "NV", "BCC", "BKL", "SCC"],
            r"class 'SCC' of classes= is missing from the taxonomy tree; add it as a leaf",
            id="class-missing-from-tree",
        ),
        pytest.param(
            {"melanocytic": ["NV", "MEL"], "other": ["BCC", "MEL"]},
            None,
            r"node 'MEL' appears twice \(it is under 'melanocytic' and again under 'other'\)",
            id="duplicate-leaf",
        ),
        pytest.param(
            {"benign": ["NV", "BKL"], "other": {"benign": ["BCC", "DF"], "x": ["MEL", "SCC"]}},
            None,
            r"node 'benign' appears twice",
            id="duplicate-internal-node",
        ),
        pytest.param(
            {"root": ["NV", "MEL"], "other": ["BCC", "BKL"]},
            None,
            r"node 'root' appears twice \(it is the root",
            id="node-named-like-the-root",
        ),
        pytest.param(
            {"melanocytic": ["NV", "MEL"], "other": ["BCC", "XYZ"]},
            ["MEL", "NV", "BCC"],
            r"taxonomy leaf 'XYZ' is not one of classes=.*add it to classes= or remove it from the tree",
            id="leaf-not-in-classes",
        ),
        pytest.param(
            {"melanocytic": ["NV", "MEL"], "other": {"benign": ["BKL"], "malignant": ["BCC", "SCC"]}},
            None,
            r"node 'benign' has 1 child \(only 'BKL'\); an internal node needs at least 2 children",
            id="one-child",
        ),
        pytest.param(
            {"melanocytic": ["NV", "MEL"], "other": []},
            None,
            r"node 'other' has 0 children; an internal node needs at least 2",
            id="no-children",
        ),
        pytest.param(
            {"lesion": ["NV", "MEL"]},
            None,
            r"node 'root' has 1 child \(only 'lesion'\)",
            id="root-with-one-child",
        ),
        pytest.param(
            {"melanocytic": ["NV", "MEL"], "other": ["BCC", "BKL"]},
            ["MEL", "NV", "BCC", "BKL", "MEL"],
            r"class 'MEL' appears twice in classes=",
            id="duplicate-class",
        ),
        pytest.param(
            {"melanocytic": ["NV", "MEL"], "other": ["BCC", "BKL"]},
            ["MEL", "NV", "BCC", "BKL", "other"],
            r"class 'other' is an internal node of the taxonomy, not a leaf",
            id="class-is-internal-node",
        ),
        pytest.param(
            {"melanocytic": ["NV", 3], "other": ["BCC", "BKL"]},
            None,
            r"node names must be non-empty strings, got 3 \(under 'melanocytic'\)",
            id="non-string-name",
        ),
        pytest.param(
            {"melanocytic": 3, "other": ["BCC", "BKL"]},
            None,
            r"children of taxonomy node 'melanocytic' must be a list of class names or a dict",
            id="bad-children-type",
        ),
    ],
)
def test_malformed_taxonomies_raise_config_error_naming_the_problem(
    tree: object, classes: list[str] | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Taxonomy(tree, classes)  # type: ignore[arg-type]


def test_check_classes_accepts_the_same_classes_in_order() -> None:
    ISIC2018_TAXONOMY.check_classes(list(ISIC2018_CLASSES))


def test_check_classes_names_a_data_class_missing_from_the_taxonomy() -> None:
    with pytest.raises(ConfigError, match=r"class 'SCC' in the data is not in the taxonomy"):
        ISIC2018_TAXONOMY.check_classes([*ISIC2018_CLASSES, "SCC"])


def test_check_classes_names_a_taxonomy_class_missing_from_the_data() -> None:
    with pytest.raises(ConfigError, match=r"class 'VASC' of the taxonomy is not in the data"):
        ISIC2018_TAXONOMY.check_classes(ISIC2018_CLASSES[:-1])


def test_check_classes_rejects_another_order_and_points_to_with_classes() -> None:
    with pytest.raises(ConfigError, match=r"class order .* differs .*with_classes"):
        ISIC2018_TAXONOMY.check_classes(sorted(ISIC2018_CLASSES))


def test_unknown_node_and_class_lookups_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="'SCC' is not a class"):
        ISIC2018_TAXONOMY.path("SCC")
    with pytest.raises(ConfigError, match="'keratinocytic' is not a node"):
        ISIC2018_TAXONOMY.children("keratinocytic")
    with pytest.raises(ConfigError, match="needs the key 'tree'"):
        Taxonomy.from_config({"classes": ["A", "B"]})
    with pytest.raises(ConfigError, match="must be a Taxonomy"):
        as_taxonomy(["A", "B"])  # type: ignore[arg-type]


def test_greedy_decode_from_leaves_equals_the_models_level_by_level_decoding() -> None:
    import timm
    import torch

    import sampleweight  # noqa: F401 - registers the models

    model = timm.create_model("hierarchical_vgg16", backbone="test_resnet", pretrained=False).eval()
    with torch.no_grad():
        tree = model.forward_tree(torch.randn(16, 3, 32, 32))
    assert torch.equal(model.taxonomy.greedy_decode(tree.leaf_log_probs), model.greedy_decode(tree))


def test_greedy_decode_differs_from_the_most_probable_leaf() -> None:
    import torch

    from sampleweight.taxonomy import ISIC2018_TAXONOMY as tax

    # melanocytic 0.45 (NV 0.40, MEL 0.05); non-melanocytic 0.55 spread over five classes
    probs = {"MEL": 0.05, "NV": 0.40, "BCC": 0.11, "AKIEC": 0.11, "BKL": 0.11, "DF": 0.11, "VASC": 0.11}
    scores = torch.tensor([[probs[c] for c in tax.classes]]).log()
    assert tax.classes[int(scores.argmax())] == "NV"
    # root: non-melanocytic (0.55) -> benign (0.33) vs malignant (0.22) -> benign -> first of the tie, BKL
    assert tax.classes[int(tax.greedy_decode(scores))] == "BKL"
