"""Artifact store: versioned atomic publish, checksums, on local disk and on a real SeaweedFS S3 server."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from components.local.s3 import start_seaweedfs
from components.store.artifacts import ArtifactError, ArtifactStore


def _make_dir(path: Path, content: str) -> Path:
    (path / "sub").mkdir(parents=True, exist_ok=True)
    (path / "a.txt").write_text(content)
    (path / "sub" / "b.bin").write_bytes(content.encode() * 1000)
    (path / "c.json").write_text("{}")
    return path


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweed"))
    server.client().create_bucket(Bucket="sidrec-test")
    yield server
    server.stop()
    assert server.process.poll() is not None  # stopped by PID


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "store"))
    server = request.getfixturevalue("s3")
    return ArtifactStore(
        f"s3://sidrec-test/{tmp_path.name}",
        endpoint_url=server.endpoint_url,
        access_key=server.access_key,
        secret_key=server.secret_key,
    )


@pytest.mark.integration
def test_publish_fetch_round_trip(store, tmp_path):
    v1 = store.publish("model", _make_dir(tmp_path / "v1", "one"), metadata={"hr": 0.1})
    assert store.latest_version("model") == v1
    assert store.publish("model", tmp_path / "v1") == v1  # identical re-run: no duplicate version
    v2 = store.publish("model", _make_dir(tmp_path / "v2", "two"))
    assert store.list_versions("model") == [v1, v2] and store.latest_version("model") == v2
    got = store.fetch("model", dest=tmp_path / "out")
    assert (got / "a.txt").read_text() == "two" and (got / "sub" / "b.bin").stat().st_size == 3000
    assert store.read_manifest("model", v1)["metadata"] == {"hr": 0.1}
    assert (store.fetch("model", v1, dest=tmp_path / "old") / "a.txt").read_text() == "one"
    with pytest.raises(ArtifactError, match="immutable"):
        store.publish("model", tmp_path / "v1", version=v2)


@pytest.mark.integration
def test_interrupted_upload_is_invisible_and_retry_succeeds(store, tmp_path, monkeypatch):
    v1 = store.publish("sid_map", _make_dir(tmp_path / "v1", "one"))
    calls = {"n": 0}
    original = ArtifactStore.put_file

    def flaky(self, local, rel):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("network dropped mid-upload")
        return original(self, local, rel)

    monkeypatch.setattr(ArtifactStore, "put_file", flaky)
    with pytest.raises(ConnectionError):
        store.publish("sid_map", _make_dir(tmp_path / "v2", "two"), version="v2")
    assert store.latest_version("sid_map") == v1 and store.list_versions("sid_map") == [v1]
    assert not store.exists("sid_map", "v2")
    assert (store.fetch("sid_map", dest=tmp_path / "o1") / "a.txt").read_text() == "one"
    monkeypatch.setattr(ArtifactStore, "put_file", original)
    assert store.publish("sid_map", tmp_path / "v2", version="v2") == "v2"  # retry
    assert (store.fetch("sid_map", dest=tmp_path / "o2") / "a.txt").read_text() == "two"


def test_corrupted_object_is_detected(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    version = store.publish("curated", _make_dir(tmp_path / "v1", "one"))
    (tmp_path / "store" / "curated" / version / "a.txt").write_text("tampered")
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        store.fetch("curated", dest=tmp_path / "out")
    with pytest.raises(ArtifactError, match="no published version"):
        store.fetch("nothing")


@pytest.mark.integration
def test_wrong_credentials_are_rejected(s3, tmp_path):
    bad = ArtifactStore(
        "s3://sidrec-test/x", endpoint_url=s3.endpoint_url, access_key=s3.access_key, secret_key="not-the-secret"
    )
    with pytest.raises(ClientError) as err:
        bad.publish("model", _make_dir(tmp_path / "v", "x"))
    assert err.value.response["Error"]["Code"] in {"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied"}
    anonymous = boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="nobody",
        aws_secret_access_key="nothing",
    )
    with pytest.raises(ClientError):
        anonymous.list_objects_v2(Bucket="sidrec-test")


def test_an_s3_store_signs_with_the_credentials_current_when_it_is_made(monkeypatch):
    """boto3's default session keeps the first credentials it resolved for the whole process: a store made after
    AWS_* changed (another S3 server, rotated keys) must not sign with the old ones (InvalidAccessKeyId)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "first-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "first-secret")
    first = ArtifactStore("s3://bucket/artifacts", endpoint_url="http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "second-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "second-secret")
    second = ArtifactStore("s3://bucket/artifacts", endpoint_url="http://127.0.0.1:1")
    keys = [store._s3._request_signer._credentials.access_key for store in (first, second)]
    assert keys == ["first-key", "second-key"]
