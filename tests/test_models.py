"""The paper's models: timm registration, shapes, attention maps, hierarchy, weights."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

import sampleweight  # noqa: F401  (registers the plugin models in timm once the core loads them)
from sampleweight.builtins import models as model_plugin
from sampleweight.builtins.models import (
    CbamVGG16,
    HierarchicalLoss,
    HierarchicalVGG16,
    TreeOutput,
    cbam_vgg16,
    hierarchical_vgg16,
)
from sampleweight.errors import ConfigError
from sampleweight.taxonomy import ISIC2018_CLASSES, Taxonomy

TINY = "test_resnet"  # timm's tiny test network: 96 channels at stride 32
ISIC2019 = Taxonomy(
    {
        "melanocytic": ["NV", "MEL"],
        "non_melanocytic": {"benign": ["BKL", "DF", "VASC"], "malignant": ["BCC", "AK", "SCC"]},
    },
    classes=["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"],
)


@pytest.fixture(scope="module")
def registered() -> None:
    """Both models in timm's registry: through ``import sampleweight`` or, before that, the hook."""

    def register(name: str, factory: object, **info: object) -> None:
        if not timm.is_model(name):
            assert factory.__name__ == name  # type: ignore[attr-defined]
            timm.models.register_model(factory)  # type: ignore[arg-type]

    model_plugin.register_models(register)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def images(batch: int = 2, size: int = 64) -> torch.Tensor:
    return torch.randn(batch, 3, size, size)


def in_unit_interval(t: torch.Tensor) -> bool:
    return bool(((t >= 0) & (t <= 1)).all())


# -- registration -----------------------------------------------------------------------------------


def test_plugin_registers_both_model_entry_points() -> None:
    names: dict[str, object] = {}
    infos: dict[str, dict] = {}
    model_plugin.register_models(lambda name, fn, **info: (names.__setitem__(name, fn), infos.__setitem__(name, info)))
    assert names == {"cbam_vgg16": cbam_vgg16, "hierarchical_vgg16": hierarchical_vgg16}
    assert (infos["cbam_vgg16"]["epochs"], infos["hierarchical_vgg16"]["epochs"]) == (150, 250)  # the paper's
    assert infos["hierarchical_vgg16"]["hierarchical"] and not infos["cbam_vgg16"].get("hierarchical")


def test_timm_create_model_finds_both_names(registered: None) -> None:
    flat = timm.create_model("cbam_vgg16", num_classes=5, backbone=TINY, pretrained=False)
    tree = timm.create_model("hierarchical_vgg16", backbone=TINY, pretrained=False)
    assert isinstance(flat, CbamVGG16) and flat.num_classes == 5
    assert isinstance(tree, HierarchicalVGG16) and tree.num_classes == 7
    assert flat(images()).shape == (2, 5)
    assert tree(images()).shape == (2, 7)


# -- flat model -------------------------------------------------------------------------------------


def test_vgg16_at_299_puts_cbam_on_the_512x9x9_last_max_pool() -> None:
    model = cbam_vgg16(pretrained=False, num_classes=7).eval()
    assert [type(m).__name__ for m in model.backbone.children()][-1] == "MaxPool2d"
    with torch.no_grad():
        out = model.forward_attention(torch.randn(1, 3, 299, 299))
    assert out.features.shape == (1, 512, 9, 9)
    assert out.channel.shape == (1, 512)
    assert out.spatial.shape == (1, 1, 9, 9)
    assert out.logits.shape == (1, 7)
    assert model.fc.in_features == 512  # one linear layer straight from the pooled CBAM output
    assert not any(isinstance(m, torch.nn.Linear) for m in model.backbone.modules())  # no VGG MLP
    assert model.pretrained_cfg["input_size"] == (3, 299, 299)


@pytest.mark.parametrize(("size", "grid"), [(64, 2), (96, 3)])
def test_flat_model_shapes_and_attention_maps_with_a_tiny_backbone(size: int, grid: int) -> None:
    model = CbamVGG16(num_classes=7, backbone=TINY).eval()
    x = images(3, size)
    out = model.forward_attention(x)
    assert out.features.shape == (3, 96, grid, grid)
    assert out.channel.shape == (3, 96) and out.spatial.shape == (3, 1, grid, grid)
    assert in_unit_interval(out.channel) and in_unit_interval(out.spatial)
    assert torch.allclose(out.logits, model(x), atol=1e-6)
    assert model.forward_features(x).shape == (3, 96, grid, grid)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (3, 96)


def test_flat_model_classifier_can_be_replaced_like_timm_models() -> None:
    model = CbamVGG16(num_classes=7, backbone=TINY, drop_rate=0.0)
    assert isinstance(model.get_classifier(), torch.nn.Linear) and model.get_classifier().out_features == 7
    model.reset_classifier(3)
    assert model(images()).shape == (2, 3) and model.pretrained_cfg["num_classes"] == 3
    model.reset_classifier(0)
    assert model(images()).shape == (2, 96)
    config = timm.data.resolve_data_config({}, model=model)
    assert config["input_size"] == (3, 299, 299) and config["crop_pct"] == 1.0


def test_flat_model_other_backbone_and_dtype() -> None:
    model = CbamVGG16(num_classes=4, backbone="mobilenetv3_small_050", dtype=torch.float64).eval()
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert model(images().double()).shape == (2, 4)


def test_flat_model_gradients_reach_the_backbone() -> None:
    model = CbamVGG16(num_classes=7, backbone=TINY)
    torch.nn.functional.cross_entropy(model(images()), torch.tensor([0, 3])).backward()
    first_conv = next(p for p in model.backbone.parameters() if p.ndim == 4)
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.cbam.parameters())


# -- hierarchical model -----------------------------------------------------------------------------


def test_hierarchical_leaf_probabilities_sum_to_one_in_train_and_eval() -> None:
    model = HierarchicalVGG16(backbone=TINY)
    for mode in (True, False):
        model.train(mode)
        log_probs = model(images(4))
        assert log_probs.shape == (4, 7)
        assert torch.allclose(log_probs.exp().sum(1), torch.ones(4), atol=1e-6)


def test_hierarchical_leaf_log_probs_are_products_of_node_softmaxes() -> None:
    model = HierarchicalVGG16(backbone=TINY).eval()
    tree = model.forward_tree(images(2))
    p = {node: logits.softmax(1) for node, logits in tree.node_logits.items()}
    df = p["root"][:, 1] * p["non_melanocytic"][:, 0] * p["benign"][:, 1]
    mel = p["root"][:, 0] * p["melanocytic"][:, 1]
    akiec = p["root"][:, 1] * p["non_melanocytic"][:, 1] * p["malignant"][:, 1]
    leaf = tree.leaf_log_probs.exp()
    assert torch.allclose(leaf[:, ISIC2018_CLASSES.index("DF")], df, atol=1e-6)
    assert torch.allclose(leaf[:, ISIC2018_CLASSES.index("MEL")], mel, atol=1e-6)
    assert torch.allclose(leaf[:, ISIC2018_CLASSES.index("AKIEC")], akiec, atol=1e-6)


def test_hierarchical_per_node_outputs_and_dynamic_attention() -> None:
    model = HierarchicalVGG16(backbone=TINY).eval()
    tree = model.forward_tree(images(2, 96))
    widths = {"root": 2, "melanocytic": 2, "non_melanocytic": 2, "benign": 3, "malignant": 2}
    assert {node: t.shape for node, t in tree.node_logits.items()} == {n: (2, k) for n, k in widths.items()}
    assert set(tree.attention) == set(widths)
    for maps in tree.attention.values():
        assert maps.channel.shape == (2, 96) and maps.spatial.shape == (2, 1, 3, 3)
        assert in_unit_interval(maps.channel) and in_unit_interval(maps.spatial)
    assert tree.features.shape == (2, 96, 3, 3)
    # conditioned on the LSTM state of each decision, so the maps differ between levels
    assert not torch.allclose(tree.attention["root"].channel, tree.attention["benign"].channel)
    assert not torch.allclose(tree.attention["root"].spatial, tree.attention["benign"].spatial)


def test_greedy_decode_walks_the_argmax_path() -> None:
    model = HierarchicalVGG16(backbone=TINY).eval()
    tree = model.forward_tree(images(6))
    want = []
    for j in range(6):
        node = "root"
        while node in model.taxonomy.internal_nodes:
            node = model.taxonomy.children(node)[int(tree.node_logits[node][j].argmax())]
        want.append(ISIC2018_CLASSES.index(node))
    assert model.greedy_decode(tree).tolist() == want
    assert model.greedy_decode(images(6)).shape == (6,)


def test_greedy_decode_can_differ_from_the_product_of_conditionals() -> None:
    model = HierarchicalVGG16(backbone=TINY)
    log = math.log
    # root 0.6 melanocytic; NV 0.55 / MEL 0.45; non-melanocytic -> benign -> BKL with certainty
    node_logits = {
        "root": [log(0.6), log(0.4)],
        "melanocytic": [log(0.55), log(0.45)],
        "non_melanocytic": [0.0, -50.0],
        "benign": [0.0, -50.0, -50.0],
        "malignant": [0.0, 0.0],
    }
    tree = TreeOutput(
        # MEL, NV, BCC, AKIEC, BKL, DF, VASC (exp(-50) rounds away next to 1)
        leaf_log_probs=torch.tensor(
            [[log(0.27), log(0.33), log(0.2) - 50, log(0.2) - 50, log(0.4)] + [log(0.4) - 50] * 2]
        ),
        node_logits={node: torch.tensor([values]) for node, values in node_logits.items()},
        attention={},
        features=torch.zeros(1, 1, 1, 1),
    )
    assert model.greedy_decode(tree).item() == ISIC2018_CLASSES.index("NV")  # 0.6 * 0.55 = 0.33
    assert tree.leaf_log_probs.argmax(1).item() == ISIC2018_CLASSES.index("BKL")  # 0.4 > 0.33
    assert torch.allclose(model._leaf_log_probs(tree.node_logits), tree.leaf_log_probs, atol=1e-4)


def test_hierarchical_gradients_reach_the_backbone_through_the_loss() -> None:
    model = HierarchicalVGG16(backbone=TINY)
    losses = HierarchicalLoss(gamma=1.0)(model(images(3)), torch.tensor([0, 4, 3]))
    assert losses.shape == (3,)
    losses.mean().backward()
    first_conv = next(p for p in model.backbone.parameters() if p.ndim == 4)
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    assert model.embedding.weight.grad is not None and model.init_h.weight.grad is not None


def test_custom_taxonomy_end_to_end_model_and_loss() -> None:
    model = HierarchicalVGG16(taxonomy=ISIC2019, num_classes=8, backbone=TINY)
    log_probs = model(images(3))
    assert log_probs.shape == (3, 8)
    assert torch.allclose(log_probs.exp().sum(1), torch.ones(3), atol=1e-6)
    loss = HierarchicalLoss(ISIC2019)(log_probs, torch.tensor([7, 0, 3]))  # SCC, MEL, AK
    assert loss.shape == (3,) and torch.isfinite(loss).all()
    loss.sum().backward()
    assert len(model.heads) == 5 and model.heads[-1].out_features == 3  # malignant: BCC | AK | SCC
    predicted = model.eval().greedy_decode(images(3))
    assert ((predicted >= 0) & (predicted < 8)).all()


def test_hierarchical_num_classes_must_match_the_taxonomy() -> None:
    with pytest.raises(ConfigError, match=r"predicts the 7 classes of its taxonomy .* num_classes=8"):
        HierarchicalVGG16(num_classes=8, backbone=TINY)


def test_hierarchical_state_dict_round_trip() -> None:
    model = HierarchicalVGG16(backbone=TINY).eval()
    assert not any(key.startswith("_") for key in model.state_dict())  # tree indices are derived
    clone = HierarchicalVGG16(backbone=TINY).eval()
    clone.load_state_dict(model.state_dict())
    x = images()
    assert torch.equal(clone(x), model(x))


# -- backbones and weights --------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["pth", "safetensors"])
def test_pretrained_path_loads_a_local_state_dict(tmp_path: Path, suffix: str) -> None:
    source = timm.create_model(TINY).state_dict()
    path = tmp_path / f"weights.{suffix}"
    if suffix == "pth":
        torch.save(source, path)
    else:
        save_file(source, str(path))
    model = CbamVGG16(backbone=TINY, pretrained_path=str(path))
    loaded = model.backbone.state_dict()
    shared = [key for key in loaded if key in source and source[key].is_floating_point()]
    assert len(shared) > 10
    assert all(torch.equal(loaded[key], source[key]) for key in shared)
    fresh = CbamVGG16(backbone=TINY).backbone.state_dict()
    assert not all(torch.equal(fresh[key], source[key]) for key in shared)


def test_timm_pretrained_cfg_overlay_file_reaches_the_backbone(tmp_path: Path, registered: None) -> None:
    source = timm.create_model(TINY).state_dict()
    torch.save(source, tmp_path / "w.pth")
    model = timm.create_model(
        "hierarchical_vgg16", backbone=TINY, pretrained=True, pretrained_cfg_overlay={"file": str(tmp_path / "w.pth")}
    )
    key = next(k for k in model.backbone.state_dict() if k.endswith("weight") and k in source)
    assert torch.equal(model.backbone.state_dict()[key], source[key])


def test_pretrained_path_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a file"):
        CbamVGG16(backbone=TINY, pretrained_path=tmp_path / "missing.pth")
    torch.save(timm.create_model("test_efficientnet").state_dict(), tmp_path / "other.pth")
    with pytest.raises(ConfigError, match=r"do not fit backbone 'test_resnet' .*state dict of the timm model"):
        CbamVGG16(backbone=TINY, pretrained_path=tmp_path / "other.pth")


def test_offline_download_failure_is_one_clear_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    with pytest.raises(ConfigError) as caught:
        cbam_vgg16(pretrained=True, backbone=TINY, cache_dir=str(tmp_path))  # empty cache
    message = str(caught.value)
    assert "could not download the pretrained weights of backbone 'test_resnet'" in message
    assert "pretrained_path=" in message and "--pretrained-path" in message
    assert "Hugging Face cache" in message and "pretrained=False" in message


@pytest.fixture
def unreachable_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The Hub's endpoint on a closed local port, an empty Hub cache, no proxy; returns timm's download calls."""
    import socket

    import huggingface_hub.constants
    import timm.models._hub

    with socket.socket() as probe:  # a port nothing listens on: connections are refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for variable in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    calls: list[str] = []
    download = timm.models._hub.hf_hub_download

    def recording(*args, **kwargs):
        calls.append(kwargs.get("filename", args[1] if len(args) > 1 else ""))
        if kwargs.get("local_files_only") or huggingface_hub.constants.HF_HUB_OFFLINE:
            return download(*args, **kwargs)
        raise OSError("a download was attempted")  # the real one would retry for ~46 s

    monkeypatch.setattr(timm.models._hub, "hf_hub_download", recording)
    return calls


def test_an_unreachable_weights_host_fails_at_once_with_the_offline_message(unreachable_hub) -> None:
    with pytest.raises(ConfigError) as caught:
        cbam_vgg16(pretrained=True, backbone="vgg16")
    message = str(caught.value)
    assert "could not download the pretrained weights of backbone 'vgg16' from Hugging Face Hub" in message
    assert "cannot reach 127.0.0.1" in message and "--pretrained-path" in message
    assert unreachable_hub == []  # no download attempt, so no retries


def test_cached_weights_load_without_the_network(unreachable_hub, tmp_path: Path) -> None:
    import huggingface_hub.constants
    import safetensors.torch

    source = timm.create_model(TINY).state_dict()
    repo = Path(huggingface_hub.constants.HF_HUB_CACHE) / "models--timm--test_resnet.r160_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    safetensors.torch.save_file(source, repo / "snapshots" / ("0" * 40) / "model.safetensors")
    model = cbam_vgg16(pretrained=True, backbone=TINY)
    key = next(k for k in model.backbone.state_dict() if k.endswith("weight") and k in source)
    assert torch.equal(model.backbone.state_dict()[key], source[key])
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False  # offline only while loading


def test_backbone_without_timm_weights_and_unknown_backbones_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="timm has no pretrained weights for backbone 'ghostnet_050'"):
        CbamVGG16(backbone="ghostnet_050", pretrained=True)
    with pytest.raises(ConfigError, match="unknown timm backbone 'vgg61'; did you mean"):
        CbamVGG16(backbone="vgg61")
    with pytest.raises(ConfigError, match=r"\['features_only'\] are set by the model itself"):
        CbamVGG16(backbone=TINY, features_only=True)
