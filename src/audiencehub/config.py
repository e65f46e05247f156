"""Settings, read once from the environment (prefix ``AUDIENCEHUB_``) and passed down."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AUDIENCEHUB_", env_nested_delimiter="__", extra="ignore", env_ignore_empty=True
    )

    home: Path = Path("./var")
    """Root of everything the server keeps: metadata.db, lake/, landing/, secrets.key."""

    host: str = "127.0.0.1"
    """Address the API listens on."""

    port: int = Field(default=8080, validation_alias=AliasChoices("AUDIENCEHUB_PORT", "PORT"))
    """Port the API listens on (``PORT`` is read too, as ``make run`` passes it)."""

    pg_port: int = Field(default=5433, ge=0, le=65535)
    """Port of the Query Service's PostgreSQL protocol (psql, psycopg, pgbench); 0 turns it off."""

    pg_host: str | None = None
    """Address the PostgreSQL protocol listens on; default: the API's ``host``."""

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("AUDIENCEHUB_DATABASE_URL", "DATABASE_URL")
    )
    """Metadata store URL; default ``sqlite:///$AUDIENCEHUB_HOME/metadata.db``. ``postgresql://user:pw@host:5432/db``
    puts it on PostgreSQL (driver psycopg 3); every process migrates it to the newest schema on start."""

    bootstrap_org_id: str | None = None
    """Org created on first start (with sandbox ``prod``), instead of generated dev credentials."""

    bootstrap_client_id: str | None = None
    """API client (x-api-key) created on first start for the bootstrap org."""

    bootstrap_client_secret: str | None = None
    """Secret of the bootstrap client; stored hashed."""

    token_ttl_seconds: int = Field(default=86400, ge=60)
    """Lifetime of access tokens issued by ``/ims/token/v3``."""

    workers: int = Field(default=2, ge=0, le=64)
    """Job threads in the server process, and in each ``audiencehub worker`` process; 0 in the server: it runs no
    jobs, they wait for worker processes."""

    job_poll_seconds: float = Field(default=1.0, gt=0)
    """How often an idle job thread looks for jobs that another process enqueued (its own process wakes it at once),
    and how often a running query looks for a cancel that another process was asked for."""

    worker_grace_seconds: float = Field(default=30.0, ge=0)
    """On SIGTERM or SIGINT, how long ``audiencehub worker`` lets running jobs finish; those still running then are
    left to recovery by another worker's heartbeat sweep."""

    job_heartbeat_seconds: float = Field(default=5.0, gt=0)
    """How often a running job proves it is alive."""

    job_stale_after_seconds: float = Field(default=60.0, gt=0)
    """A running job without a heartbeat for this long is recovered (failed or rolled forward)."""

    max_upload_bytes: int = Field(default=50 * 1024**3, gt=0)
    """Largest file the landing zone accepts in one PUT."""

    engine_threads: int | None = Field(default=None, ge=1)
    """Threads DuckDB may use for one job; default: all cores."""

    engine_memory_limit: str = "1GB"
    """DuckDB memory limit per job; larger work spills to $AUDIENCEHUB_HOME/tmp."""

    profile_memory_limit: str | None = None
    """DuckDB memory limit of each sandbox's embedded profile store (``profile_store=duckdb``). Its lookup indexes
    (identities, memberships) must fit in memory while a run writes them: about 200 bytes per profile, so 10M
    profiles need about 2GB. Default: a quarter of the machine's memory, at least 1GB (``profile_memory``)."""

    def profile_memory(self) -> str:
        """``profile_memory_limit``, or a quarter of the machine's memory (at least 1GB)."""
        if self.profile_memory_limit:
            return self.profile_memory_limit
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # not a POSIX system: the floor
            total = 0
        return f"{max(1024, total // 4 // 2**20)}MB"

    profile_store: Literal["duckdb", "lake"] = "duckdb"
    """The profile store: ``duckdb`` (embedded, one DuckDB file per sandbox that the server process owns) or ``lake``
    (versions of Parquet tables under ``lake/{org}/{sandbox}/_profile/``, written by ``engine`` and committed through
    the metadata store, so that worker processes share it; external audiences only for now)."""

    engine: Literal["duckdb", "spark"] = "duckdb"
    """Where data jobs (ingestion runs, batch ingestion, CJA transforms, query result files) run: ``duckdb``
    (embedded) or ``spark`` (``pip install 'audiencehub[spark]'``, Java 17+)."""

    spark_master: str = "local[*]"
    """Spark's master URL when ``engine`` is ``spark``: ``local[N]``, ``spark://host:7077``, ``k8s://https://...``."""

    spark_conf: str | None = None
    """Extra Spark settings, ``key=value`` pairs separated by commas (``spark.executor.memory=4g,...``)."""

    spark_ui: bool = True
    """Spark's web UI (port 4040); tests turn it off."""

    source_retry_attempts: int = Field(default=5, ge=1, le=20)
    """Tries of one read from S3, GCS or SFTP in a row that make no progress before a run fails."""

    source_retry_delay_seconds: float = Field(default=0.5, ge=0)
    """First pause between those tries; it doubles each time, up to 10 s."""

    streaming_flush_seconds: float = Field(default=2.0, gt=0)
    """Streaming ingestion: the records a dataset received become one batch after at most this long."""

    streaming_flush_records: int = Field(default=50_000, ge=1)
    """Streaming ingestion: ... or as soon as this many of them wait, whichever comes first."""

    segment_schedule: str = "00:00"
    """When the daily segment job evaluates every batch segment definition: ``HH:MM`` UTC, or ``off``."""

    query_timeout_seconds: float = Field(default=300.0, gt=0)
    """Query Service: a statement still running after this long is cancelled (SQLSTATE 57014)."""

    query_native_parquet: bool = True
    """Query Service: the engine reads datasets' Parquet files itself (allowed exactly the sandbox's committed batch
    files) instead of through pyarrow: 2-3x faster on map columns such as segmentMembership."""

    debug_hold_at: str | None = None
    """Fault injection for tests: a run pauses at this checkpoint until its hold file is removed."""

    @property
    def metadata_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'metadata.db').resolve()}"
