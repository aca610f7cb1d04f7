"""A model's classifier layer, found through timm's interface, and its decoupled re-balancing.

Kang et al. (ICLR 2020, "Decoupling representation and classifier for long-tailed recognition") keep a
network's representation and re-balance only its last linear layer. This module holds the pieces that work
on any timm model (and on ours, which expose the same interface):

- `classifier_layer` finds the layer through timm's ``get_classifier()``; `pooled_features` computes what
  feeds it (``forward_head(forward_features(x), pre_logits=True)``); `replace_classifier` swaps it.
- `tau_normalize`: ``w_c / ||w_c||^tau`` per class row (tau-normalisation).
- `WeightScaling`: ``f_c * (w_c . x + b_c)`` with one learnable scale per class (LWS), folded back into a plain
  linear layer by `WeightScaling.folded`.
- `class_means` and `CosineClassifier`: the nearest class mean (NCM) by cosine similarity;
  `centered_class_means` and `CenteredNCMClassifier`: the NCM of Kang et al.'s code by default (``cl2n``):
  Euclidean distance after centring and L2-normalising the features.

The training loop around them (frozen backbone, class-balanced batches, the run directory) is
`sampleweight.engine.retraining`; ``docs/long-tail.md`` gives the formulas and the defaults.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sampleweight.errors import ConfigError

__all__ = [
    "HEADS",
    "CenteredNCMClassifier",
    "CosineClassifier",
    "WeightScaling",
    "centered_class_means",
    "class_means",
    "classifier_layer",
    "install_head",
    "max_norm_",
    "max_norm_limit",
    "pooled_features",
    "replace_classifier",
    "tau_normalize",
]

HEADS = ("linear", "cosine", "cl2n")
"""What a checkpoint's classifier is: the model's own layer, or a nearest-class-mean head put in its place (NCM):
a `CosineClassifier` or a `CenteredNCMClassifier`."""


def classifier_layer(model: nn.Module) -> nn.Module:
    """The model's classifier, as timm's ``get_classifier()`` returns it.

    Args:
        model: A timm model (or any model with ``get_classifier()``).

    Returns:
        The layer that turns pooled features into class scores.

    Raises:
        ConfigError: The model has no ``get_classifier()``, or it returns no single layer with parameters
            (a model built with ``num_classes=0``, a model with several heads).

    Example:
        >>> import timm
        >>> classifier_layer(timm.create_model("test_resnet", num_classes=3))
        Linear(in_features=..., out_features=3, bias=True)
    """
    name = type(model).__name__
    get = getattr(model, "get_classifier", None)
    if not callable(get):
        raise ConfigError(f"the model {name} has no get_classifier(), so its classifier cannot be found")
    layer = get()
    if not isinstance(layer, nn.Module) or isinstance(layer, (nn.Identity, nn.ModuleDict, nn.ModuleList)):
        raise ConfigError(
            f"the model {name} has no single classifier layer (get_classifier() returns {type(layer).__name__})"
        )
    if not any(True for _ in layer.parameters()) and not isinstance(layer, (CosineClassifier, CenteredNCMClassifier)):
        raise ConfigError(f"the model {name}'s classifier {type(layer).__name__} has no weights")
    return layer


def pooled_features(model: nn.Module, x: Tensor) -> Tensor:
    """What feeds the classifier: ``model.forward_head(model.forward_features(x), pre_logits=True)`` [B, D].

    Raises:
        ConfigError: The model lacks ``forward_features`` or ``forward_head`` (timm's interface).
    """
    forward_features = getattr(model, "forward_features", None)
    forward_head = getattr(model, "forward_head", None)
    if not (callable(forward_features) and callable(forward_head)):
        raise ConfigError(
            f"the model {type(model).__name__} has no forward_features()/forward_head(pre_logits=True), so its "
            "pooled features cannot be read apart from its classifier"
        )
    return forward_head(forward_features(x), pre_logits=True)


def replace_classifier(model: nn.Module, layer: nn.Module) -> None:
    """Put ``layer`` where the model's classifier (`classifier_layer`) is, so that ``forward`` uses it.

    Raises:
        ConfigError: The classifier is not a submodule of the model.
    """
    current = classifier_layer(model)
    for name, module in model.named_modules():
        if module is current and name:
            parent_name, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attribute, layer)
            return
    raise ConfigError(f"the classifier of {type(model).__name__} is not one of its submodules; it cannot be replaced")


def tau_normalize(weight: Tensor, tau: float) -> Tensor:
    """Tau-normalised classifier weights: each class row divided by its L2 norm to the power tau.

    ``w_c / ||w_c||^tau``: ``tau = 0`` leaves the rows as they are, ``tau = 1`` gives them unit norm. A row of
    zeros stays zeros (its norm counts as 1).

    Args:
        weight: Classifier weights [C, D].
        tau: The exponent, >= 0.

    Returns:
        The rescaled weights [C, D] (a new tensor).

    Raises:
        ValueError: ``tau < 0`` or not finite.

    Example:
        >>> tau_normalize(torch.tensor([[3.0, 4.0], [0.0, 2.0]]), 1.0)
        tensor([[0.6000, 0.8000],
                [0.0000, 1.0000]])
    """
    if not tau >= 0 or tau == float("inf"):
        raise ValueError(f"tau must be a finite number >= 0, got {tau}")
    norms = weight.norm(dim=1, keepdim=True)
    norms = torch.where(norms > 0, norms, torch.ones_like(norms))
    return weight / norms.pow(tau)


def max_norm_limit(weight: Tensor, threshold: float) -> float:
    """Weight balancing's MaxNorm radius: ``min_c ||w_c|| + threshold (max_c ||w_c|| - min_c ||w_c||)`` over the
    rows of a classifier's weights [C, D], as Alshammari et al.'s code (``MaxNorm_via_PGD.setPerLayerThresh``, which
    sets it once, from the classifier the second stage starts from; their threshold 0.1).

    Args:
        weight: Classifier weights [C, D].
        threshold: Where between the smallest and the largest row norm the radius lies, in [0, 1].

    Raises:
        ValueError: ``threshold`` outside [0, 1].

    Example:
        >>> max_norm_limit(torch.tensor([[3.0, 4.0], [0.0, 1.0]]), 0.5)
        3.0
    """
    if not 0 <= threshold <= 1:
        raise ValueError(
            f"the MaxNorm threshold must lie in [0, 1] (between the smallest and largest norm), got {threshold}"
        )
    norms = weight.detach().reshape(weight.shape[0], -1).norm(dim=1)
    return float(norms.min() + threshold * (norms.max() - norms.min()))


@torch.no_grad()
def max_norm_(weight: Tensor, limit: float) -> Tensor:
    """Project each class row of a classifier's weights [C, D] into the L2 ball of radius ``limit``, in place:
    ``w_c <- w_c * min(1, limit / ||w_c||)`` (MaxNorm by projected gradient descent, Alshammari et al., CVPR 2022).

    Example:
        >>> max_norm_(torch.tensor([[3.0, 4.0], [0.0, 1.0]]), 2.5)
        tensor([[1.5000, 2.0000],
                [0.0000, 1.0000]])
    """
    norms = weight.reshape(weight.shape[0], -1).norm(dim=1)
    scale = torch.where(norms > limit, limit / norms.clamp_min(torch.finfo(norms.dtype).tiny), torch.ones_like(norms))
    weight.mul_(scale.reshape(-1, *([1] * (weight.ndim - 1))).to(weight.dtype))
    return weight


def class_means(features: Tensor, targets: Tensor, num_classes: int) -> Tensor:
    """The mean feature vector of each class [C, D]; a class without samples gets zeros.

    Args:
        features: Features [N, D].
        targets: Class indices [N].
        num_classes: C.

    Example:
        >>> class_means(torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 5.0]]), torch.tensor([0, 0, 1]), 3)
        tensor([[2., 1.],
                [0., 5.],
                [0., 0.]])
    """
    if features.ndim != 2 or targets.shape != features.shape[:1]:
        raise ValueError(
            f"features must be [N, D] and targets [N], got {tuple(features.shape)}, {tuple(targets.shape)}"
        )
    wide = features.double()
    sums = torch.zeros(num_classes, features.shape[1], dtype=torch.float64, device=features.device)
    sums.index_add_(0, targets.long(), wide)
    counts = torch.bincount(targets.long(), minlength=num_classes).clamp(min=1).to(sums)
    return (sums / counts[:, None]).to(features.dtype)


class _ClassMeansHead(nn.Module):
    """What the nearest-class-mean heads share: class means [C, D] and a temperature, as buffers."""

    means: Tensor  # buffers, registered by the subclasses
    scale: Tensor

    @property
    def in_features(self) -> int:
        """D, the features it takes."""
        return self.means.shape[1]

    @property
    def out_features(self) -> int:
        """C, the classes it scores."""
        return self.means.shape[0]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, scale={float(self.scale):.4g}"


class CosineClassifier(_ClassMeansHead):
    """Nearest class mean by cosine similarity: ``scale * cos(x, mu_c)`` for every class c.

    The decision (the largest cosine) does not depend on ``scale``; ``scale`` only sets how peaked the
    softmax scores are. A class mean of zeros (a class with no samples) scores 0.

    Args:
        means: Class means [C, D] (`class_means`), stored as the buffer ``means``.
        scale: The temperature, > 0, stored as the buffer ``scale``.

    Example:
        >>> head = CosineClassifier(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), scale=2.0)
        >>> head(torch.tensor([[3.0, 3.0]]))
        tensor([[1.4142, 1.4142]])
    """

    means: Tensor  # buffers, registered in __init__
    scale: Tensor

    def __init__(self, means: Tensor, scale: float = 1.0) -> None:
        super().__init__()
        if means.ndim != 2:
            raise ValueError(f"means must be [C, D], got {tuple(means.shape)}")
        self.register_buffer("means", means.detach().clone().float())
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, x: Tensor) -> Tensor:
        """Scores [B, C] for features ``x`` [B, D]."""
        return self.scale * F.normalize(x.float(), dim=1) @ F.normalize(self.means, dim=1).T


def centered_class_means(features: Tensor, targets: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """The centre and the class means of Kang et al.'s ``cl2n`` NCM, from the training features.

    ``mu`` is the mean feature of all training images; every feature is centred and L2-normalised,
    ``(f - mu) / ||f - mu||``, and ``m_c`` is the mean of those over the images of class c (facebookresearch/
    classifier-balancing, ``run_networks.py``, ``get_knncentroids``: ``cl2ncs``).

    Args:
        features: Training features [N, D].
        targets: Their class indices [N].
        num_classes: C.

    Returns:
        ``(mu [D], m [C, D])``, in the features' dtype (a class with no sample has a zero mean).

    Example:
        >>> center, means = centered_class_means(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1]), 2)
        >>> center.tolist(), means.tolist()
        ([1.0, 1.0], [[0.7071067690849304, -0.7071067690849304], [-0.7071067690849304, 0.7071067690849304]])
    """
    center = features.double().mean(0)
    normalized = F.normalize(features.double() - center, dim=1)
    return center.to(features.dtype), class_means(normalized, targets, num_classes).to(features.dtype)


class CenteredNCMClassifier(_ClassMeansHead):
    """Nearest class mean after centring and L2-normalising (Kang et al.'s default NCM, ``cl2n``).

    ``scale * -||x_hat - m_c||^2`` for every class c, with ``x_hat = (x - mu) / ||x - mu||``, ``mu`` the mean
    training feature and ``m_c`` the mean of the training images' ``x_hat`` over class c (`centered_class_means`;
    the class means are not normalised again). This is facebookresearch/classifier-balancing's ``KNNClassifier``
    with its defaults ``feat_type='cl2n'``, ``dist_type='l2'`` (``models/KNNClassifier.py``), which its README
    runs for its NCM figures. The decision (the nearest mean) does not depend on ``scale``.

    Args:
        center: mu [D], stored as the buffer ``center``.
        means: m [C, D], stored as the buffer ``means``.
        scale: The temperature, > 0, stored as the buffer ``scale``.

    Example:
        >>> head = CenteredNCMClassifier(torch.zeros(2), torch.tensor([[1.0, 0.0], [0.0, 0.5]]))
        >>> head(torch.tensor([[3.0, 0.0]]))  # x_hat = (1, 0): distance 0 to m_0, 1 + 0.25 to m_1
        tensor([[-0.0000, -1.2500]])
    """

    center: Tensor  # buffers, registered in __init__
    means: Tensor
    scale: Tensor

    def __init__(self, center: Tensor, means: Tensor, scale: float = 1.0) -> None:
        super().__init__()
        if means.ndim != 2 or center.shape != means.shape[1:]:
            raise ValueError(f"center must be [D] and means [C, D], got {tuple(center.shape)}, {tuple(means.shape)}")
        self.register_buffer("center", center.detach().clone().float())
        self.register_buffer("means", means.detach().clone().float())
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, x: Tensor) -> Tensor:
        """Scores [B, C] for features ``x`` [B, D]: minus the scaled squared distances."""
        normalized = F.normalize(x.float() - self.center, dim=1)
        squared = (
            normalized.pow(2).sum(1, keepdim=True) + self.means.pow(2).sum(1)[None] - 2 * normalized @ self.means.T
        )
        return -self.scale * squared


class WeightScaling(nn.Module):
    """Learnable weight scaling (LWS): ``f_c * (w_c . x + b_c)`` with one scale per class, the layer frozen.

    Only ``scales`` (initialised to 1) trains; `folded` returns the equivalent plain linear layer.

    Args:
        linear: The trained classifier (its weights are not changed).

    Example:
        >>> layer = nn.Linear(2, 3)
        >>> scaled = WeightScaling(layer)
        >>> [name for name, p in scaled.named_parameters() if p.requires_grad]
        ['scales']
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise ConfigError(f"learnable weight scaling needs a linear classifier, got {type(linear).__name__}")
        self.linear = linear
        for parameter in self.linear.parameters():
            parameter.requires_grad_(False)
        self.scales = nn.Parameter(torch.ones(linear.out_features, device=linear.weight.device))

    def forward(self, x: Tensor) -> Tensor:
        """Scaled scores [B, C] for features ``x`` [B, D]."""
        return self.linear(x) * self.scales

    @torch.no_grad()
    def folded(self) -> nn.Linear:
        """A linear layer computing the same scores: weights and bias multiplied by the scales."""
        linear = self.linear
        layer = nn.Linear(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )
        layer.weight.copy_(linear.weight * self.scales[:, None])
        if linear.bias is not None:
            layer.bias.copy_(linear.bias * self.scales)
        return layer


def install_head(model: nn.Module, head: str) -> nn.Module:
    """Give a freshly built model the classifier kind a checkpoint holds, before ``load_state_dict``.

    ``linear``: the model's own layer (nothing to do). ``cosine`` or ``cl2n``: a `CosineClassifier` or a
    `CenteredNCMClassifier` of the same shape in place of the model's linear classifier (a nearest-class-mean
    run of ``sampleweight retrain``).

    Args:
        model: The model as built from the run's configuration.
        head: One of `HEADS`.

    Returns:
        The model.

    Raises:
        ConfigError: An unknown head, or a model whose classifier is not linear for ``cosine`` or ``cl2n``.
    """
    if head == "linear":
        return model
    if head not in HEADS:
        raise ConfigError(f"unknown classifier head {head!r} in the checkpoint; known: {', '.join(HEADS)}")
    layer = classifier_layer(model)
    if not isinstance(layer, nn.Linear):
        raise ConfigError(
            f"a {head} head replaces a linear classifier; {type(model).__name__} has {type(layer).__name__}"
        )
    means = layer.weight.new_zeros(layer.out_features, layer.in_features)
    if head == "cosine":
        replace_classifier(model, CosineClassifier(means))
    else:
        replace_classifier(model, CenteredNCMClassifier(layer.weight.new_zeros(layer.in_features), means))
    return model
