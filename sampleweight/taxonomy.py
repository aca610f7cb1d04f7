"""A label taxonomy: the tree of decisions a hierarchical classifier makes, level by level.

The leaves are the class names; their order, and so each class's index, is the ``classes`` tuple the
taxonomy carries (the column order of the data set), not the order of the tree. The default is the
ISIC 2018 taxonomy of the paper::

    root
    ├── melanocytic          NV | MEL                      (2 decisions to a leaf)
    └── non_melanocytic
        ├── benign           BKL | DF | VASC               (3 decisions to a leaf)
        └── malignant        BCC | AKIEC

with classes in ISIC's column order ``MEL, NV, BCC, AKIEC, BKL, DF, VASC``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from sampleweight.errors import ConfigError

__all__ = ["ISIC2018_CLASSES", "ISIC2018_TAXONOMY", "ISIC2018_TREE", "Taxonomy", "as_taxonomy"]

ISIC2018_CLASSES: tuple[str, ...] = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
"""ISIC 2018 Task 3 classes in the column order of its ground-truth CSV."""

ISIC2018_TREE: Mapping[str, Any] = MappingProxyType(
    {
        "melanocytic": ("NV", "MEL"),
        "non_melanocytic": MappingProxyType({"benign": ("BKL", "DF", "VASC"), "malignant": ("BCC", "AKIEC")}),
    }
)
"""The diagnostic hierarchy of the paper (after Barata & Marques 2019), as a nested dict."""


class Taxonomy:
    """An immutable tree of labels whose leaves are the classes of a data set.

    Internal nodes are decisions: a sample's label is reached from the root by choosing one child at
    each internal node on its path. Every node name (internal or leaf) is unique; every internal node
    has at least two children; the leaves are exactly ``classes``.

    The tree is a nested dict: a key is an internal node and its value lists its children, either as
    a list of leaves (class names), as a dict of internal children, or as a list mixing class names
    and one-key dicts (``["SCC", {"keratinocytic": ["AK", "BKL"]}]``). The root is implicit.

    Args:
        tree: The children of the root, as described above.
        classes: The class names in data order (leaf index = position here). Default: the leaves in
            the order they appear in ``tree``.
        root: Name of the root node (it must not be used elsewhere in the tree).

    Raises:
        ConfigError: The tree is malformed or its leaves differ from ``classes``; the message names
            the offending node and the fix.

    Example:
        >>> isic2019 = Taxonomy(
        ...     {
        ...         "melanocytic": ["NV", "MEL"],
        ...         "non_melanocytic": {"benign": ["BKL", "DF", "VASC"], "malignant": ["BCC", "AK", "SCC"]},
        ...     },
        ...     classes=["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"],
        ... )
        >>> isic2019.internal_nodes
        ('root', 'melanocytic', 'non_melanocytic', 'benign', 'malignant')
        >>> isic2019.path("SCC")
        (('root', 1), ('non_melanocytic', 1), ('malignant', 2))
        >>> isic2019.depths
        (2, 2, 3, 3, 3, 3, 3, 3)
    """

    __slots__ = ("_children", "_classes", "_internal", "_leaves_under", "_nodes", "_parent", "_paths", "_root")
    # set once in __init__ through object.__setattr__ (the class is immutable), so declared here for type checkers
    _root: str
    _classes: tuple[str, ...]
    _children: dict[str, tuple[str, ...]]
    _parent: dict[str, str | None]
    _nodes: tuple[str, ...]
    _internal: tuple[str, ...]
    _paths: tuple[tuple[tuple[str, int], ...], ...]
    _leaves_under: dict[str, tuple[int, ...]]

    def __init__(
        self, tree: Mapping[str, Any] | Sequence[Any], classes: Sequence[str] | None = None, *, root: str = "root"
    ):
        _check_name(root, "root")
        children: dict[str, tuple[str, ...]] = {}
        parent: dict[str, str | None] = {root: None}
        leaves: list[str] = []
        _parse(root, tree, children, parent, leaves)

        class_tuple = tuple(leaves) if classes is None else _check_classes_arg(classes)
        _check_leaves(leaves, class_tuple, set(children))

        nodes = _breadth_first(root, children)
        internal = tuple(n for n in nodes if n in children)
        class_index = {name: i for i, name in enumerate(class_tuple)}
        paths = tuple(_path_to(name, parent, children) for name in class_tuple)
        leaves_under = {
            node: tuple(sorted(class_index[leaf] for leaf in _leaves_below(node, children))) for node in nodes
        }

        set_ = object.__setattr__
        set_(self, "_root", root)
        set_(self, "_classes", class_tuple)
        set_(self, "_children", children)
        set_(self, "_parent", parent)
        set_(self, "_nodes", nodes)
        set_(self, "_internal", internal)
        set_(self, "_paths", paths)
        set_(self, "_leaves_under", leaves_under)

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def isic2018(cls) -> Taxonomy:
        """The paper's ISIC 2018 taxonomy (see the module docstring), classes in ISIC column order."""
        return cls(ISIC2018_TREE, ISIC2018_CLASSES)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Taxonomy:
        """Rebuild a taxonomy from `to_config`'s output (``{"root", "tree", "classes"}``)."""
        unknown = set(config) - {"root", "tree", "classes"}
        if unknown or "tree" not in config:
            raise ConfigError(
                f"a taxonomy config needs the key 'tree' (and optionally 'classes', 'root'), got keys {sorted(config)}"
            )
        return cls(config["tree"], config.get("classes"), root=config.get("root", "root"))

    def to_config(self) -> dict[str, Any]:
        """A JSON-serialisable description: ``{"root": ..., "tree": nested dict, "classes": [...]}``."""
        return {"root": self._root, "tree": self._subtree(self._root), "classes": list(self._classes)}

    def with_classes(self, class_names: Sequence[str]) -> Taxonomy:
        """The same tree with the classes in another order (e.g. the data set's column order).

        Args:
            class_names: The same class names as `classes`, in the wanted order.
        """
        return Taxonomy(self._subtree(self._root), class_names, root=self._root)

    # -- structure ---------------------------------------------------------------------------------

    @property
    def root(self) -> str:
        """Name of the root node."""
        return self._root

    @property
    def classes(self) -> tuple[str, ...]:
        """The leaves in class-index order."""
        return self._classes

    @property
    def num_classes(self) -> int:
        """Number of leaves."""
        return len(self._classes)

    @property
    def nodes(self) -> tuple[str, ...]:
        """All nodes in breadth-first order (root first; children in tree order)."""
        return self._nodes

    @property
    def internal_nodes(self) -> tuple[str, ...]:
        """The decision nodes in breadth-first order: every parent comes before its children."""
        return self._internal

    def children(self, node: str) -> tuple[str, ...]:
        """The children of ``node`` in tree order (empty for a leaf)."""
        self._check_node(node)
        return self._children.get(node, ())

    def parent(self, node: str) -> str | None:
        """The parent of ``node`` (None for the root)."""
        self._check_node(node)
        return self._parent[node]

    def is_leaf(self, node: str) -> bool:
        """Whether ``node`` is a class (a leaf)."""
        self._check_node(node)
        return node not in self._children

    def class_index(self, name: str) -> int:
        """The index of class ``name`` in `classes`."""
        try:
            return self._classes.index(name)
        except ValueError:
            raise ConfigError(f"{name!r} is not a class of the taxonomy; classes: {list(self._classes)}") from None

    def path(self, leaf: str | int) -> tuple[tuple[str, int], ...]:
        """The decisions leading to a class: ``((internal_node, child_position), ...)`` from the root.

        Args:
            leaf: A class name or class index.
        """
        index = leaf if isinstance(leaf, int) else self.class_index(leaf)
        return self._paths[index]

    @property
    def paths(self) -> tuple[tuple[tuple[str, int], ...], ...]:
        """`path` of every class, in class order."""
        return self._paths

    @property
    def depths(self) -> tuple[int, ...]:
        """Number of decisions to reach each class, in class order."""
        return tuple(len(p) for p in self._paths)

    @property
    def max_depth(self) -> int:
        """The longest path (the number of levels)."""
        return max(self.depths)

    def leaves_under(self, node: str) -> tuple[int, ...]:
        """Indices of the classes below ``node`` (``(i,)`` for leaf i), sorted."""
        self._check_node(node)
        return self._leaves_under[node]

    def check_classes(self, class_names: Sequence[str]) -> None:
        """Check that a data set's classes, in order, are this taxonomy's classes.

        Args:
            class_names: The data set's class names in class-index order.

        Raises:
            ConfigError: A class of the data is not a leaf, a leaf is not in the data, or the order
                differs; the message says which and how to fix it.
        """
        data = [str(c) for c in class_names]
        if tuple(data) == self._classes:
            return
        leaves = set(self._classes)
        extra = [c for c in data if c not in leaves]
        if extra:
            raise ConfigError(
                f"class {extra[0]!r} in the data is not in the taxonomy (its classes: {list(self._classes)}); "
                f"add it to the taxonomy tree and to classes="
            )
        missing = [c for c in self._classes if c not in data]
        if missing:
            raise ConfigError(
                f"class {missing[0]!r} of the taxonomy is not in the data (data classes: {data}); "
                f"build a taxonomy whose leaves are exactly the data's classes"
            )
        raise ConfigError(
            f"the data's class order {data} differs from the taxonomy's {list(self._classes)}; "
            f"use taxonomy.with_classes(data_class_names) so class indices agree"
        )

    def greedy_decode(self, leaf_scores: Tensor) -> Tensor:
        """The greedy path decision from leaf scores: at each level, the child holding the most mass.

        For leaf log-probabilities that are a product of conditional decisions (the hierarchical
        model's output) the mass under a child is proportional to its conditional probability, so this
        is the level-by-level argmax decoding of Barata & Marques (2019), computed from the leaves
        alone. It can differ from ``leaf_scores.argmax(1)``.

        Args:
            leaf_scores: Leaf log-probabilities (or log-scores) [B, C] in this taxonomy's class order.

        Returns:
            Class indices [B].
        """
        scores = leaf_scores.float() if leaf_scores.dtype != torch.float64 else leaf_scores
        nodes = self.nodes
        index = {node: i for i, node in enumerate(nodes)}
        membership = torch.zeros(len(nodes), self.num_classes, dtype=torch.bool, device=scores.device)
        for node in nodes:
            membership[index[node], list(self.leaves_under(node))] = True
        masses = scores.unsqueeze(1).masked_fill(~membership, float("-inf")).logsumexp(dim=-1)  # [B, nodes]
        current = torch.full((scores.shape[0],), index[self.root], dtype=torch.long, device=scores.device)
        for node in self.internal_nodes:  # breadth-first: a node's parent is decided before it
            kids = torch.tensor([index[kid] for kid in self.children(node)], device=scores.device)
            current = torch.where(current == index[node], kids[masses[:, kids].argmax(dim=1)], current)
        to_class = torch.full((len(nodes),), -1, dtype=torch.long, device=scores.device)
        for name in self.classes:
            to_class[index[name]] = self.class_index(name)
        return to_class[current]

    # -- value semantics ---------------------------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Taxonomy is immutable; build a new one (e.g. with_classes)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Taxonomy is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (Taxonomy.from_config, (self.to_config(),))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Taxonomy):
            return NotImplemented
        return (self._root, self._classes, self._children) == (other._root, other._classes, other._children)

    def __hash__(self) -> int:
        return hash((self._root, self._classes, tuple(sorted(self._children.items()))))

    def __repr__(self) -> str:
        root = "" if self._root == "root" else f", root={self._root!r}"
        return f"Taxonomy({self._subtree(self._root)!r}, classes={self._classes!r}{root})"

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    # -- helpers -----------------------------------------------------------------------------------

    def _check_node(self, node: str) -> None:
        if node not in self._parent:
            raise ConfigError(f"{node!r} is not a node of the taxonomy; nodes: {list(self._nodes)}")

    def _subtree(self, node: str) -> Any:
        """The nested-dict form of ``node``'s children (what the constructor accepts)."""
        kids = self._children[node]
        if all(k not in self._children for k in kids):
            return list(kids)
        if all(k in self._children for k in kids):
            return {k: self._subtree(k) for k in kids}
        return [k if k not in self._children else {k: self._subtree(k)} for k in kids]


def as_taxonomy(value: Taxonomy | Mapping[str, Any] | None) -> Taxonomy:
    """A `Taxonomy` from itself, a `Taxonomy.to_config` dict, or None (the ISIC 2018 default).

    Args:
        value: What a model or loss option holds.
    """
    if value is None:
        return ISIC2018_TAXONOMY
    if isinstance(value, Taxonomy):
        return value
    if isinstance(value, Mapping):
        return Taxonomy.from_config(value)
    raise ConfigError(f"taxonomy must be a Taxonomy or its to_config() dict, got {type(value).__name__}")


def _check_name(name: object, where: str) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"taxonomy node names must be non-empty strings, got {name!r} ({where})")


def _parse(
    node: str,
    value: Any,
    children: dict[str, tuple[str, ...]],
    parent: dict[str, str | None],
    leaves: list[str],
) -> None:
    """Record ``node``'s children from its nested-dict ``value``, recursively."""
    entries: list[tuple[str, Any]] = []  # (child name, its subtree or None for a leaf)
    items: Sequence[Any] = [value] if isinstance(value, (str, Mapping)) else value
    if not isinstance(items, Sequence):
        raise ConfigError(
            f"the children of taxonomy node {node!r} must be a list of class names or a dict of nodes, "
            f"got {type(value).__name__}"
        )
    for item in items:
        if isinstance(item, Mapping):
            entries.extend((key, sub) for key, sub in item.items())
        else:
            entries.append((item, None))
    for name, _ in entries:
        _check_name(name, f"under {node!r}")
        if name in parent:
            first = parent[name]
            where = "is the root" if first is None else f"is under {first!r}"
            raise ConfigError(
                f"taxonomy node {name!r} appears twice (it {where} and again under {node!r}); "
                f"every node and class name must be unique"
            )
        parent[name] = node
    if len(entries) < 2:
        only = f" (only {entries[0][0]!r})" if entries else ""
        raise ConfigError(
            f"taxonomy node {node!r} has {len(entries)} child{'' if len(entries) == 1 else 'ren'}{only}; "
            f"an internal node needs at least 2 children (one choice is no decision): attach the child to "
            f"{node!r}'s parent instead"
        )
    children[node] = tuple(name for name, _ in entries)
    for name, sub in entries:
        if sub is None:
            leaves.append(name)
        else:
            _parse(name, sub, children, parent, leaves)


def _check_classes_arg(classes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(classes, str):
        raise ConfigError(f"classes= must be a sequence of class names, got the string {classes!r}")
    result = tuple(classes)
    seen: set[str] = set()
    for name in result:
        _check_name(name, "in classes=")
        if name in seen:
            raise ConfigError(f"class {name!r} appears twice in classes={list(result)}; class names must be unique")
        seen.add(name)
    return result


def _check_leaves(leaves: Sequence[str], classes: tuple[str, ...], internal: set[str]) -> None:
    known = set(classes)
    for leaf in leaves:
        if leaf not in known:
            raise ConfigError(
                f"taxonomy leaf {leaf!r} is not one of classes={list(classes)}; add it to classes= or remove "
                f"it from the tree"
            )
    leaf_set = set(leaves)
    for name in classes:
        if name in internal:
            raise ConfigError(
                f"class {name!r} is an internal node of the taxonomy, not a leaf; rename the node or the class"
            )
        if name not in leaf_set:
            raise ConfigError(
                f"class {name!r} of classes= is missing from the taxonomy tree; add it as a leaf under the "
                f"node it belongs to (e.g. {{'malignant': [..., {name!r}]}})"
            )


def _breadth_first(root: str, children: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    order, frontier = [root], [root]
    while frontier:
        frontier = [kid for node in frontier for kid in children.get(node, ())]
        order.extend(frontier)
    return tuple(order)


def _path_to(
    leaf: str, parent: Mapping[str, str | None], children: Mapping[str, tuple[str, ...]]
) -> tuple[tuple[str, int], ...]:
    steps: list[tuple[str, int]] = []
    node = leaf
    while (up := parent[node]) is not None:
        steps.append((up, children[up].index(node)))
        node = up
    return tuple(reversed(steps))


def _leaves_below(node: str, children: Mapping[str, tuple[str, ...]]) -> Iterator[str]:
    if node not in children:
        yield node
        return
    for kid in children[node]:
        yield from _leaves_below(kid, children)


ISIC2018_TAXONOMY: Taxonomy = Taxonomy.isic2018()
"""The default taxonomy: `Taxonomy.isic2018`."""
