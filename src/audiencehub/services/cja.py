"""Seed 002's "Transform the output" step: an export's rows as the JSON that Customer Journey Analytics ingests.

The seed's SQL runs through the Query Service on the export's dataset (one ``explode`` of ``segmentMembership`` per
namespace the chosen audiences live in: ``ups`` for segment definitions, as the seed writes it), its rows are
written to Parquet as they stream, and the engine shapes them in one pass: ``{"_id", "personID", "_{TENANT}":
{"audienceMembershipId", "audienceMembershipName"}}`` with each audience's friendly name (or, per person, one object
holding the list of its memberships), as JSON lines turned into one JSON array. Optionally the file is ingested into
a dataset of a schema made as the seed's UI steps make it: Individual Profile, a field group "Audience Membership"
and ``personID`` as the primary identity in the Email namespace.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from audiencehub.domain.audiences import DEFAULT_NAMESPACE
from audiencehub.domain.segments import SEGMENT_NAMESPACE
from audiencehub.engines.base import Engine
from audiencehub.engines.ingest_sql import lit
from audiencehub.errors import BadRequest
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, Scope, get_row, list_rows
from audiencehub.profile.base import ProfileStore
from audiencehub.query.errors import QueryError
from audiencehub.query.session import QuerySession
from audiencehub.query.tables import assign_names
from audiencehub.services.auth import Principal
from audiencehub.services.batch_ingestion import BatchIngestionService
from audiencehub.services.catalog import CatalogService
from audiencehub.services.external_audiences import find_active
from audiencehub.services.lake import Lake
from audiencehub.services.schemas import SchemaService

PROFILE_CLASS = "https://ns.adobe.com/xdm/context/profile"
STATUSES = ("realized", "existing", "exited")
DEFAULT_SCHEMA = "Audience Export for CJA Schema"
DEFAULT_DATASET = "Audience Export for CJA"
FIELD_GROUP = "Audience Membership"
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_IDENTITY = re.compile(r"^identityMap\['([A-Za-z0-9_.-]+)'\]\[(\d+)\]\.id$")
_NAMESPACE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CHUNK = 1 << 20
SEED_SQL = """SELECT ROW_NUMBER() OVER (ORDER BY key, personID)::text as _id, personID, key as audienceMembershipId
FROM (
{sources}
)
WHERE value.status IN ({statuses}) AND ({keys}) AND personID IS NOT NULL"""
"""Seed 002's query: ``personID IS NOT NULL`` added (CJA needs one) and ``personID`` breaking ties in the numbering."""


@dataclass(frozen=True)
class Audience:
    id: str
    namespace: str
    name: str


@dataclass(frozen=True)
class TransformRequest:
    dataset_id: str
    person_field: str
    audiences: tuple[str, ...]
    tenant: str | None = None
    """``_demoemea`` (with or without its underscore); default: the org's tenant id."""
    statuses: tuple[str, ...] = ("realized",)
    per_person: bool = False
    """One object per person with the list of its memberships, instead of one per membership."""
    ingest: bool = False
    schema_name: str = DEFAULT_SCHEMA
    dataset_name: str = DEFAULT_DATASET

    @classmethod
    def parse(cls, data: Any) -> TransformRequest:
        """The API's body (``datasetId``, ``personIdField``, ``audienceIds``, ``tenant``, ``statuses``,
        ``perPerson``, ``ingest: {schemaName, datasetName}``); refusals name the field and the value."""
        if not isinstance(data, dict):
            raise BadRequest(f"body: must be a JSON object, got {type(data).__name__}")
        dataset_id = data.get("datasetId")
        if not isinstance(dataset_id, str) or not dataset_id.strip():
            raise BadRequest(f"datasetId: the export's dataset id is required, got {dataset_id!r}")
        field = data.get("personIdField")
        if not isinstance(field, str) or not (_FIELD.match(field.strip()) or _IDENTITY.match(field.strip())):
            raise BadRequest(
                "personIdField: a field of the exported rows such as _demoemea.identification.core.email or "
                f"identityMap['Email'][0].id is required, got {field!r}"
            )
        ids = data.get("audienceIds")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i.strip() for i in ids):
            raise BadRequest(f"audienceIds: a non-empty list of audience ids is required, got {ids!r}")
        tenant = data.get("tenant")
        if tenant is not None and (not isinstance(tenant, str) or not _NAMESPACE.match(tenant.strip())):
            raise BadRequest(f"tenant: must be a tenant name such as _demoemea, got {tenant!r}")
        statuses = data.get("statuses", ["realized"])
        if not isinstance(statuses, list) or not statuses or any(s not in STATUSES for s in statuses):
            raise BadRequest(f"statuses: must be a list of {', '.join(STATUSES)}, got {statuses!r}")
        per_person = data.get("perPerson", False)
        if not isinstance(per_person, bool):
            raise BadRequest(f"perPerson: must be true or false, got {per_person!r}")
        ingest = data.get("ingest")
        if ingest is not None and not isinstance(ingest, dict):
            raise BadRequest(f"ingest: must be an object with schemaName and datasetName, got {ingest!r}")
        names = {}
        for key, default in (("schemaName", DEFAULT_SCHEMA), ("datasetName", DEFAULT_DATASET)):
            value = (ingest or {}).get(key, default)
            if not isinstance(value, str) or not value.strip():
                raise BadRequest(f"ingest.{key}: must be a name, got {value!r}")
            names[key] = value.strip()
        return cls(
            dataset_id=dataset_id.strip(),
            person_field=field.strip(),
            audiences=tuple(dict.fromkeys(i.strip() for i in ids)),
            tenant=tenant.strip() if isinstance(tenant, str) else None,
            statuses=tuple(dict.fromkeys(statuses)),
            per_person=per_person,
            ingest=ingest is not None,
            schema_name=names["schemaName"],
            dataset_name=names["datasetName"],
        )


@dataclass
class TransformResult:
    file: Path
    """The JSON array; the caller removes ``folder`` when done with it."""
    folder: Path
    records: int
    ingested: dict[str, Any] | None = None
    """With ``ingest``: schemaId, datasetId, batchId and batchStatus."""


class CjaService:
    def __init__(
        self,
        store: MetadataStore,
        engine: Engine,
        lake: Lake,
        profiles: ProfileStore,
        catalog: CatalogService,
        schemas: SchemaService,
        batches: BatchIngestionService,
        *,
        session: Callable[[Principal], QuerySession],
        reserved_tables: Callable[[Scope], list[str]],
    ) -> None:
        """``session(principal)`` opens a Query Service session on the caller's sandbox; ``reserved_tables(scope)``
        names the tables that are not datasets (the profile store's), which dataset tables never take."""
        self._store = store
        self._engine = engine
        self._lake = lake
        self._profiles = profiles
        self._catalog = catalog
        self._schemas = schemas
        self._batches = batches
        self._session = session
        self._reserved = reserved_tables

    def transform(self, principal: Principal, request: TransformRequest) -> TransformResult:
        scope = principal.scope
        table = self._table(scope, request.dataset_id)
        audiences = [self._audience(scope, n, a) for n, a in enumerate(request.audiences)]
        tenant = "_" + (request.tenant or self._schemas.tenant_id(scope)).lstrip("_")
        folder = self._lake.staging(scope, f"cja-{uuid.uuid4().hex}")
        folder.mkdir(parents=True)
        try:
            rows = folder / "rows.parquet"
            self._query(principal, seed_sql(table, request.person_field, audiences, request.statuses), rows)
            lines, out = folder / "rows.jsonl", folder / "audience-memberships.json"
            with self._engine.session() as engine:
                records = engine.copy(shape_sql(rows, audiences, tenant, request.per_person), lines, "json")
            json_array(lines, out)
            lines.unlink()
            result = TransformResult(out, folder, records)
            if request.ingest:
                result.ingested = self._ingest(principal, request, tenant, out)
            return result
        except BaseException:
            self._lake.remove(folder)
            raise

    def discard(self, result: TransformResult) -> None:
        """Removes a transform's files once they were sent."""
        self._lake.remove(result.folder)

    # -- the pieces ------------------------------------------------------------------------------------

    def _table(self, scope: Scope, dataset_id: str) -> str:
        """The dataset's table name in the Query Service (its name in lower snake case, made unique as the
        service makes it)."""
        self._catalog.get_row(scope, dataset_id)  # NotFound names it
        with self._store.read() as conn:
            rows, _ = list_rows(conn, t.datasets, scope)
        rows.sort(key=lambda r: (r.get("created_ms") or 0, r["created_at"], r["id"]))
        names = assign_names([(r["id"], r["name"]) for r in rows], self._reserved(scope))
        return names[dataset_id]

    def _audience(self, scope: Scope, n: int, audience_id: str) -> Audience:
        """Where a chosen audience's memberships are (``ups`` for a segment definition, an external audience's
        own namespace) and its friendly name."""
        with self._store.read() as conn:
            found = get_row(conn, t.segment_definitions, scope, id=audience_id)
            if found is not None:
                return Audience(audience_id, SEGMENT_NAMESPACE, str(found["name"]))
            row = find_active(conn, scope, audience_id)
        if row is not None:
            namespace = (row["spec"] or {}).get("namespace", DEFAULT_NAMESPACE)
            return Audience(str(row["id"]), namespace, str(row["name"]))
        found_ns = self._profiles.record_segments(scope, audience_id)
        if found_ns:
            return Audience(audience_id, found_ns[0], audience_id)
        raise BadRequest(f"audienceIds[{n}]: no segment definition or audience {audience_id!r} in this sandbox")

    def _query(self, principal: Principal, sql: str, target: Path) -> None:
        """Runs ``sql`` through the Query Service and writes its rows to Parquet as they stream."""
        with _closing(self._session(principal)) as session:
            try:
                result = session.execute(sql)
            except QueryError as exc:
                raise BadRequest(f"the seed's query failed on the export's dataset: {exc}") from exc
            assert result.columns is not None
            schema = pa.schema([pa.field(c.name, c.type) for c in result.columns])
            with pq.ParquetWriter(target, schema) as out:
                for batch in result.batches:
                    out.write_batch(batch)

    def _ingest(self, principal: Principal, request: TransformRequest, tenant: str, file: Path) -> dict[str, Any]:
        """The seed's "Create a schema and dataset" steps, then the file as one batch of that dataset."""
        scope = principal.scope
        found = self._catalog.list_datasets(scope, name=request.dataset_name)
        if found:
            dataset_id = next(iter(found))
            schema_id = self._catalog.get_row(scope, dataset_id)["schema_id"]
        else:
            schema_id = self._schema(principal, request, tenant)
            dataset_id = self._catalog.create_dataset(
                principal, {"name": request.dataset_name, "schemaRef": {"id": schema_id}}
            )
        batch_id = str(uuid.uuid4())
        status = self._batches.ingest_file(scope, dataset_id, file, batch_id=batch_id, fmt="json", source="cja")
        return {"schemaId": schema_id, "datasetId": dataset_id, "batchId": batch_id, "batchStatus": status}

    def _schema(self, principal: Principal, request: TransformRequest, tenant: str) -> str:
        membership = {
            "audienceMembershipId": {"type": "string", "title": "audienceMembershipId"},
            "audienceMembershipName": {"type": "string", "title": "audienceMembershipName"},
        }
        fields: dict[str, Any] = (
            {"audienceMemberships": {"type": "array", "items": {"type": "object", "properties": membership}}}
            if request.per_person
            else membership
        )
        if self._schemas.tenant_id(principal.scope) != tenant.removeprefix("_"):
            raise BadRequest(
                f"tenant: {tenant!r} is not this org's tenant (_{self._schemas.tenant_id(principal.scope)}); "
                "a schema of this org can only hold fields under its own"
            )
        group = self._schemas.create_field_group(
            principal,
            {
                "title": FIELD_GROUP,
                "description": "The audiences a person belongs to, for Customer Journey Analytics.",
                "type": "object",
                "meta:intendedToExtend": [PROFILE_CLASS],
                "definitions": {"membership": {"properties": {tenant: {"type": "object", "properties": fields}}}},
                "allOf": [{"$ref": "#/definitions/membership"}],
            },
        )
        schema = self._schemas.create_schema(
            principal,
            {
                "title": request.schema_name,
                "type": "object",
                "allOf": [{"$ref": PROFILE_CLASS}, {"$ref": group["$id"]}],
            },
        )
        self._schemas.descriptors.create_descriptor(
            principal,
            {
                "@type": "xdm:descriptorIdentity",
                "xdm:sourceSchema": schema["$id"],
                "xdm:sourceVersion": 1,
                "xdm:sourceProperty": "/personID",
                "xdm:namespace": "Email",
                "xdm:property": "xdm:code",
                "xdm:isPrimary": True,
            },
        )
        return str(schema["$id"])


@contextmanager
def _closing(session: QuerySession) -> Iterator[QuerySession]:
    try:
        yield session
    finally:
        session.close()


def seed_sql(table: str, person_field: str, audiences: list[Audience], statuses: tuple[str, ...]) -> str:
    """Seed 002's query over the export's table, with one ``explode`` per namespace of the chosen audiences."""
    namespaces = list(dict.fromkeys(a.namespace for a in audiences))
    sources = "\n   UNION ALL\n".join(
        f"   SELECT {person_field} AS personID, explode(segmentMembership.{_quoted(ns)})\n   FROM {table}"
        for ns in namespaces
    )
    keys = " OR ".join(f"key = {lit(a.id)}" for a in audiences)
    return SEED_SQL.format(sources=sources, statuses=", ".join(lit(s) for s in statuses), keys=keys)


def _quoted(name: str) -> str:
    return name if _NAMESPACE.match(name) else "`" + name.replace("`", "``") + "`"


def shape_sql(rows: Path, audiences: list[Audience], tenant: str, per_person: bool) -> str:
    """The engine's pass over the query's rows: one JSON text per output object, in ``_id`` order."""
    names = " UNION ALL ".join(f"SELECT {lit(a.id)} AS id, {lit(a.name)} AS name" for a in audiences)
    member = "{'audienceMembershipId': r.audienceMembershipId, 'audienceMembershipName': n.name}"
    source = f"read_parquet({lit(str(rows))}) r LEFT JOIN ({names}) n ON n.id = r.audienceMembershipId"
    if not per_person:
        value = f"struct_pack(_id := r._id, personID := r.personID, {_key(tenant)} := {member})"
        return f"SELECT to_json({value}) FROM {source} ORDER BY CAST(r._id AS BIGINT)"
    memberships = f"list({member} ORDER BY CAST(r._id AS BIGINT))"
    value = (
        "struct_pack(_id := CAST(row_number() OVER (ORDER BY min(CAST(r._id AS BIGINT))) AS VARCHAR), "
        f"personID := r.personID, {_key(tenant)} := struct_pack(audienceMemberships := {memberships}))"
    )
    return f"SELECT to_json({value}) FROM {source} GROUP BY r.personID ORDER BY min(CAST(r._id AS BIGINT))"


def _key(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def json_array(lines: Path, target: Path) -> None:
    """JSON lines (no raw newline inside a JSON text) as one JSON array, a MiB at a time."""
    with lines.open("rb") as src, target.open("wb") as out:
        out.write(b"[")
        pending, first = b"", True
        while block := src.read(CHUNK):
            text = pending + block
            cut = text.rfind(b"\n") + 1  # whole records only; the rest waits for the next block
            body, pending = text[:cut], text[cut:]
            if body:
                out.write((b"\n" if first else b",\n") + body[:-1].replace(b"\n", b",\n"))
                first = False
        if pending.strip():
            out.write((b"\n" if first else b",\n") + pending.strip())
        out.write(b"\n]\n")
