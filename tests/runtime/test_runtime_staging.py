import pytest

from components.runtime.staging import staged_directory


def test_a_staged_directory_replaces_the_old_one_whole(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.bin").write_text("old")
    with staged_directory(target) as staging:
        assert staging.parent == tmp_path and staging != target
        (staging / "new.bin").write_text("new")
        assert (target / "old.bin").exists()  # readers see the old directory until the swap
    assert sorted(p.name for p in target.iterdir()) == ["new.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging or .old left beside it


def test_a_failed_write_leaves_the_old_directory_and_no_staging(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.bin").write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), staged_directory(target) as staging:
        (staging / "half.bin").write_text("half")
        raise RuntimeError("disk full")
    assert sorted(p.name for p in target.iterdir()) == ["old.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_staged_directory_creates_a_new_path(tmp_path):
    target = tmp_path / "a" / "ranker"
    with staged_directory(target) as staging:
        (staging / "m.txt").write_text("m")
    assert (target / "m.txt").read_text() == "m" and oct(target.stat().st_mode & 0o777) == "0o755"
