"""One artifact store over local directories and S3, with versioned, atomically published artifacts.

Layout: {root}/{name}/{version}/<files...>, {root}/{name}/{version}/manifest.json, {root}/{name}/LATEST.
Publishing writes every file first, then the manifest (sha256 and size of each file), then the LATEST
pointer. Readers resolve only through LATEST and the manifest, so an interrupted upload leaves nothing
visible: a version without a manifest does not exist. Fetch verifies every checksum.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from components.config import PROJECT_ROOT
from components.errors import SidrecError

MANIFEST = "manifest.json"
LATEST = "LATEST"


class ArtifactError(SidrecError, RuntimeError):
    """An artifact is missing, corrupted, or a publish conflicts with an existing version."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(local_dir: Path) -> list[Path]:
    return sorted(p for p in local_dir.rglob("*") if p.is_file() and p.name != MANIFEST)


class ArtifactStore:
    """Versioned artifacts under a local directory or an s3://bucket/prefix root."""

    def __init__(
        self,
        root: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        self.root = root.rstrip("/")
        self.is_s3 = self.root.startswith("s3://")
        if self.is_s3:
            import boto3
            from botocore.config import Config as BotoConfig

            self.bucket, _, self.prefix = self.root[5:].partition("/")
            # a session of its own: boto3's default session keeps the first credentials it resolved for the whole
            # process, so a store made after AWS_* changed (another server, rotated keys) would sign with stale ones
            self._s3 = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL"),
                region_name=region,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                config=BotoConfig(retries={"max_attempts": 3, "mode": "standard"}),
            )
        else:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_config(cls, store_cfg) -> ArtifactStore:
        """Build from a StoreConfig; relative local roots are anchored at the project root."""
        root = store_cfg.root
        if "://" not in root and not os.path.isabs(root):
            root = str(PROJECT_ROOT / root)
        return cls(root, endpoint_url=store_cfg.s3_endpoint_url, region=store_cfg.s3_region)

    # -- low level: keys relative to the root --------------------------------------------------------------
    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}".lstrip("/") if self.is_s3 else str(Path(self.root) / rel)

    def put_file(self, local: Path, rel: str) -> None:
        if self.is_s3:
            from boto3.s3.transfer import TransferConfig

            self._s3.upload_file(
                str(local), self.bucket, self._key(rel), Config=TransferConfig(multipart_threshold=64 << 20)
            )
        else:
            target = Path(self._key(rel))
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            shutil.copyfile(local, tmp)
            os.replace(tmp, target)  # atomic on one filesystem

    def put_text(self, text: str, rel: str) -> None:
        with tempfile.NamedTemporaryFile("w", delete=False, suffix=".txt") as f:
            f.write(text)
        try:
            self.put_file(Path(f.name), rel)
        finally:
            os.unlink(f.name)

    def get_file(self, rel: str, local: Path) -> Path:
        local.parent.mkdir(parents=True, exist_ok=True)
        if self.is_s3:
            from botocore.exceptions import ClientError

            try:
                self._s3.download_file(self.bucket, self._key(rel), str(local))
            except ClientError as exc:
                raise ArtifactError(f"{self.root}/{rel}: {exc}") from exc
        else:
            source = Path(self._key(rel))
            if not source.exists():
                raise ArtifactError(f"{source}: not found")
            shutil.copyfile(source, local)
        return local

    def get_text(self, rel: str) -> str | None:
        if self.is_s3:
            from botocore.exceptions import ClientError

            try:
                return self._s3.get_object(Bucket=self.bucket, Key=self._key(rel))["Body"].read().decode()
            except ClientError as exc:
                if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                    return None
                raise
        path = Path(self._key(rel))
        return path.read_text() if path.exists() else None

    def list_dirs(self, rel: str) -> list[str]:
        """Names of the sub-folders of `rel` (published or not)."""
        return self._list_dirs(rel)

    def delete_prefix(self, rel: str) -> int:
        """Delete every object under `rel` (a folder); returns how many were deleted."""
        if self.is_s3:
            paginator = self._s3.get_paginator("list_objects_v2")
            keys = [
                {"Key": o["Key"]}
                for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(rel).rstrip("/") + "/")
                for o in page.get("Contents", [])
            ]
            for start in range(0, len(keys), 1000):
                self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys[start : start + 1000]})
            return len(keys)
        path = Path(self._key(rel))
        count = sum(1 for p in path.rglob("*") if p.is_file()) if path.exists() else 0
        shutil.rmtree(path, ignore_errors=True)
        return count

    def _age_s(self, rel: str) -> float:
        """Seconds since the newest object under `rel` was written (an upload still running is young)."""
        if self.is_s3:
            paginator = self._s3.get_paginator("list_objects_v2")
            times = [
                o["LastModified"].timestamp()
                for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(rel).rstrip("/") + "/")
                for o in page.get("Contents", [])
            ]
        else:
            times = [p.stat().st_mtime for p in Path(self._key(rel)).rglob("*")]
        return time.time() - max(times, default=0.0)

    def gc(self, names: list[str] | None = None, min_age_s: float = 3600.0) -> dict[str, list[str]]:
        """Remove partial versions (a version folder without its manifest: an interrupted publish) older than
        `min_age_s`, so that a publish still under way is never touched. Returns {name: [removed versions]}."""
        removed: dict[str, list[str]] = {}
        for name in names or self._list_dirs(""):
            for version in self._list_dirs(name):
                if not self.exists(name, version) and self._age_s(f"{name}/{version}") >= min_age_s:
                    self.delete_prefix(f"{name}/{version}")
                    removed.setdefault(name, []).append(version)
        return removed

    def _list_dirs(self, rel: str) -> list[str]:
        if self.is_s3:
            paginator = self._s3.get_paginator("list_objects_v2")
            prefix = self._key(rel).rstrip("/") + "/" if rel else (self.prefix.rstrip("/") + "/" if self.prefix else "")
            out = []
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                out += [p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
            return out
        path = Path(self._key(rel))
        return [p.name for p in path.iterdir() if p.is_dir()] if path.exists() else []

    # -- artifacts ------------------------------------------------------------------------------------------
    def publish(self, name: str, local_dir: Path, metadata: dict | None = None, version: str | None = None) -> str:
        """Upload a directory as a new version of `name`; LATEST moves last. Returns the version.

        Idempotent: republishing identical content under an explicit existing version is a no-op; different
        content under an existing version is an error (versions are immutable).
        """
        local_dir = Path(local_dir)
        files = _files(local_dir)
        if not files:
            raise ArtifactError(f"{local_dir}: nothing to publish")
        entries = [
            {"path": p.relative_to(local_dir).as_posix(), "sha256": _sha256(p), "size": p.stat().st_size} for p in files
        ]
        content_hash = hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()[:8]
        if version is None:
            latest = self.latest_version(name)
            if latest and self.read_manifest(name, latest)["content_hash"] == content_hash:
                return latest  # a re-run with identical content publishes nothing new
            version = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{content_hash}"
        existing = self.read_manifest(name, version) if self.exists(name, version) else None
        if existing is not None:
            if existing["content_hash"] != content_hash:
                raise ArtifactError(f"{name}/{version} exists with different content; versions are immutable")
        else:
            for entry, path in zip(entries, files, strict=True):
                self.put_file(path, f"{name}/{version}/{entry['path']}")
            manifest = {
                "name": name,
                "version": version,
                "content_hash": content_hash,
                "files": entries,
                "metadata": metadata or {},
                "created_at": datetime.now(UTC).isoformat(),
            }
            self.put_text(json.dumps(manifest, indent=2, default=str), f"{name}/{version}/{MANIFEST}")
        self.put_text(version, f"{name}/{LATEST}")
        return version

    def exists(self, name: str, version: str) -> bool:
        return self.get_text(f"{name}/{version}/{MANIFEST}") is not None

    def latest_version(self, name: str) -> str | None:
        text = self.get_text(f"{name}/{LATEST}")
        return text.strip() if text else None

    def list_versions(self, name: str) -> list[str]:
        """Published (manifested) versions, oldest first."""
        return sorted(v for v in self._list_dirs(name) if self.exists(name, v))

    def resolve(self, name: str, version: str = "latest") -> str:
        if version == "latest":
            latest = self.latest_version(name)
            if latest is None:
                raise ArtifactError(f"{self.root}/{name}: no published version")
            return latest
        if not self.exists(name, version):
            raise ArtifactError(f"{self.root}/{name}/{version}: not published")
        return version

    def read_manifest(self, name: str, version: str = "latest") -> dict:
        version = self.resolve(name, version) if version == "latest" else version
        text = self.get_text(f"{name}/{version}/{MANIFEST}")
        if text is None:
            raise ArtifactError(f"{self.root}/{name}/{version}: no manifest (unpublished or interrupted)")
        return json.loads(text)

    def fetch(self, name: str, version: str = "latest", dest: Path | None = None) -> Path:
        """Download a version into `dest` (default: a cache dir), verifying every checksum."""
        version = self.resolve(name, version)
        manifest = self.read_manifest(name, version)
        if dest is None:
            dest = (
                PROJECT_ROOT
                / ".cache"
                / "artifacts"
                / hashlib.sha1(self.root.encode()).hexdigest()[:8]
                / name
                / version
            )
        dest = Path(dest)
        for entry in manifest["files"]:
            target = dest / entry["path"]
            if not (target.exists() and _sha256(target) == entry["sha256"]):
                self.get_file(f"{name}/{version}/{entry['path']}", target)
            if _sha256(target) != entry["sha256"]:
                raise ArtifactError(f"{name}/{version}/{entry['path']}: checksum mismatch (corrupted object)")
        (dest / MANIFEST).write_text(json.dumps(manifest, indent=2))
        return dest
