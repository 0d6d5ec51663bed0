from typer.testing import CliRunner

from components.cli import GROUPS, app


def test_help_lists_every_step():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for name in [*GROUPS, "demo", "benchmark"]:
        assert name in result.output


def test_config_defaults_and_overrides(tmp_path):
    from components.config import load_config

    cfg = load_config(None)
    assert cfg.sids.levels == 3 and cfg.features.online_store == "sqlite"
    cfg = load_config(None, overrides={"model": {"backbone": "tiny"}})
    assert cfg.model.backbone == "tiny"
    bad = tmp_path / "bad.yaml"
    bad.write_text("sids:\n  levels: three\n")
    import pydantic
    import pytest

    with pytest.raises(pydantic.ValidationError):
        load_config(bad)


def test_config_allows_one_sid_softmax_at_most():
    import pydantic
    import pytest

    from components.config import load_config

    both = {"train": {"sid_softmax": True, "sid_vocab_softmax": True}}
    with pytest.raises(pydantic.ValidationError, match="exclude each other"):
        load_config(None, overrides=both)
