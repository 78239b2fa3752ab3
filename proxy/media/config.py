"""The ``media:`` section: where generated files live, how long, and how video jobs report.

``store`` names one backend by its key: ``{dir: {path}}`` (the default, a directory that
may be a volume all replicas mount) or ``{s3: {bucket, endpoint_url, ...}}`` (S3 or any
S3-compatible object store). ``retention_s`` and ``sweep_interval_s`` default to the
older ``server.media_retention_s`` / ``server.media_sweep_interval_s``, so existing
files keep working.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

_PREFIX = re.compile(r"(?:[A-Za-z0-9._-]+/)*")


class DirStoreConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    path: str | None = None
    """The directory (relative: to the config file's directory). Unset:
    ``{server.data_dir}/media``. Replicas share files when they all mount it."""

    def where(self, data_dir: str) -> str:
        return self.path or f"{data_dir}/media"


class S3StoreConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    bucket: str
    """The bucket (it must exist)."""
    endpoint_url: str | None = None
    """An S3-compatible server (``http://minio:9000``); unset: AWS S3."""
    region: str | None = None
    """The region (``us-east-1``); unset: the SDK's default chain."""
    access_key_id: str | None = None
    """Unset: the SDK's default credential chain (environment, instance role)."""
    secret_access_key: str | None = None
    """Use ``env:NAME``; never written in the file."""
    prefix: str = ""
    """Put every object under this key prefix (``switchyard/media/``): path segments of
    ``A-Z a-z 0-9 . _ -``, each ending in ``/``."""

    def where(self, data_dir: str) -> str:
        """The bucket and endpoint (never the credentials)."""
        at = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{at}"

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("media.store.s3.bucket must not be empty")
        if not _PREFIX.fullmatch(self.prefix) or any(
            part in (".", "..") for part in self.prefix.split("/")
        ):
            raise ValueError(
                "media.store.s3.prefix: path segments of A-Z a-z 0-9 . _ - each ending "
                "in '/' (such as 'switchyard/media/'), or empty"
            )


class MediaStoreConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Exactly one backend, named by its key (none: ``dir`` with its defaults)."""

    dir: DirStoreConfig | None = None
    s3: S3StoreConfig | None = None

    def __post_init__(self) -> None:
        if len(self.chosen_all()) > 1:
            raise ValueError("media.store: name one backend (dir or s3), not several")

    def chosen_all(self) -> list[tuple[str, Any]]:
        return [(f, getattr(self, f)) for f in self.__struct_fields__ if getattr(self, f)]

    def chosen(self) -> tuple[str, Any]:
        """The backend's name and its config."""
        chosen = self.chosen_all()
        return chosen[0] if chosen else ("dir", DirStoreConfig())


class MediaConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    store: MediaStoreConfig = msgspec.field(default_factory=MediaStoreConfig)
    """Where the files' bytes live (their metadata is in the state store)."""
    retention_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """How long a generated file (and a finished video job) is kept. Unset:
    ``server.media_retention_s``."""
    sweep_interval_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """How often expired files and jobs are looked for; one replica at a time does it
    (it holds a lease in the state store). Unset: ``server.media_sweep_interval_s``."""
    job_heartbeat_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    """How often the replica running a video job refreshes its heartbeat (and writes its
    progress, at most this rarely unless ``job_progress_write_s`` is shorter)."""
    job_stale_after_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """A queued or running job whose heartbeat is older than this is failed with
    ``runner_lost`` by whichever replica reads it. Unset: 3 x ``job_heartbeat_s``."""
    job_progress_write_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    """Progress changes are written at most this often (a status change at once)."""

    def __post_init__(self) -> None:
        if self.job_stale_after_s is not None and self.job_stale_after_s <= self.job_heartbeat_s:
            raise ValueError("media.job_stale_after_s must be longer than media.job_heartbeat_s")

    @property
    def stale_after_s(self) -> float:
        return self.job_stale_after_s or 3 * self.job_heartbeat_s

    def summary(self, data_dir: str, default_retention_s: float) -> str:
        """What ``check-config`` shows: the backend, where, and for how long."""
        name, section = self.store.chosen()
        retention = self.retention_s or default_retention_s
        return f"{name} {section.where(data_dir)}; kept {retention:g} s"
