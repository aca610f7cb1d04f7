"""TrainConfig: the paper's defaults, files in three formats, flags over files, clear errors."""

from __future__ import annotations

import json

import pytest

import sampleweight as sw
from sampleweight.engine.config import TrainConfig, load_config


def test_paper_defaults() -> None:
    config = TrainConfig()
    assert (config.batch_size, config.optimizer, config.lr, config.epochs) == (20, "adam", 1e-5, 150)
    assert (config.image_size, config.drop_rate, config.pretrained, config.lr_milestones) == (
        299,
        0.5,
        True,
        (0.5, 0.75),
    )
    sgd = TrainConfig(optimizer="sgd")
    assert (sgd.lr, sgd.momentum) == (1e-4, 0.9)
    assert TrainConfig(model="hierarchical_vgg16").epochs == 250
    assert TrainConfig(lr=3e-4).lr == 3e-4


def test_weighters_split_on_plus() -> None:
    assert TrainConfig(weighters=["ohem+es"]).weighters == ["ohem", "es"]
    assert TrainConfig(weighters=["ohem", "es"]).weighter_spec == "ohem+es"


@pytest.mark.parametrize("suffix", ["toml", "yaml", "json"])
def test_files_load_and_flags_override(tmp_path, suffix: str) -> None:
    text = {
        "toml": 'model = "hierarchical_vgg16"\noptimizer = "sgd"\nweighters = ["es"]\nepochs = 7\n',
        "yaml": "model: hierarchical_vgg16\noptimizer: sgd\nweighters: [es]\nepochs: 7\n",
        "json": json.dumps({"model": "hierarchical_vgg16", "optimizer": "sgd", "weighters": ["es"], "epochs": 7}),
    }[suffix]
    path = tmp_path / f"paper.{suffix}"
    path.write_text(text)
    config = load_config(path, weighters=["ohem"], epochs=None)
    assert (config.model, config.optimizer, config.lr, config.epochs, config.weighters) == (
        "hierarchical_vgg16",
        "sgd",
        1e-4,
        7,
        ["ohem"],
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lr": -1.0}, r"lr: Input should be greater than 0 \(got -1.0\)"),
        ({"optimizer": "rmsprop"}, r"optimizer: Value error, unknown optimizer 'rmsprop'; choose one of: adam, imbsam"),
        ({"batch_size": 0}, "batch_size: Input should be greater than or equal to 1"),
        ({"colour": True}, "colour: unknown option; valid options: data, split"),
        ({"lr_milestones": (0.8, 0.5)}, "milestones must be increasing"),
    ],
)
def test_invalid_values_name_the_field_and_reason(overrides, message: str) -> None:
    with pytest.raises(sw.ConfigError, match=message):
        load_config(**overrides)


def test_bad_files(tmp_path) -> None:
    with pytest.raises(sw.ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("model = [unclosed\n")
    with pytest.raises(sw.ConfigError, match="cannot parse config file"):
        load_config(bad)
    other = tmp_path / "config.ini"
    other.write_text("[x]\n")
    with pytest.raises(sw.ConfigError, match=r"must end in \.toml, \.yaml, \.yml or \.json"):
        load_config(other)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(sw.ConfigError, match="must hold a table of options"):
        load_config(listed)


def test_key_value_options_parse_to_typed_values() -> None:
    from sampleweight.engine.config import parse_options

    assert parse_options(None, "--loss-option") is None and parse_options([], "--loss-option") is None
    parsed = parse_options(["tau=1", "s=30.5", "scale=1e-3", "base=ce", "on=true", "none=null", "ks=[1, 2]"], "--x")
    assert parsed == {"tau": 1, "s": 30.5, "scale": 1e-3, "base": "ce", "on": True, "none": None, "ks": [1, 2]}
    assert parse_options(["tau=1", "tau=2", "eq=a=b"], "--x") == {"tau": 2, "eq": "a=b"}


@pytest.mark.parametrize("pair", ["tau", "=1", " =1", "x=[1,"])
def test_malformed_key_value_options_are_refused(pair: str) -> None:
    from sampleweight.engine.config import parse_options

    with pytest.raises(sw.ConfigError, match=r"malformed --loss-option .*(expected KEY=VALUE|does not parse)"):
        parse_options([pair], "--loss-option")


def test_flags_update_a_files_option_table_key_by_key(tmp_path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('loss = "focal"\n[loss_options]\ngamma = 2.0\nbase = "x"\n')
    assert load_config(path).loss_options == {"gamma": 2.0, "base": "x"}
    assert load_config(path, loss_options={"gamma": 3.0}).loss_options == {"gamma": 3.0, "base": "x"}


def test_sampler_fields_and_their_options_table(tmp_path) -> None:
    assert (TrainConfig().sampler, TrainConfig().sampler_options) == ("instance", {})
    path = tmp_path / "c.yaml"
    path.write_text("sampler: repeat_factor\nsampler_options: {threshold: 0.1, num_samples: 500}\n")
    config = load_config(path, sampler_options={"num_samples": 800})  # a flag updates the file's table key by key
    assert config.sampler == "repeat_factor" and config.sampler_options == {"threshold": 0.1, "num_samples": 800}
    assert config.run_name.endswith("-s0-repeat_factor") and TrainConfig().run_name.endswith("-adam-s0")


def test_execution_fields_are_a_mark_on_the_fields_themselves() -> None:
    from sampleweight.engine.config import EXECUTION_FIELDS

    marked = {name for name, schema in TrainConfig.model_json_schema()["properties"].items() if schema.get("execution")}
    assert EXECUTION_FIELDS == marked == {"device", "precision", "channels_last", "compile", "workers", "quiet",
                                          "cache_dir", "out", "overwrite", "tensorboard", "bootstrap"}  # fmt: skip
    assert not EXECUTION_FIELDS & {"model", "loss", "loss_options", "lr", "epochs", "data", "split", "seed"}


def test_gamma_is_a_loss_option_and_an_older_configs_gamma_is_read_as_one(tmp_path) -> None:
    from sampleweight.engine.config import complete_config

    assert "gamma" not in TrainConfig.model_fields
    assert TrainConfig(loss="focal", gamma=2.0).loss_options == {"gamma": 2.0}
    assert TrainConfig(loss="focal", gamma=None).loss_options == {}  # every older config.json holds gamma: null
    older = {**TrainConfig(loss="focal").model_dump(mode="json"), "gamma": 2.0, "loss_options": {"alpha": None}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(older))
    config = load_config(path)
    assert (
        config.loss_options == {"alpha": None, "gamma": 2.0} and config.run_name == TrainConfig(loss="focal").run_name
    )
    assert complete_config(older) == {**config.model_dump(mode="json")}  # what grid and report compare
    assert "gamma" not in config.model_dump()


def test_every_field_has_a_description_which_is_its_help_text() -> None:
    missing = [name for name, field in TrainConfig.model_fields.items() if not (field.description or "").strip()]
    assert not missing
