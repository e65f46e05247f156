"""The catalog's tables (SQLAlchemy Core). Every resource row carries its org and sandbox."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()


def _scope() -> list[Column]:
    return [Column("org_id", String(128), nullable=False), Column("sandbox", String(128), nullable=False)]


orgs = Table(
    "orgs",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

sandboxes = Table(
    "sandboxes",
    metadata,
    Column("org_id", String(128), ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("title", String(256), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

clients = Table(
    "clients",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("org_id", String(128), ForeignKey("orgs.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(256), nullable=False),
    Column("secret_hash", String(512), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", BigInteger, nullable=False),
)

audiences = Table(
    "audiences",
    metadata,
    Column("id", String(36), primary_key=True),
    *_scope(),
    Column("name", String(256), nullable=False),
    Column("custom_audience_id", String(256)),
    Column("state", String(16), nullable=False),  # CREATING, ACTIVE
    Column("spec", JSON, nullable=False),
    Column("dataset_id", String(36)),
    Column("schema_id", String(256)),
    Column("created_by", String(256), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_by", String(256), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    UniqueConstraint("org_id", "sandbox", "name", name="uq_audience_name"),
    UniqueConstraint("org_id", "sandbox", "custom_audience_id", name="uq_audience_custom_id"),
)

operations = Table(
    "operations",
    metadata,
    Column("id", String(36), primary_key=True),
    *_scope(),
    Column("audience_id", String(36), nullable=False),
    Column("status", String(16), nullable=False),
    Column("details", JSON, nullable=False),
    Column("error", Text),
    Column("created_by", String(256), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_by", String(256), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(36), primary_key=True),
    *_scope(),
    Column("audience_id", String(36), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("differential", Boolean, nullable=False),
    Column("replace_members", Boolean, nullable=False, default=False),
    Column("filter_start", BigInteger, nullable=False),
    Column("filter_end", BigInteger, nullable=False),
    Column("options", JSON, nullable=False),
    Column("stages", JSON, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("progress", JSON),
    Column("error", Text),
    Column("batch_id", String(36)),
    Column("created_by", String(256), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger),
    # One queued or processing run per audience: the database decides races, not a read-then-write.
    Index(
        "uq_runs_active",
        "audience_id",
        unique=True,
        sqlite_where=text("status IN ('QUEUED', 'PROCESSING')"),
        postgresql_where=text("status IN ('QUEUED', 'PROCESSING')"),
    ),
)

schemas = Table(
    "schemas",
    metadata,
    Column("id", String(256), primary_key=True),
    *_scope(),
    Column("title", String(256), nullable=False),
    Column("class_id", String(256), nullable=False),
    Column("definition", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# The Schema Registry's tenant resources (services/schemas.py): field groups (kind "mixins") and schemas.
xdm_resources = Table(
    "xdm_resources",
    metadata,
    Column("id", String(512), primary_key=True),  # the $id: https://ns.adobe.com/{TENANT}/schemas/{32 hex}
    *_scope(),
    Column("alt_id", String(512), nullable=False),
    Column("kind", String(16), nullable=False),  # schemas, mixins
    Column("title", String(1024), nullable=False),
    Column("class_id", String(512)),  # schemas only
    Column("profile_enabled", Boolean, nullable=False, default=False),
    Column("body", JSON, nullable=False),  # the xed form as stored, registry metadata aside
    Column("version", String(16), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("created_client", String(128), nullable=False),
    Column("updated_by", String(256), nullable=False),
    Column("updated_client", String(128), nullable=False),
    Column("created_at", BigInteger, nullable=False),  # epoch milliseconds, as repo:createdDate
    Column("updated_at", BigInteger, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    UniqueConstraint("org_id", "sandbox", "alt_id", name="uq_xdm_resource_alt_id"),
    UniqueConstraint("org_id", "sandbox", "kind", "title", name="uq_xdm_resource_title"),
)

xdm_descriptors = Table(
    "xdm_descriptors",
    metadata,
    Column("id", String(64), primary_key=True),  # @id: 40 hex, as AEP's
    *_scope(),
    Column("type", String(64), nullable=False),
    Column("source_schema", String(512), nullable=False, index=True),
    Column("source_property", String(1024), nullable=False),
    Column("is_primary", Boolean, nullable=False, default=False),
    Column("body", JSON, nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("created_client", String(128), nullable=False),
    Column("updated_by", String(256), nullable=False),
    Column("updated_client", String(128), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    UniqueConstraint("org_id", "sandbox", "source_schema", "type", "source_property", name="uq_xdm_descriptor_field"),
    # One primary identity per schema: the database decides races between two POSTs.
    Index(
        "uq_xdm_descriptor_primary",
        "org_id",
        "sandbox",
        "source_schema",
        unique=True,
        sqlite_where=text("is_primary"),
        postgresql_where=text("is_primary"),
    ),
)

# Tenant ids set for an org (otherwise derived from the org id: domain/xdm.tenant_id_for).
xdm_tenants = Table(
    "xdm_tenants",
    metadata,
    Column("org_id", String(128), ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

datasets = Table(
    "datasets",
    metadata,
    Column("id", String(36), primary_key=True),
    *_scope(),
    Column("name", String(256), nullable=False),
    Column("schema_id", String(256), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("tags", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # Catalog attributes (description, fileDescription, createdUser, createdClient, updatedUser, version).
    Column("props", JSON),
    Column("created_ms", BigInteger),  # epoch ms, as the Catalog answers (rows of older versions: created_at)
)

batches = Table(
    "batches",
    metadata,
    Column("id", String(36), primary_key=True),
    *_scope(),
    Column("dataset_id", String(36), nullable=False, index=True),
    Column("status", String(16), nullable=False),  # staging, success, failed
    Column("run_id", String(36)),
    Column("record_count", BigInteger, nullable=False, default=0),
    Column("size_bytes", BigInteger, nullable=False, default=0),
    Column("created_at", BigInteger, nullable=False),
    Column("completed_at", BigInteger),
    Column("error", Text),
    # Batch ingestion: inputFormat, createdUser/Client, started, updated (epoch ms), failedRecordCount, errors.
    Column("props", JSON),
    Column("created_ms", BigInteger),
)

connections = Table(
    "connections",
    metadata,
    Column("id", String(36), primary_key=True),
    *_scope(),
    Column("name", String(256), nullable=False),
    Column("description", Text),
    Column("spec_id", String(64), nullable=False),
    Column("spec_version", String(16), nullable=False),
    Column("auth_spec", String(128), nullable=False),
    Column("params", JSON, nullable=False),  # the params that are not secret
    Column("sealed", Text, nullable=False),  # the secret params, AES-GCM sealed with the server's key
    Column("secret_names", JSON, nullable=False),  # which secret params are set (shown masked)
    Column("state", String(16), nullable=False),
    Column("etag", String(64), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("created_client", String(128), nullable=False),
    Column("created_at", BigInteger, nullable=False),  # epoch milliseconds, as the Flow Service answers
    Column("updated_by", String(256), nullable=False),
    Column("updated_client", String(128), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    *_scope(),
    Column("kind", String(64), nullable=False),
    Column("ref_id", String(36), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False, index=True),  # QUEUED, RUNNING, SUCCEEDED, FAILED
    Column("attempts", Integer, nullable=False, default=0),
    Column("worker_id", String(64)),
    Column("heartbeat_at", Float),
    Column("error", Text),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    # The claim reads the oldest QUEUED job: cheap however many finished jobs the table keeps.
    Index("ix_jobs_claim", "status", "created_at"),
)

# Job worker processes and the server's embedded pool (jobs/runner.py): each heartbeats its row, so that peers
# recover the jobs of one that died; ``home`` is set when the process holds that home's lock (the server).
workers = Table(
    "workers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("home", Text),
    Column("threads", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
)

# One row per daily schedule slot (jobs/schedule.py): the key makes each day's action run once across processes.
schedule_slots = Table(
    "schedule_slots",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("slot", String(32), primary_key=True),  # the due time, ISO 8601 UTC
    Column("worker_id", String(64), nullable=False),
    Column("claimed_at", Float, nullable=False),
    Column("done_at", Float),
)

merge_policies = Table(
    "merge_policies",
    metadata,
    Column("id", String(36), primary_key=True),
    *_scope(),
    Column("name", String(256), nullable=False),
    Column("schema_name", String(128), nullable=False),
    Column("identity_graph", String(16), nullable=False),  # none, pdg
    Column("attribute_merge", String(32), nullable=False),  # timestampOrdered, dataSetPrecedence
    Column("dataset_order", JSON, nullable=False),  # dataset ids, highest precedence first
    Column("is_default", Boolean, nullable=False),
    Column("active_on_edge", Boolean, nullable=False),
    Column("version", Integer, nullable=False),
    Column("update_epoch", BigInteger, nullable=False),  # epoch seconds, as the Profile API answers
    Column("created_ns", BigInteger, nullable=False),
    # One default per schema class per sandbox: the database decides races, not a read-then-write.
    Index(
        "uq_merge_policies_default",
        "org_id",
        "sandbox",
        "schema_name",
        unique=True,
        sqlite_where=text("is_default"),
        postgresql_where=text("is_default"),
    ),
    # One policy active on edge per sandbox (AEP: one per organization; every resource here is per sandbox).
    Index(
        "uq_merge_policies_edge",
        "org_id",
        "sandbox",
        unique=True,
        sqlite_where=text("active_on_edge"),
        postgresql_where=text("active_on_edge"),
    ),
    Index("ix_merge_policies_scope", "org_id", "sandbox", "created_ns"),
)

identity_namespaces = Table(
    "identity_namespaces",
    metadata,
    # The API's numeric id (AEP's custom namespace ids, e.g. 10093197), unique within its sandbox.
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("org_id", String(128), primary_key=True),
    Column("sandbox", String(128), primary_key=True),
    Column("code", String(128), nullable=False),
    Column("code_key", String(128), nullable=False),  # the code lower-cased: codes are unique in any case
    Column("name", String(256), nullable=False),
    Column("description", Text, nullable=False),
    Column("id_type", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),  # epoch milliseconds, as AEP answers createTime
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("org_id", "sandbox", "code_key", name="uq_identity_namespace_code"),
)

# The Segmentation Service (services/segmentation.py): segment definitions, segment jobs, and every evaluation's
# counts per audience (the portal's and reports' history).
segment_definitions = Table(
    "segment_definitions",
    metadata,
    Column("id", String(36), primary_key=True),
    *_scope(),
    Column("name", String(256), nullable=False),
    Column("spec", JSON, nullable=False),  # description, expression, schema, evaluationInfo, ttlInDays, ...
    Column("dependencies", JSON, nullable=False),  # the segment definitions the expression reads
    Column("created_by", String(256), nullable=False),
    Column("created_at", BigInteger, nullable=False),  # epoch milliseconds, as AEP answers creationTime
    Column("updated_at", BigInteger, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    UniqueConstraint("org_id", "sandbox", "name", name="uq_segment_definition_name"),
)

segment_jobs = Table(
    "segment_jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    *_scope(),
    Column("status", String(16), nullable=False),  # NEW, PROCESSING, SUCCEEDED, FAILED, CANCELLING, CANCELLED
    Column("source", String(32), nullable=False),  # api, scheduler, audience-update
    Column("segment_ids", JSON, nullable=False),  # in evaluation order
    Column("segments", JSON, nullable=False),  # each segment as the job evaluates it (id, expression, policy)
    Column("metrics", JSON, nullable=False),
    Column("errors", JSON, nullable=False),
    Column("properties", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),  # epoch milliseconds
    Column("updated_at", BigInteger, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Index("ix_segment_jobs_scope", "org_id", "sandbox", "created_ns"),
)

audience_evaluations = Table(
    "audience_evaluations",
    metadata,
    Column("id", String(36), primary_key=True),
    *_scope(),
    Column("audience_id", String(256), nullable=False),  # a segment definition's or an external audience's id
    Column("job_id", String(36), nullable=False),  # the segment job or the external audience's run
    Column("evaluated_at", BigInteger, nullable=False),  # epoch seconds
    Column("realized", BigInteger, nullable=False),
    Column("existing", BigInteger, nullable=False),
    Column("exited", BigInteger, nullable=False),
    Column("members", BigInteger, nullable=False),
    Column("created_ns", BigInteger, nullable=False),  # orders evaluations within one second
    Index("ix_audience_evaluations", "org_id", "sandbox", "audience_id", "created_ns"),
)

export_jobs = Table(
    "export_jobs",
    metadata,
    # AEP's export job ids are numbers (``"id": 100``): the table's own counter, never reused after a delete.
    Column("id", Integer, primary_key=True, autoincrement=True),
    *_scope(),
    Column("status", String(16), nullable=False),  # NEW, PROCESSING, SUCCEEDED, FAILED; CANCELLING while deleted
    Column("spec", JSON, nullable=False),  # the request as understood: fields, filter, destination, schema, policy
    Column("batches", JSON, nullable=False),  # the batches it writes: [{batchId, segmentId?, segmentNs?, status?}]
    Column("metrics", JSON, nullable=False),
    Column("errors", JSON, nullable=False),
    Column("work_id", String(36), nullable=False),  # its row in ``jobs`` (AEP's computeGatewayJobId.exportJob)
    Column("request_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),  # epoch milliseconds
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_export_jobs_scope", "org_id", "sandbox", "created_at", "id"),
    sqlite_autoincrement=True,
)

queries = Table(
    "queries",
    metadata,
    Column("id", String(36), primary_key=True),
    *_scope(),
    Column("state", String(16), nullable=False),  # SUBMITTED, IN_PROGRESS, SUCCESS, FAILED, KILLED, TIMEOUT
    Column("request", JSON, nullable=False),  # the POST body as understood (dbName, sql, name, ...Parameters)
    Column("effective_sql", Text, nullable=False),  # what runs: the SQL with its parameters, as CTAS or INSERT
    Column("kind", String(16), nullable=False),  # query, ctas, insert, ... (query/guard.Kind)
    Column("client_id", String(128), nullable=False),
    Column("row_count", BigInteger),
    Column("errors", JSON, nullable=False),
    Column("datasets", JSON, nullable=False),  # {"referenced": [dataset ids], "created": dataset id or null}
    Column("deleted", Boolean, nullable=False, default=False),  # soft_delete: left out of lists
    Column("cancel", Boolean, nullable=False, default=False),  # a cancel was asked while it ran
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("started_ms", BigInteger),
    Column("ended_ms", BigInteger),
    Index("ix_queries_scope", "org_id", "sandbox", "created_ms"),
)

profile_versions = Table(
    "profile_versions",
    metadata,
    # The lake profile store's committed versions: a writer inserts version n + 1 of its sandbox, so two writers
    # from the same base cannot both commit (the unique constraint is the compare-and-swap).
    Column("id", String(36), primary_key=True),
    *_scope(),
    Column("version", BigInteger, nullable=False),
    Column("manifest", JSON, nullable=False),  # {"tables": {name: [files under _profile/]}, "audiences": {...}}
    Column("created_ms", BigInteger, nullable=False),
    Column("superseded_ms", BigInteger),  # when version n + 1 committed; its files go after a grace period
    UniqueConstraint("org_id", "sandbox", "version", name="uq_profile_version"),
)
