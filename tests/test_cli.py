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


def test_a_refused_config_prints_one_line_naming_the_file_and_setting(tmp_path, capsys, monkeypatch):
    import pytest

    monkeypatch.delenv("SIDREC_DEBUG", raising=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  sid_softmax: true\n  sid_vocab_softmax: true\n")
    with pytest.raises(SystemExit) as exit_:
        app(["benchmark", "--config", str(bad), "--out", str(tmp_path / "out")], prog_name="sidrec")
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: config: {bad}: train: ")
    assert "exclude each other" in lines[0] and "Traceback" not in lines[0]


def test_a_missing_or_malformed_config_prints_one_line(tmp_path, capsys, monkeypatch):
    import pytest

    from components.config import ConfigError, load_config

    monkeypatch.delenv("SIDREC_DEBUG", raising=False)
    missing = tmp_path / "nope.yaml"
    broken = tmp_path / "broken.yaml"
    broken.write_text("train:\n  lr: 0.1\n  - seed\n")
    listed = tmp_path / "list.yaml"
    listed.write_text("- train\n- sids\n")
    for path, expected in [(missing, "not found"), (broken, "line 3: not valid YAML"), (listed, "not a mapping")]:
        with pytest.raises(ConfigError, match=expected):
            load_config(path)
        with pytest.raises(SystemExit) as exit_:
            app(["benchmark", "--config", str(path), "--out", str(tmp_path / "out")], prog_name="sidrec")
        assert exit_.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and expected in lines[0], lines
    with pytest.raises(FileNotFoundError):  # what callers caught before
        load_config(missing)


def test_a_missing_data_file_prints_one_line_naming_it(tmp_path, capsys, monkeypatch):
    """A dataset path that is wrong in a config is bad input, not a bug: one line with the file and the setting."""
    import pytest

    from components.data.readers import read_table

    monkeypatch.delenv("SIDREC_DEBUG", raising=False)
    missing = tmp_path / "catalog.jsonl"
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  catalog_uri: {missing}\n")
    with pytest.raises(SystemExit) as exit_:
        app(["benchmark", "--config", str(config), "--out", str(tmp_path / "out")], prog_name="sidrec")
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0] and "data.catalog_uri" in lines[0], lines
    with pytest.raises(FileNotFoundError):  # what library callers caught before
        read_table(str(missing))
