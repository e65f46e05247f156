"""The Query Service: sessions on a sandbox's tables for the PostgreSQL wire front end and the HTTP API.

:class:`QueryService` is the :class:`~audiencehub.query.session.QueryBackend` the wire front end calls: it checks
AEP's connection credentials (user ``{ORG}@AdobeOrg``, an access token as the password, database ``{sandbox}`` or
``{sandbox}:all``) and opens a :class:`~audiencehub.query.duckdb.DuckDBSession` on the sandbox. ``CREATE TABLE AS
SELECT`` and ``INSERT INTO ... SELECT`` write through :class:`DatasetWriter`: the rows become a Parquet file in a
batch's staging folder and are committed by the batch ingestion service like any other batch (validated against
the dataset's schema, one metadata transaction).

The HTTP API's queries (``/data/foundation/query/queries``) are in :mod:`audiencehub.services.query_runs`.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pyarrow as pa
import pyarrow.parquet as pq

from audiencehub.domain.merge_policies import DATASET_PRECEDENCE
from audiencehub.errors import AudiencehubError
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, Scope, delete_rows, get_row, insert_row, now
from audiencehub.profile.base import ProfileStore
from audiencehub.query.duckdb import DuckDBSession, Limits, Write
from audiencehub.query.errors import QueryError
from audiencehub.query.tables import DatasetTable, ProfileTable, SandboxTables, profile_table_name
from audiencehub.services.auth import AuthService, Principal, UnknownSandbox
from audiencehub.services.batch_ingestion import SUCCESS, BatchIngestionService
from audiencehub.services.catalog import KIND_AUDIENCE, CatalogService
from audiencehub.services.lake import Lake
from audiencehub.services.merge_policies import MergePolicyService

log = logging.getLogger(__name__)

ADHOC_CLASS = "https://ns.adobe.com/xdm/data/adhoc"
ORG_SUFFIX = "@AdobeOrg"
RESULT_FILE = "query-result.parquet"
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INTEGERS = {8: "byte", 16: "short", 32: "int", 64: "long"}


def adhoc_field(name: str, dtype: pa.DataType, path: str = "") -> dict[str, Any]:
    """The XDM field of an ad hoc schema that holds values of Arrow type ``dtype`` (a CTAS result's column)."""
    where = f"{path}.{name}" if path else name
    if not _FIELD.match(name) or name.startswith("__"):
        raise QueryError(
            f"column {where!r} cannot be a dataset field: name it with letters, digits and '_' (AS some_name)", "42601"
        )
    if pa.types.is_struct(dtype):
        fields = [dtype.field(i) for i in range(dtype.num_fields)]
        return {"type": "object", "properties": {f.name: adhoc_field(f.name, f.type, where) for f in fields}}
    if pa.types.is_map(dtype):
        if not pa.types.is_string(dtype.key_type) and not pa.types.is_large_string(dtype.key_type):
            raise QueryError(f"column {where!r}: map keys must be strings, got {dtype.key_type}", "42804")
        return {"type": "object", "additionalProperties": adhoc_field("value", dtype.item_type, where)}
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_fixed_size_list(dtype):
        return {"type": "array", "items": adhoc_field("items", dtype.value_type, where)}
    if pa.types.is_boolean(dtype):
        return {"type": "boolean"}
    if pa.types.is_signed_integer(dtype) or pa.types.is_unsigned_integer(dtype):
        bits = dtype.bit_width + (8 if pa.types.is_unsigned_integer(dtype) else 0)
        return {"type": "integer", "meta:xdmType": _INTEGERS.get(bits, "long")}
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return {"type": "number"}
    if pa.types.is_date(dtype):
        return {"type": "string", "format": "date"}
    if pa.types.is_timestamp(dtype):
        return {"type": "string", "format": "date-time"}
    return {"type": "string"}


class DatasetWriter:
    """Writes a Query Service statement's rows as a new batch (implements ``query.duckdb.TableWriter``)."""

    def __init__(
        self, store: MetadataStore, lake: Lake, catalog: CatalogService, batches: BatchIngestionService, who: Principal
    ) -> None:
        self._store = store
        self._lake = lake
        self._catalog = catalog
        self._batches = batches
        self._who = who

    def create(self, name: str, write: Write) -> int:
        scope = self._who.scope
        batch_id = str(uuid.uuid4())
        count, schema = self._write(scope, batch_id, write)
        try:
            properties = {f.name: adhoc_field(f.name, f.type) for f in schema}
            if not properties:
                raise QueryError("CREATE TABLE AS SELECT: the query has no columns", "42601")
        except QueryError:
            self._lake.remove(self._lake.staging(scope, batch_id))
            raise
        schema_id = f"https://ns.adobe.com/{scope.org_id}/schemas/adhoc-{uuid.uuid4().hex}"
        with self._store.tx() as conn:
            insert_row(
                conn,
                t.schemas,
                {
                    "id": schema_id,
                    "org_id": scope.org_id,
                    "sandbox": scope.sandbox,
                    "title": f"{name} (ad hoc schema of CREATE TABLE AS SELECT)",
                    "class_id": ADHOC_CLASS,
                    "definition": {
                        "title": name,
                        "type": "object",
                        "meta:class": ADHOC_CLASS,
                        "properties": properties,
                    },
                    "created_at": now(),
                },
            )
        try:
            dataset_id = self._catalog.create_dataset(
                self._who,
                {
                    "name": name,
                    "description": "Created by CREATE TABLE AS SELECT in the Query Service",
                    "schemaRef": {"id": schema_id},
                },
            )
        except AudiencehubError as exc:
            self._drop_schema(scope, schema_id)
            self._lake.remove(self._lake.staging(scope, batch_id))
            raise QueryError(f"CREATE TABLE {name}: {exc.detail}", "42P07") from None
        try:
            self._commit(scope, dataset_id, batch_id)
        except QueryError:
            self._catalog.delete_dataset(scope, dataset_id)
            self._drop_schema(scope, schema_id)
            raise
        return count

    def insert(self, table: DatasetTable, write: Write) -> int:
        scope = self._who.scope
        dataset = self._catalog.get_row(scope, table.dataset_id)
        if dataset["kind"] == KIND_AUDIENCE:
            raise QueryError(f"table {table.name} belongs to an external audience: ingest through its runs", "42501")
        batch_id = str(uuid.uuid4())
        count, schema = self._write(scope, batch_id, write)
        fields = set(table.schema.names)
        for name in schema.names:
            if name not in fields:
                self._lake.remove(self._lake.staging(scope, batch_id))
                raise QueryError(
                    f"column {name!r} is not a field of table {table.name} (fields: {', '.join(table.schema.names)})",
                    "42703",
                )
        self._commit(scope, table.dataset_id, batch_id)
        return count

    def _write(self, scope: Scope, batch_id: str, write: Write) -> tuple[int, pa.Schema]:
        """The statement's rows as the batch's one staged file: how many, and their columns."""
        path = self._batches.files_dir(scope, batch_id) / RESULT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            count = write(path)
            return count, pq.read_schema(path)
        except BaseException:
            self._lake.remove(self._lake.staging(scope, batch_id))
            raise

    def _commit(self, scope: Scope, dataset_id: str, batch_id: str) -> None:
        path = self._batches.files_dir(scope, batch_id) / RESULT_FILE
        status = self._batches.ingest_file(scope, dataset_id, path, batch_id=batch_id, fmt="parquet", source="query")
        if status != SUCCESS:
            with self._store.read() as conn:
                row = get_row(conn, t.batches, scope, id=batch_id)
            reason = (row or {}).get("error") or f"the batch ended {status}"
            raise QueryError(f"batch {batch_id} failed: {reason}", "22000")

    def _drop_schema(self, scope: Scope, schema_id: str) -> None:
        with self._store.tx() as conn:
            delete_rows(conn, t.schemas, id=schema_id, org_id=scope.org_id, sandbox=scope.sandbox)


class QueryService:
    """Opens Query Service sessions (the wire front end's :class:`~audiencehub.query.session.QueryBackend`)."""

    def __init__(
        self,
        store: MetadataStore,
        auth: AuthService,
        lake: Lake,
        catalog: CatalogService,
        batches: BatchIngestionService,
        profiles: ProfileStore,
        merge_policies: MergePolicyService,
        *,
        schema_of: Callable[[Scope, str], Any],
        limits: Limits,
    ) -> None:
        """``schema_of(scope, ref)`` resolves a dataset's schema (an object with ``properties``)."""
        self._store = store
        self._auth = auth
        self._lake = lake
        self._catalog = catalog
        self._batches = batches
        self._profiles = profiles
        self._policies = merge_policies
        self._schema_of = schema_of
        self.limits = limits

    def open(self, *, user: str, password: str, database: str) -> DuckDBSession:
        """A session for AEP's connection parameters; QueryError 28P01 (credentials) or 3D000 (sandbox)."""
        sandbox = database.strip().removesuffix(":all")
        try:
            # The token names its client and org; authenticate() then checks its signature, expiry and both.
            claims = jwt.decode(password, options={"verify_signature": False})
            client_id, org = str(claims.get("client_id", "")), str(claims.get("org", ""))
            org_id = org if user.strip() in (org, org_user(org)) else user.strip()
            who = self._auth.authenticate(token=password, api_key=client_id, org_id=org_id, sandbox=sandbox)
        except UnknownSandbox:
            raise QueryError(f'database "{database}" does not exist: name a sandbox of your org', "3D000") from None
        except (AudiencehubError, jwt.PyJWTError):
            raise QueryError(
                f'password authentication failed for user "{user}": the password is an access token from '
                "/ims/token/v3 of a client of that org",
                "28P01",
            ) from None
        return self.session(who)

    def session(self, who: Principal) -> DuckDBSession:
        """A session on the caller's sandbox (the HTTP API's callers are already authenticated)."""
        scope = who.scope
        tables = SandboxTables(
            self._store,
            scope,
            batch_dir=lambda dataset_id, batch_id: self._lake.batch(scope, dataset_id, batch_id),
            schema_of=lambda schema_id: self._properties(scope, schema_id),
            profile=self._profile_table(scope),
        )
        writer = DatasetWriter(self._store, self._lake, self._catalog, self._batches, who)
        return DuckDBSession(tables, writer, self.limits)

    def _properties(self, scope: Scope, schema_id: str) -> dict[str, Any] | None:
        try:
            properties: dict[str, Any] = self._schema_of(scope, schema_id).properties
        except AudiencehubError:
            return None
        return properties

    def _profile_table(self, scope: Scope) -> ProfileTable:
        policy = self._policies.resolve(scope, None)

        def snapshot() -> pa.RecordBatchReader:
            current = self._policies.resolve(scope, policy.id)
            precedence = list(current.dataset_order) if current.attribute_merge == DATASET_PRECEDENCE else None
            return self._profiles.snapshot(scope, precedence=precedence)

        return ProfileTable(profile_table_name(policy.id), snapshot)


def org_user(org_id: str) -> str:
    """The user name of AEP's connection parameters: the org id, which already ends with ``@AdobeOrg``."""
    return org_id if org_id.endswith(ORG_SUFFIX) else org_id + ORG_SUFFIX
