"""Backbone creation shared by the models: the last feature map of any timm model, with its weights.

The backbone is ``timm.create_model(name, features_only=True, out_indices=(-1,))``: the deepest
feature map. For timm's ``vgg16`` that is the output of the last max-pool (``features.30``),
512 x 9 x 9 for a 299 x 299 input, the layer the paper puts CBAM on.

Pretrained weights come from timm's own pretrained config (ImageNet for ``vgg16``), or from a local
file (``pretrained_path``, loaded through timm's ``pretrained_cfg_overlay=dict(file=...)`` so timm's
key conversions apply). Weights that cannot be had (not cached, and their host unreachable) are one
`ConfigError` within seconds (`sampleweight.pretrained`), saying how to provide them offline.
"""

from __future__ import annotations

import contextlib
import difflib
from pathlib import Path
from typing import Any

import timm
import timm.models
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from sampleweight.errors import ConfigError
from sampleweight.pretrained import download_message, weights_available

__all__ = ["create_backbone", "data_config", "feature_channels", "place"]

# Set by the models themselves; a user passing them would build something else than the model.
_RESERVED = ("features_only", "out_indices", "feature_cls", "num_classes", "global_pool")


def create_backbone(
    name: str,
    *,
    pretrained: bool = False,
    pretrained_path: str | Path | None = None,
    in_chans: int = 3,
    **kwargs: Any,
) -> nn.Module:
    """The deepest feature map of a timm model, as a ``features_only`` module returning ``[map]``.

    Args:
        name: Any timm model name that supports ``features_only`` (a ``name.tag`` picks a weight tag).
        pretrained: Load timm's pretrained weights for ``name`` (downloaded or from the HF cache).
        pretrained_path: A local ``.pth``/``.safetensors`` state dict of the timm model ``name``;
            implies ``pretrained``.
        in_chans: Input channels (timm adapts the first convolution of pretrained weights).
        **kwargs: Passed to ``timm.create_model`` (``pretrained_cfg``, ``pretrained_cfg_overlay``,
            ``cache_dir``, ``drop_path_rate``, ``device``, ``dtype``, ...).

    Returns:
        The backbone; ``backbone(x)`` is a one-element list ``[features [B, C, h, w]]``.

    Raises:
        ConfigError: Unknown backbone, a reserved option, no pretrained weights, a weights file that is
            missing or does not fit, or weights that could not be downloaded.
    """
    _check_name(name)
    reserved = sorted(set(kwargs) & set(_RESERVED))
    if reserved:
        raise ConfigError(f"backbone option(s) {reserved} are set by the model itself; remove them")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # as timm.create_model does
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
    if pretrained_path is not None:
        path = Path(pretrained_path).expanduser()
        if not path.is_file():
            raise ConfigError(f"pretrained_path {str(path)!r} is not a file; give a .pth or .safetensors state dict")
        overlay["file"] = str(path)
        pretrained = True
    local_file = overlay.get("file")
    downloads = pretrained and not local_file and "pretrained_cfg" not in kwargs
    if downloads:
        _check_has_weights(name)
    try:
        # offline, weights that are not cached fail in seconds instead of after the Hub's retries
        with weights_available(name, kwargs.get("cache_dir")) if downloads else contextlib.nullcontext():
            return timm.create_model(
                name,
                pretrained=pretrained,
                features_only=True,
                out_indices=(-1,),
                in_chans=in_chans,
                pretrained_cfg_overlay=overlay or None,
                **kwargs,
            )
    except OSError as error:
        if local_file:
            raise ConfigError(f"could not read backbone weights from {local_file!r}: {error}") from error
        raise ConfigError(download_message(name, error)) from error
    except RuntimeError as error:
        if pretrained and local_file:
            reason = str(error).strip().splitlines()[0]
            raise ConfigError(
                f"the weights in {local_file!r} do not fit backbone {name!r} ({reason}); the file must hold "
                f"a state dict of the timm model {name!r}, e.g. torch.save(timm.create_model({name!r}, "
                f"pretrained=True).state_dict(), path)"
            ) from error
        raise


def feature_channels(backbone: nn.Module) -> int:
    """Channels C of the backbone's feature map."""
    return int(backbone.feature_info.channels()[-1])


def data_config(
    backbone: nn.Module, *, architecture: str, num_classes: int, in_chans: int, image_size: int = 299
) -> dict[str, Any]:
    """A timm ``pretrained_cfg`` for a model built on ``backbone``, so timm's data helpers work.

    ``timm.data.resolve_data_config(model=model)`` then gives the paper's 299 x 299 input (resized,
    not cropped: ``crop_pct`` 1) with the backbone's normalisation.
    """
    source = getattr(backbone, "pretrained_cfg", None) or {}
    return {
        "architecture": architecture,
        "input_size": (in_chans, image_size, image_size),
        "interpolation": source.get("interpolation", "bilinear"),
        "mean": tuple(source.get("mean", IMAGENET_DEFAULT_MEAN)),
        "std": tuple(source.get("std", IMAGENET_DEFAULT_STD)),
        "crop_pct": 1.0,
        "crop_mode": "center",
        "num_classes": num_classes,
        "classifier": "fc",
    }


def place(model: nn.Module, backbone_kwargs: dict[str, Any]) -> None:
    """Move the model's own layers to the ``device``/``dtype`` the backbone was created with."""
    device, dtype = backbone_kwargs.get("device"), backbone_kwargs.get("dtype")
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"backbone must be a timm model name, got {name!r}")
    source, _ = timm.models.parse_model_name(name)
    if source or timm.is_model(name):  # hf-hub:/local-dir: names are resolved by timm itself
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
    raise ConfigError(f"unknown timm backbone {name!r}{hint}")


def _check_has_weights(name: str) -> None:
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.has_weights:
        raise ConfigError(
            f"timm has no pretrained weights for backbone {name!r}; pass pretrained=False "
            f"(CLI --no-pretrained) or a local state dict with pretrained_path= (CLI --pretrained-path)"
        )
