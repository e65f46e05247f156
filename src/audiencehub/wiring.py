"""The composition root: the one place that picks concrete backends and builds the services."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from audiencehub.config import Settings
from audiencehub.domain.audiences import CloudType, SourceSpec
from audiencehub.domain.connections import GCS_XML_ENDPOINT
from audiencehub.engines.base import Engine
from audiencehub.engines.duckdb import DuckDBEngine
from audiencehub.jobs.runner import Handler, JobRunner
from audiencehub.jobs.schedule import DailySchedule, parse_time
from audiencehub.metadata.store import MetadataStore, Scope
from audiencehub.profile.base import ProfileStore
from audiencehub.profile.duckdb import DuckDBProfileStore
from audiencehub.query.duckdb import Limits
from audiencehub.query.pgwire import PgWireServer
from audiencehub.query.tables import profile_table_name
from audiencehub.services.audience_creation import AudienceCreation
from audiencehub.services.audience_portal import AudiencePortalService
from audiencehub.services.auth import AuthService
from audiencehub.services.batch_ingestion import JOB_BATCH, BatchIngestionService
from audiencehub.services.catalog import CatalogService
from audiencehub.services.cja import CjaService
from audiencehub.services.connections import ConnectionService, StoredConnection
from audiencehub.services.exports import JOB_EXPORT, ExportService
from audiencehub.services.external_audiences import JOB_CREATE, JOB_RUN, ExternalAudienceService
from audiencehub.services.home import HomeLock, exclusive, lock_home
from audiencehub.services.identity import NamespaceService
from audiencehub.services.ingestion import Hold, IngestionService
from audiencehub.services.keyring import Keyring
from audiencehub.services.lake import Lake
from audiencehub.services.landing_zone import LandingZoneService
from audiencehub.services.merge_policies import MergePolicyService
from audiencehub.services.profile_access import ProfileAccessService
from audiencehub.services.query import QueryService
from audiencehub.services.query_runs import JOB_QUERY, QueryRuns
from audiencehub.services.schemas import SchemaService
from audiencehub.services.segment_jobs import JOB_SEGMENT, SegmentJobs
from audiencehub.services.segmentation import SegmentationService
from audiencehub.services.streaming import StreamingService
from audiencehub.services.tenancy import ClientCredentials, TenancyService
from audiencehub.sources.base import Source
from audiencehub.sources.gcs import GcsSource
from audiencehub.sources.retry import RetryingSource, RetryPolicy
from audiencehub.sources.s3 import S3Source
from audiencehub.sources.sftp import SftpSource

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    store: MetadataStore
    keyring: Keyring
    auth: AuthService
    tenancy: TenancyService
    landing: LandingZoneService
    connections: ConnectionService
    merge_policies: MergePolicyService
    lake: Lake
    profiles: ProfileStore
    audiences: ExternalAudienceService
    namespaces: NamespaceService
    schemas: SchemaService
    catalog: CatalogService
    batches: BatchIngestionService
    profile_access: ProfileAccessService
    streaming: StreamingService
    segmentation: SegmentationService
    segment_jobs: SegmentJobs
    audience_portal: AudiencePortalService
    exports: ExportService
    cja: CjaService
    ingestion: IngestionService
    query: QueryService
    query_runs: QueryRuns
    runner: JobRunner
    home_lock: HomeLock | None  # None in an ``audiencehub worker`` process: the server holds the home
    schedule: DailySchedule | None = None
    pgwire: PgWireServer | None = None  # started and stopped by the app's lifespan (it runs on its event loop)

    def bootstrap(self) -> ClientCredentials | None:
        s = self.settings
        return self.tenancy.bootstrap(
            credentials_path=s.home / "credentials.json",
            org_id=s.bootstrap_org_id,
            client_id=s.bootstrap_client_id,
            client_secret=s.bootstrap_client_secret,
        )

    def close(self) -> None:
        try:
            self.streaming.stop()  # first: its last batches need the engine, the profile store and the catalog
            self.landing.stop_sweeper()
            if self.schedule is not None:
                self.schedule.stop()
            self.runner.stop()
            self.profiles.close()
            self.store.dispose()
        finally:
            if self.home_lock is not None:
                self.home_lock.release()


def open_store(settings: Settings) -> MetadataStore:
    """The metadata store of ``settings``, migrated to the newest schema (every entry point opens it this way)."""
    store = MetadataStore(settings.metadata_url)
    store.migrate()
    return store


def build(settings: Settings, *, worker_process: bool = False) -> Container:
    """The services over ``settings.home``; the container holds the home's lock until ``close()``.

    :class:`~audiencehub.services.home.HomeInUse` when another process (a server) holds it. With
    ``worker_process`` (``audiencehub worker``), no lock: it shares the home and the metadata store with the server
    and other workers, and leaves the embedded profile store's files to the server.
    """
    # API replicas (PostgreSQL and the lake profile store) share the home without the lock: see services/home.py.
    alone = exclusive(profile_store=settings.profile_store, metadata_url=settings.metadata_url)
    home_lock = lock_home(settings.home) if alone and not worker_process else None
    try:
        return _build(settings, home_lock, replica=not alone and not worker_process)
    except BaseException:
        if home_lock is not None:
            home_lock.release()
        raise


def _engine(settings: Settings, tmp: Path) -> Engine:
    """The data engine ``settings.engine`` names; Spark's module (and pyspark) load only when chosen."""
    if settings.engine == "spark":
        from audiencehub.engines.spark import SparkEngine, parse_conf

        conf = parse_conf(settings.spark_conf)
        return SparkEngine(master=settings.spark_master, conf=conf, ui=settings.spark_ui, temp_dir=tmp)
    return DuckDBEngine(threads=settings.engine_threads, memory_limit=settings.engine_memory_limit, temp_dir=tmp)


def _profile_store(settings: Settings, engine: Engine, store: MetadataStore, tmp: Path, *, owner: bool) -> ProfileStore:
    """The profile store ``settings.profile_store`` names: the embedded DuckDB files (the server's), or versions of
    Parquet tables in the lake that the engine writes and every process can share."""
    if settings.profile_store == "lake":
        from audiencehub.profile.lake import LakeProfileStore

        return LakeProfileStore(
            settings.home / "lake",
            engine,
            store,
            memory_limit=settings.engine_memory_limit,
            threads=settings.engine_threads,
            temp_dir=tmp,
        )
    return DuckDBProfileStore(
        settings.home / "lake",
        memory_limit=settings.profile_memory(),
        threads=settings.engine_threads,
        temp_dir=tmp,
        owner=owner,
    )


def _build(settings: Settings, home_lock: HomeLock | None, *, replica: bool = False) -> Container:
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    store = open_store(settings)
    keyring = Keyring(home / "secrets.key")
    lake = Lake(home / "lake")
    tmp = home / "tmp"
    engine = _engine(settings, tmp)
    profiles = _profile_store(settings, engine, store, tmp, owner=home_lock is not None)

    policy = RetryPolicy(attempts=settings.source_retry_attempts, base_delay=settings.source_retry_delay_seconds)

    def connection_source(stored: StoredConnection, retry: bool) -> Source:
        source = backend_for(stored)
        return RetryingSource(source, policy if retry else RetryPolicy(attempts=1), redact=stored.redact)

    connections = ConnectionService(store, keyring, connection_source)

    def source_for(scope: Scope, spec: SourceSpec) -> Source:
        params = spec.params
        if params.resolved_cloud_type is CloudType.DLZ:
            return landing.source(scope)
        assert params.baseConnectionId is not None  # SourceParams requires it for every other cloud
        return connections.source(scope, params.baseConnectionId, params.cloudType)

    ingestion = IngestionService(
        store,
        engine,
        profiles,
        lake,
        source_for,
        Hold(home / "holds", settings.debug_hold_at),
        on_commit=lambda scope, audience_id, run_id: segment_jobs.audience_changed(scope, audience_id, run_id),
    )
    creation = AudienceCreation(store, profiles)
    runner = JobRunner(
        store,
        {
            JOB_CREATE: Handler(
                execute=creation.execute,
                recover=lambda ref, scope: creation.fail(ref, scope, "the server stopped while creating the audience"),
                retryable=True,
            ),
            JOB_RUN: Handler(execute=ingestion.execute, recover=ingestion.recover),
            # Every step of a batch is idempotent per batch id: after a crash it simply runs again.
            JOB_BATCH: Handler(
                execute=lambda ref, scope: batches.execute(ref, scope),
                recover=lambda ref, scope: batches.recover(ref, scope),
                retryable=True,
            ),
            # A segment job commits once, with a marker in the profile store: after a crash it runs again, or
            # rolls forward when the store has it.
            JOB_SEGMENT: Handler(
                execute=lambda ref, scope: segment_jobs.execute(ref, scope),
                recover=lambda ref, scope: segment_jobs.recover(ref, scope),
                retryable=True,
            ),
            # A query that was running when the server stopped fails: a CTAS or INSERT is never run twice.
            JOB_QUERY: Handler(
                execute=lambda ref, scope: container.query_runs.execute(ref, scope),
                recover=lambda ref, scope: container.query_runs.recover(ref, scope),
            ),
            # An export job publishes its batches and commits them with its status in one transaction; every step
            # before that can run again.
            JOB_EXPORT: Handler(
                execute=lambda ref, scope: exports.execute(ref, scope),
                recover=lambda ref, scope: exports.recover(ref, scope),
                retryable=True,
            ),
        },
        workers=settings.workers,
        heartbeat_s=settings.job_heartbeat_seconds,
        stale_after_s=settings.job_stale_after_seconds,
        poll_s=settings.job_poll_seconds,
        home=home if home_lock is not None else None,
        hold=Hold(home / "holds", settings.debug_hold_at),
        announce=replica,  # a replica registers even without job threads: its peers must know it is alive
    )
    landing = LandingZoneService(home / "landing", settings.max_upload_bytes, owner_id=runner.worker_id)
    namespaces = NamespaceService(store)
    merge_policies = MergePolicyService(store)
    schemas = SchemaService(store, namespace_exists=lambda scope, code: namespaces.resolve(scope, code) is not None)
    catalog = CatalogService(store, lake, schema_of=schemas.resolve, on_delete=profiles.remove_dataset)
    batches = BatchIngestionService(
        store,
        engine,
        lake,
        catalog,
        profiles,
        schema_of=schemas.resolve,
        namespace_rules=lambda scope: {ns.code: ns.rule for ns in namespaces.list(scope)},
        max_upload_bytes=settings.max_upload_bytes,
        wake=runner.wake,
        on_profile_change=lambda scope, dataset_id: segment_jobs.profiles_changed(scope, dataset_id),
    )
    segmentation = SegmentationService(store, profiles, merge_policies, schemas.resolve)
    segment_jobs = SegmentJobs(store, profiles, segmentation, merge_policies, wake=runner.wake)
    exports = ExportService(store, profiles, lake, catalog, merge_policies, schemas.resolve, wake=runner.wake)
    audiences = ExternalAudienceService(
        store, profiles, lake, connections, namespaces, wake=runner.wake, users_of=segmentation.users_of
    )
    at = parse_time(settings.segment_schedule)
    auth = AuthService(store, keyring, settings.token_ttl_seconds)
    query = QueryService(
        store,
        auth,
        lake,
        catalog,
        batches,
        profiles,
        merge_policies,
        schema_of=schemas.resolve,
        limits=Limits(
            timeout_s=settings.query_timeout_seconds,
            memory_limit=settings.engine_memory_limit,
            threads=settings.engine_threads,
            temp_dir=str(tmp),
            native_parquet=settings.query_native_parquet,
        ),
    )
    container = Container(
        settings=settings,
        store=store,
        keyring=keyring,
        auth=auth,
        tenancy=TenancyService(store),
        landing=landing,
        connections=connections,
        merge_policies=merge_policies,
        lake=lake,
        profiles=profiles,
        audiences=audiences,
        namespaces=namespaces,
        schemas=schemas,
        catalog=catalog,
        batches=batches,
        profile_access=ProfileAccessService(profiles, namespaces, merge_policies),
        streaming=StreamingService(
            lake.root,
            store,
            connections,
            batches,
            flush_seconds=settings.streaming_flush_seconds,
            flush_records=settings.streaming_flush_records,
            owner_id=runner.worker_id,
            # Without the home's lock, a peer's files are adopted only once it is known dead.
            live_owners=runner.live if home_lock is None else None,
        ),
        segmentation=segmentation,
        segment_jobs=segment_jobs,
        audience_portal=AudiencePortalService(store, profiles),
        exports=exports,
        cja=CjaService(
            store,
            engine,
            lake,
            profiles,
            catalog,
            schemas,
            batches,
            session=lambda who: container.query.session(who),
            reserved_tables=lambda scope: [profile_table_name(merge_policies.resolve(scope, None).id)],
        ),
        ingestion=ingestion,
        query=query,
        query_runs=QueryRuns(store, lake, query, engine, runner.wake, cancel_poll_s=settings.job_poll_seconds),
        runner=runner,
        home_lock=home_lock,
        # Every process with job threads runs the schedule; its slots in the metadata store make each day's run one.
        schedule=None
        if at is None or settings.workers == 0
        else DailySchedule(
            at,
            segment_jobs.schedule_due,
            "segment-schedule",
            store=store,
            worker_id=runner.worker_id,
            stale_after_s=settings.job_stale_after_seconds,
        ),
    )
    if settings.pg_port:
        container.pgwire = PgWireServer(container.query, settings.pg_host or settings.host, settings.pg_port)
    return container


def backend_for(stored: StoredConnection) -> Source:
    """The source module that serves a connection's spec and authentication: one module per backend."""
    p, label = stored.params, stored.label
    bucket, folder = p.get("bucketName"), p.get("folderPath") or ""
    cloud, auth = stored.spec.cloud_type, stored.auth.name
    if cloud is CloudType.S3:
        return S3Source(
            label,
            access_key=p["s3AccessKey"],
            secret_key=p["s3SecretKey"],
            session_token=p.get("s3SessionToken"),
            endpoint_url=p.get("serviceUrl"),
            region=p.get("region"),
            bucket=bucket,
            folder=folder,
        )
    if cloud is CloudType.GCS and "serviceAccountKey" in p:
        return GcsSource(
            label, service_account=p["serviceAccountKey"], endpoint=p.get("serviceUrl"), bucket=bucket, folder=folder
        )
    if cloud is CloudType.GCS:
        # HMAC keys: GCS's XML API speaks S3's protocol.
        return S3Source(
            label,
            access_key=p["accessKeyId"],
            secret_key=p["secretAccessKey"],
            endpoint_url=p.get("serviceUrl") or GCS_XML_ENDPOINT,
            region="auto",
            bucket=bucket,
            folder=folder,
        )
    if cloud is CloudType.SFTP:
        return SftpSource(
            label,
            host=p["host"],
            port=p["port"],
            user=p["userName"],
            password=p.get("password"),
            private_key=p.get("privateKeyContent"),
            passphrase=p.get("passPhrase"),
            known_host_key=None if p.get("disableHostKeyChecking") else p.get("knownHostKey"),
            folder=folder,
        )
    raise ValueError(f"connection spec {stored.spec.name} with {auth!r} has no source backend")
