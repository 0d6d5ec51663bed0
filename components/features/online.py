"""Online feature reads for serving: everything one request needs, in one feature-service round trip.

The reader survives its store failing (docs/faults.md):
- Redis: Feast's redis client comes with redis-py's defaults, no socket timeout (a hung server holds a read
  forever) and 3 retries of a refused connection with back-offs of 1, 2 and 4 s (a dead server holds a read for
  seconds). Here both are bounded by the serving budget: socket timeouts of serving.budget_s and one immediate
  retry, which is what reconnects after Redis restarted.
- SQLite: Feast keeps one connection open. After a read error the reader reconnects on the next read, so a repaired
  file is read again; a new file put where the old one was (restored, re-materialized elsewhere and moved in) is
  noticed by its identity and connected to. A file deleted while open keeps being read (stale features beat none)
  until a new one appears; a reader with no file yet raises OnlineStoreMissing instead of letting SQLite create
  an empty online.db where the materialized one belongs.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from components.config import Config
from components.errors import SidrecError
from components.features.repo import SERVICE, get_store

log = logging.getLogger(__name__)


class OnlineStoreMissing(SidrecError):
    """The SQLite online store's file is not there (features never materialized, or deleted)."""


@dataclass
class UserFeatures:
    """What the online store holds for one user; an unknown user (or an empty store) has an empty history."""

    user_id: str
    history: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)  # runtime.language.encode_prefix text, passed on as is
    prefix_sid_version: str | None = None
    prefix_model_version: str | None = None
    rationale: str | None = None
    last_event_unix: int | None = None  # the latest event's time: with the request time, the runtime context

    @property
    def known(self) -> bool:
        return bool(self.history)


class OnlineFeatures:
    """Reads of the recommendation feature service; the registry is read once, at construction, outside any
    request's budget."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()
        self._opened: tuple[int, int] | None = None  # (device, inode) of the SQLite file the connection reads
        self._warned_deleted = False
        self.store = self._connect()
        self._service = self.store.get_feature_service(SERVICE)

    def service(self):
        """The recommendation feature service (read from the registry once)."""
        return self._service

    def _connect(self):
        store = get_store(self.cfg)
        if store.config.online_store.type == "redis":
            self._bound_redis(store)
        return store

    def _bound_redis(self, store) -> None:
        """Socket timeouts of the serving budget and one immediate retry on Feast's (cached) redis client."""
        try:
            client = store.provider.online_store._get_client(store.config.online_store)  # built and kept by Feast
        except Exception as exc:  # noqa: BLE001 - an unexpected Feast version: reads work, only less bounded
            log.warning("could not bound the redis client's timeouts (%s): redis-py defaults apply", exc)
            return
        if not isinstance(client, Redis):  # cluster / sentinel clients: configured by their connection string
            return
        timeout = self.cfg.serving.budget_s
        client.connection_pool.connection_kwargs.update(socket_timeout=timeout, socket_connect_timeout=timeout)
        client.set_retry(Retry(NoBackoff(), 1))

    def _sqlite_path(self) -> Path | None:
        online = self.store.config.online_store
        if online.type not in ("sqlite", "feast.infra.online_stores.sqlite.SqliteOnlineStore"):
            return None
        path = Path(online.path)
        return path if path.is_absolute() else Path(self.store.repo_path) / path

    def _check_sqlite_file(self) -> tuple[int, int] | None:
        """Reconnect when another file now sits at the path; refuse to read (and so create) a missing one."""
        path = self._sqlite_path()
        if path is None:
            return None
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            if self._opened is None:
                raise OnlineStoreMissing(
                    f"{path} missing: materialize the features (sidrec pipeline features)"
                ) from None
            if not self._warned_deleted:
                log.warning("%s deleted while open: reading the open file until a new one is there", path)
                self._warned_deleted = True
            return self._opened
        identity = (stat.st_dev, stat.st_ino)
        if self._opened is not None and identity != self._opened:
            log.warning("%s is another file now: reconnecting", path)
            self.reconnect()
        return identity

    def reconnect(self) -> None:
        """A fresh store (and connection) for the next read: after an error, or when the file was replaced."""
        with self._lock:
            self.store = self._connect()
            self._opened, self._warned_deleted = None, False

    def user(self, user_id: str) -> UserFeatures:
        """History, think-ahead prefixes (with the versions they were made for) and the rationale of one user,
        read through the recommendation feature service: one online-store round trip."""
        identity = self._check_sqlite_file()
        store = self.store
        try:
            response = store.get_online_features(features=self._service, entity_rows=[{"user_id": str(user_id)}])
            row = response.to_dict()
        except Exception:
            self.reconnect()  # a connection that failed is not trusted again; the caller falls back
            raise
        if identity is not None and self._opened is None:
            self._opened = identity
        value = {name: values[0] for name, values in row.items()}
        return UserFeatures(
            user_id=str(user_id),
            history=[str(i) for i in value.get("history") or []],
            prefixes=[str(p) for p in value.get("prefixes") or []],
            prefix_sid_version=value.get("sid_version"),
            prefix_model_version=value.get("model_version"),
            rationale=value.get("rationale"),
            last_event_unix=int(value["last_event_unix"]) if value.get("last_event_unix") is not None else None,
        )
