"""Catalog queries the PostgreSQL front end answers itself: psql's ``\\dt`` and ``\\d``, drivers'
``pg_type`` look-ups, ``SELECT version()``, ``current_database()``.

They are answered by evaluating the client's query, parsed with sqlglot's postgres dialect
and rewritten, over a small in-memory ``pg_catalog`` that describes the session's tables (one DuckDB
database per connection, with no file or network access). So any psql version's variant of ``\\d``
works as long as it reads the tables and functions modelled here; a catalog query that reads
something that is not modelled gets its columns and no rows, as a server without such objects would.
"""

from __future__ import annotations

import logging
import platform
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from audiencehub import __version__
from audiencehub.query import pgtypes
from audiencehub.query.errors import QueryError
from audiencehub.query.pgstatements import GUCS, ServerSettings, table_result
from audiencehub.query.session import Column, QuerySession, Result

log = logging.getLogger(__name__)

VERSION = f"PostgreSQL 15.0 (audiencehub {__version__}) on {platform.machine()}-pc-linux-gnu, 64-bit"

# PostgreSQL 15's catalog relations that clients read, with their columns. Types: o oid (bigint),
# s smallint, i integer, l bigint, f real, d double, b boolean, z timestamptz, O oid[], A text[], none text.
_RELATIONS = {
    "pg_am": "oid:o amname amhandler amtype",
    "pg_attrdef": "oid:o adrelid:o adnum:s adbin",
    "pg_attribute": (
        "attrelid:o attname atttypid:o attstattarget:i attlen:s attnum:s attndims:i attcacheoff:i atttypmod:i "
        "attbyval:b attalign attstorage attcompression attnotnull:b atthasdef:b atthasmissing:b attidentity "
        "attgenerated attisdropped:b attislocal:b attinhcount:i attcollation:o attacl:A attoptions:A attfdwoptions:A "
        "attmissingval:A"
    ),
    "pg_auth_members": "roleid:o member:o grantor:o admin_option:b",
    "pg_cast": "oid:o castsource:o casttarget:o castfunc:o castcontext castmethod",
    "pg_class": (
        "oid:o relname relnamespace:o reltype:o reloftype:o relowner:o relam:o relfilenode:o reltablespace:o "
        "relpages:i reltuples:f relallvisible:i reltoastrelid:o relhasindex:b relisshared:b relpersistence relkind "
        "relnatts:s relchecks:s relhasrules:b relhastriggers:b relhassubclass:b relrowsecurity:b relforcerowsecurity:b "
        "relispopulated:b relreplident relispartition:b relrewrite:o relfrozenxid:o relminmxid:o relacl:A reloptions:A "
        "relpartbound"
    ),
    "pg_collation": (
        "oid:o collname collnamespace:o collowner:o collprovider collisdeterministic:b collencoding:i collcollate "
        "collctype colliculocale collversion"
    ),
    "pg_constraint": (
        "oid:o conname connamespace:o contype condeferrable:b condeferred:b convalidated:b conrelid:o contypid:o "
        "conindid:o conparentid:o confrelid:o confupdtype confdeltype confmatchtype conislocal:b coninhcount:i "
        "connoinherit:b conkey:O confkey:O conpfeqop:O conppeqop:O conffeqop:O confdelsetcols:O conexclop:O conbin"
    ),
    "pg_database": (
        "oid:o datname datdba:o encoding:i datlocprovider datistemplate:b datallowconn:b datconnlimit:i "
        "datfrozenxid:o datminmxid:o dattablespace:o datcollate datctype daticulocale datcollversion datacl:A"
    ),
    "pg_default_acl": "oid:o defaclrole:o defaclnamespace:o defaclobjtype defaclacl:A",
    "pg_description": "objoid:o classoid:o objsubid:i description",
    "pg_enum": "oid:o enumtypid:o enumsortorder:f enumlabel",
    "pg_event_trigger": "oid:o evtname evtevent evtowner:o evtfoid:o evtenabled evttags:A",
    "pg_extension": "oid:o extname extowner:o extnamespace:o extrelocatable:b extversion extconfig:O extcondition:A",
    "pg_foreign_data_wrapper": "oid:o fdwname fdwowner:o fdwhandler:o fdwvalidator:o fdwacl:A fdwoptions:A",
    "pg_foreign_server": "oid:o srvname srvowner:o srvfdw:o srvtype srvversion srvacl:A srvoptions:A",
    "pg_foreign_table": "ftrelid:o ftserver:o ftoptions:A",
    "pg_index": (
        "indexrelid:o indrelid:o indnatts:s indnkeyatts:s indisunique:b indnullsnotdistinct:b indisprimary:b "
        "indisexclusion:b indimmediate:b indisclustered:b indisvalid:b indcheckxmin:b indisready:b indislive:b "
        "indisreplident:b indkey:O indcollation:O indclass:O indoption:O indexprs indpred"
    ),
    "pg_indexes": "schemaname tablename indexname tablespace indexdef",
    "pg_inherits": "inhrelid:o inhparent:o inhseqno:i inhdetachpending:b",
    "pg_language": (
        "oid:o lanname lanowner:o lanispl:b lanpltrusted:b lanplcallfoid:o laninline:o lanvalidator:o lanacl:A"
    ),
    "pg_matviews": "schemaname matviewname matviewowner tablespace hasindexes:b ispopulated:b definition",
    "pg_namespace": "oid:o nspname nspowner:o nspacl:A",
    "pg_opclass": (
        "oid:o opcmethod:o opcname opcnamespace:o opcowner:o opcfamily:o opcintype:o opcdefault:b opckeytype:o"
    ),
    "pg_operator": (
        "oid:o oprname oprnamespace:o oprowner:o oprkind oprcanmerge:b oprcanhash:b oprleft:o oprright:o "
        "oprresult:o oprcom:o oprnegate:o oprcode oprrest oprjoin"
    ),
    "pg_partitioned_table": (
        "partrelid:o partstrat partnatts:s partdefid:o partattrs:O partclass:O partcollation:O partexprs"
    ),
    "pg_policy": "oid:o polname polrelid:o polcmd polpermissive:b polroles:O polqual polwithcheck",
    "pg_proc": (
        "oid:o proname pronamespace:o proowner:o prolang:o procost:f prorows:f provariadic:o prosupport prokind "
        "prosecdef:b proleakproof:b proisstrict:b proretset:b provolatile proparallel pronargs:s pronargdefaults:s "
        "prorettype:o proargtypes:O proallargtypes:O proargmodes:A proargnames:A proargdefaults protrftypes:O prosrc "
        "probin prosqlbody proconfig:A proacl:A"
    ),
    "pg_publication": (
        "oid:o pubname pubowner:o puballtables:b pubinsert:b pubupdate:b pubdelete:b pubtruncate:b pubviaroot:b"
    ),
    "pg_publication_namespace": "oid:o pnpubid:o pnnspid:o",
    "pg_publication_rel": "oid:o prpubid:o prrelid:o prqual prattrs:O",
    "pg_range": ("rngtypid:o rngsubtype:o rngmultitypid:o rngcollation:o rngsubopc:o rngcanonical rngsubdiff"),
    "pg_rewrite": "oid:o rulename ev_class:o ev_type ev_enabled is_instead:b ev_qual ev_action",
    "pg_roles": (
        "rolname rolsuper:b rolinherit:b rolcreaterole:b rolcreatedb:b rolcanlogin:b rolreplication:b "
        "rolconnlimit:i rolpassword rolvaliduntil:z rolbypassrls:b rolconfig:A oid:o"
    ),
    "pg_sequence": ("seqrelid:o seqtypid:o seqstart:l seqincrement:l seqmax:l seqmin:l seqcache:l seqcycle:b"),
    "pg_settings": (
        "name setting unit category short_desc extra_desc context vartype source min_val max_val enumvals:A "
        "boot_val reset_val sourcefile sourceline:i pending_restart:b"
    ),
    "pg_shdescription": "objoid:o classoid:o description",
    "pg_statistic_ext": (
        "oid:o stxrelid:o stxname stxnamespace:o stxowner:o stxstattarget:i stxkeys:O stxkind:A stxexprs"
    ),
    "pg_tables": "schemaname tablename tableowner tablespace hasindexes:b hasrules:b hastriggers:b rowsecurity:b",
    "pg_tablespace": "oid:o spcname spcowner:o spcacl:A spcoptions:A",
    "pg_trigger": (
        "oid:o tgrelid:o tgparentid:o tgname tgfoid:o tgtype:s tgenabled tgisinternal:b tgconstrrelid:o "
        "tgconstrindid:o tgconstraint:o tgdeferrable:b tginitdeferred:b tgnargs:s tgattr:O tgargs tgqual "
        "tgoldtable tgnewtable"
    ),
    "pg_type": (
        "oid:o typname typnamespace:o typowner:o typlen:s typbyval:b typtype typcategory typispreferred:b "
        "typisdefined:b typdelim typrelid:o typsubscript typelem:o typarray:o typinput typoutput typreceive typsend "
        "typmodin typmodout typanalyze typalign typstorage typnotnull:b typbasetype:o typtypmod:i typndims:i "
        "typcollation:o typdefaultbin typdefault typacl:A"
    ),
    "pg_user": ("usename usesysid:o usecreatedb:b usesuper:b userepl:b usebypassrls:b passwd valuntil:z useconfig:A"),
    "pg_views": "schemaname viewname viewowner definition",
}
_INFORMATION_SCHEMA = {
    "tables": "table_catalog table_schema table_name table_type is_insertable_into is_typed",
    "columns": (
        "table_catalog table_schema table_name column_name ordinal_position:i column_default is_nullable data_type "
        "character_maximum_length:i numeric_precision:i numeric_scale:i datetime_precision:i udt_catalog "
        "udt_schema udt_name is_updatable"
    ),
    "schemata": "catalog_name schema_name schema_owner",
}
_DUCK_TYPES = {"o": "BIGINT", "s": "SMALLINT", "i": "INTEGER", "l": "BIGINT", "f": "REAL", "d": "DOUBLE"}
_DUCK_TYPES |= {"b": "BOOLEAN", "z": "TIMESTAMPTZ", "O": "BIGINT[]", "A": "VARCHAR[]", "": "VARCHAR"}

PUBLIC_OID, CATALOG_OID, INFO_OID, OWNER_OID, HEAP_OID, DATABASE_OID = 2200, 11, 13000, 10, 2, 16384
_NULL_FUNCTIONS = {
    "pg_get_expr", "pg_get_indexdef", "pg_get_constraintdef", "pg_get_triggerdef", "pg_get_viewdef",
    "pg_get_ruledef", "pg_get_statisticsobjdef_columns", "pg_get_partkeydef", "pg_get_function_arguments",
    "pg_get_function_result", "pg_get_function_identity_arguments", "obj_description", "col_description",
    "shobj_description", "pg_get_serial_sequence", "pg_tablespace_location", "inet_server_addr",
    "inet_server_port", "pg_get_keywords",
}  # fmt: skip
_TRUE_FUNCTIONS = {
    "pg_table_is_visible", "pg_type_is_visible", "pg_function_is_visible", "pg_collation_is_visible",
    "pg_opclass_is_visible", "pg_operator_is_visible", "pg_conversion_is_visible", "has_table_privilege",
    "has_schema_privilege", "has_database_privilege", "has_column_privilege", "has_any_column_privilege",
    "has_function_privilege", "has_sequence_privilege", "pg_has_role",
}  # fmt: skip
_FALSE_FUNCTIONS = {"pg_relation_is_publishable", "pg_is_in_recovery", "pg_is_other_temp_schema"}
_ZERO_FUNCTIONS = {"pg_table_size", "pg_relation_size", "pg_total_relation_size", "pg_indexes_size"}
_SYSTEM_HINTS: tuple[str, ...] = ("pg_", "information_schema", "version", "current_", "session_user", "has_")
_SYSTEM_HINTS += ("format_type", "obj_description", "col_description", "getdatabaseencoding")


def table_oid(name: str) -> int:
    """A table's stable synthetic oid: the same name gets the same oid in every connection and restart."""
    return 16384 + zlib.crc32(name.encode()) % 1_000_000_000


@dataclass
class CatalogQuery:
    """A catalog query rewritten for the catalog database."""

    sql: str
    names: list[str]
    parameters: int
    relations: set[str] = field(default_factory=set)
    attrelids: set[int] | None = None  # the only tables whose columns it can read (psql's \d), None: any


class Catalog:
    """One connection's catalog: recognises catalog queries and answers them from ``session``'s tables."""

    def __init__(self, session: QuerySession, *, user: str, database: str, pid: int, settings: ServerSettings):
        self.session, self.user, self.database, self.pid, self.settings = session, user, database, pid, settings
        self._db: duckdb.DuckDBPyConnection | None = None
        self._oids: dict[str, int] = {}

    def recognize(self, sql: str) -> CatalogQuery | None:
        """The rewritten query when ``sql`` reads only the catalog or system functions; else None."""
        low = sql.lower()
        if not any(h in low for h in _SYSTEM_HINTS):
            return None
        try:
            tree = sqlglot.parse_one(sql, read="postgres")
        except sqlglot.errors.SqlglotError:
            return None
        if not isinstance(tree, exp.Select | exp.SetOperation):
            return None
        ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
        relations: set[str] = set()
        for table in tree.find_all(exp.Table):
            name, schema = table.name.lower(), table.db.lower()
            if not name or (name in ctes and not schema):
                continue
            key = _relation_key(name, schema)
            if key is None:
                return None  # a user table (or an unknown system relation): the executor answers
            relations.add(key)
        if not relations and not any(_is_system_function(f) for f in tree.find_all(exp.Func)):
            return None
        names = _pg_names(tree)
        parameters = max((int(p.name) for p in tree.find_all(exp.Parameter) if p.name.isdigit()), default=0)
        attrelids = _attrelids(tree)
        return CatalogQuery(self._rewrite_all(tree).sql(dialect="duckdb"), names, parameters, relations, attrelids)

    def run(self, query: CatalogQuery, params: Sequence[Any] = ()) -> Result:
        db = self._database()
        self._refresh(db, query.relations, query.attrelids)
        timer = threading.Timer(5.0, db.interrupt)  # tiny tables: only a runaway cross join takes this long
        timer.start()
        try:
            table = db.sql(query.sql, params=list(params) or None).to_arrow_table()
        except duckdb.Error as exc:
            # Something not modelled here (a function, an operator on a relation that is always empty):
            # answer the columns with no rows, as a server without such objects would.
            log.info("catalog query answered empty (%s): %s", exc, query.sql)
            table = pa.table({n: pa.array([], pa.string()) for n in _unique(query.names)})
        finally:
            timer.cancel()
        return table_result(table, "SELECT")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- the catalog database --

    def _database(self) -> duckdb.DuckDBPyConnection:
        if self._db is not None:
            return self._db
        db = duckdb.connect(":memory:", config={"threads": 1, "memory_limit": "128MB"})
        for name, spec in [
            *_RELATIONS.items(),
            *(("information_schema_" + k, v) for k, v in _INFORMATION_SCHEMA.items()),
        ]:
            cols = ", ".join(f'"{c.split(":")[0]}" {_DUCK_TYPES[(c + ":").split(":")[1]]}' for c in spec.split())
            db.execute(f'CREATE TABLE "pgc_{name}" ({cols})')
        whens = " ".join(f"WHEN {t.oid} THEN '{t.display}'" for t in pgtypes.TYPES.values())
        db.execute(f"CREATE MACRO pgc_format_type(o, m) AS CASE o {whens} ELSE NULL END")
        db.execute("CREATE MACRO pgc_size_pretty(n) AS CAST(n AS VARCHAR) || ' bytes'")
        own = {"nspowner": OWNER_OID}
        _insert(db, "pg_namespace", [
            {"oid": CATALOG_OID, "nspname": "pg_catalog", **own}, {"oid": PUBLIC_OID, "nspname": "public", **own},
            {"oid": INFO_OID, "nspname": "information_schema", **own},
        ])  # fmt: skip
        _insert(db, "pg_am", [{"oid": HEAP_OID, "amname": "heap", "amhandler": "heap_tableam_handler", "amtype": "t"}])
        _insert(db, "pg_type", [_type_row(t) for t in pgtypes.TYPES.values()])
        _insert(db, "pg_roles", [{"rolname": self.user, "rolinherit": True, "rolcanlogin": True, "oid": OWNER_OID}])
        _insert(db, "pg_user", [{"usename": self.user, "usesysid": OWNER_OID, "usesuper": False}])
        _insert(db, "pg_database", [{
            "oid": DATABASE_OID, "datname": self.database, "datdba": OWNER_OID, "encoding": 6, "datlocprovider": "c",
            "datistemplate": False, "datallowconn": True, "datconnlimit": -1, "dattablespace": 1663,
            "datcollate": "C.UTF-8", "datctype": "C.UTF-8",
        }])  # fmt: skip
        _insert(db, "pg_tablespace", [{"oid": 1663, "spcname": "pg_default", "spcowner": OWNER_OID}])
        _insert(db, "information_schema_schemata", [
            {"catalog_name": self.database, "schema_name": schema, "schema_owner": self.user}
            for schema in ("public", "pg_catalog", "information_schema")
        ])  # fmt: skip
        db.execute("SET enable_external_access = false")
        db.execute("SET lock_configuration = true")
        self._db = db
        return db

    def _refresh(self, db: duckdb.DuckDBPyConnection, relations: set[str], attrelids: set[int] | None) -> None:
        """Fills the relations that describe the session's tables, which may have changed since last time."""
        wanted = relations & _DYNAMIC
        if not wanted:
            return
        tables = self.session.tables()
        self._oids = {name: table_oid(name) for name in tables}
        # Reading a table's columns may cost (the profile store's): only those the query can see are read.
        if not wanted & _COLUMN_RELATIONS:
            readable: list[str] = []
        elif attrelids is None or "information_schema_columns" in wanted:
            readable = tables
        else:
            readable = [n for n in tables if self._oids[n] in attrelids]
        columns = {name: self._columns(name) for name in readable}
        rows: dict[str, list[dict[str, Any]]] = {
            "pg_class": [_class_row(name, oid, len(columns.get(name, []))) for name, oid in self._oids.items()],
            "pg_tables": [
                {"schemaname": "public", "tablename": name, "tableowner": self.user, **dict.fromkeys(_NO_FLAGS, False)}
                for name in tables
            ],
            "information_schema_tables": [
                {"table_catalog": self.database, "table_schema": "public", "table_name": name,
                 "table_type": "BASE TABLE", "is_insertable_into": "NO", "is_typed": "NO"}
                for name in tables
            ],
            "pg_attribute": [
                _attribute_row(self._oids[name], i, c) for name, cs in columns.items() for i, c in enumerate(cs, 1)
            ],
            "information_schema_columns": [
                {"table_catalog": self.database, "table_schema": "public", "table_name": name, "column_name": c.name,
                 "ordinal_position": i, "is_nullable": "YES", "data_type": pgtypes.pg_type(c.type).display,
                 "udt_name": pgtypes.pg_type(c.type).name, "is_updatable": "NO"}
                for name, cs in columns.items()
                for i, c in enumerate(cs, 1)
            ],
            "pg_settings": [
                {"name": g.name, "setting": self.settings.values[k], "short_desc": g.description, "context": "user",
                 "vartype": "string", "source": "default"}
                for k, g in GUCS.items()
            ],
        }  # fmt: skip
        for rel in wanted:
            db.execute(f'DELETE FROM "pgc_{rel}"')
            _insert(db, rel, rows[rel])

    def _columns(self, table: str) -> list[Column]:
        try:
            return self.session.columns(table)
        except Exception:  # one unreadable table must not hide the others from \dt
            log.exception("columns of table %s", table)
            return []

    # -- rewriting the client's query for the catalog database --

    def _rewrite_all(self, tree: exp.Expr) -> exp.Expr:
        """Rewrites bottom-up, so that each node is rewritten after (and from) its rewritten children."""
        nodes: list[exp.Expr] = list(tree.walk())
        for node in reversed(nodes):
            new = self._rewrite(node)
            if new is not node:
                if node is tree:
                    tree = new
                else:
                    node.replace(new)
        return tree

    def _rewrite(self, node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Table):
            key = _relation_key(node.name.lower(), node.db.lower())
            if key is None:
                if node.db.lower() == "pg_catalog":  # a set-returning function: pg_catalog.unnest(...)
                    node.set("db", None)
                return node
            alias = node.args.get("alias") or exp.TableAlias(this=exp.to_identifier(node.name))
            return exp.Table(this=exp.to_identifier(f"pgc_{key}", quoted=True), alias=alias)
        if isinstance(node, exp.Dot) and isinstance(node.this, exp.Identifier) and node.this.name == "pg_catalog":
            return node.expression if not isinstance(node.expression, exp.Identifier) else node
        if isinstance(node, exp.Collate):
            return node.this
        if isinstance(node, exp.Operator):
            return _operator(node)
        if isinstance(node, exp.Cast):
            return self._cast(node)
        if isinstance(node, exp.CurrentUser | exp.SessionUser) or (
            isinstance(node, exp.Column) and not node.table and node.name.lower() in ("user", "current_role")
        ):
            return exp.Literal.string(self.user)
        if isinstance(node, exp.CurrentSchema):
            return exp.Literal.string("public")
        if isinstance(node, exp.CurrentVersion):
            return exp.Literal.string(VERSION)
        if isinstance(node, exp.Func):
            return self._function(node)
        return node

    def _function(self, node: exp.Func) -> exp.Expr:
        name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
        args = node.expressions if isinstance(node, exp.Anonymous) else []
        constants: dict[str, exp.Expr] = {
            "version": exp.Literal.string(VERSION),
            "current_database": exp.Literal.string(self.database),
            "current_catalog": exp.Literal.string(self.database),
            "current_schema": exp.Literal.string("public"),
            "pg_backend_pid": exp.Literal.number(self.pid),
            "getdatabaseencoding": exp.Literal.string("UTF8"),
            "pg_encoding_to_char": exp.Literal.string("UTF8"),
            "pg_get_userbyid": exp.Literal.string(self.user),
            "current_schemas": exp.Array(expressions=[exp.Literal.string("pg_catalog"), exp.Literal.string("public")]),
        }
        if name in constants:
            return constants[name]
        if name in _NULL_FUNCTIONS:
            return exp.Null()
        if name in _TRUE_FUNCTIONS | _FALSE_FUNCTIONS:
            return exp.Boolean(this=name in _TRUE_FUNCTIONS)
        if name in _ZERO_FUNCTIONS:
            return exp.Literal.number(0)
        if name == "format_type" and args:
            return exp.Anonymous(this="pgc_format_type", expressions=[args[0], exp.Null()])
        if name == "pg_size_pretty" and args:
            return exp.Anonymous(this="pgc_size_pretty", expressions=args[:1])
        if name in ("to_regtype", "to_regclass") and args:  # a name's oid, NULL when there is none
            table, column = ("pgc_pg_type", "typname") if name == "to_regtype" else ("pgc_pg_class", "relname")
            where = exp.EQ(this=exp.column(column), expression=args[0].copy())
            return exp.Subquery(this=exp.select("oid").from_(table).where(where).limit(1))
        if name == "current_setting" and args and isinstance(args[0], exp.Literal):
            key = args[0].name.lower()
            return exp.Literal.string(self.settings.values[key]) if key in GUCS else exp.Null()
        return node

    def _cast(self, node: exp.Cast) -> exp.Expr:
        target = _type_name(node.args["to"])
        if target is None:
            return node
        arg = node.this
        if target == "regclass":
            if isinstance(arg, exp.Literal) and arg.is_string:
                name = arg.name.split(".")[-1].strip('"')
                if name not in self._oids and name not in self.session.tables():
                    raise QueryError(f'relation "{arg.name}" does not exist', "42P01")
                return exp.Literal.number(table_oid(name))
            return _lookup("pgc_pg_class", "relname", arg)
        if target == "regnamespace":
            return _lookup("pgc_pg_namespace", "nspname", arg)
        if target == "regtype":
            return exp.Anonymous(this="pgc_format_type", expressions=[arg, exp.Null()])
        if target in ("regrole",):
            return exp.Literal.string(self.user)
        if target in ("oid", "xid", "cid", "regproc", "regprocedure", "regoper", "regconfig"):
            kind = "BIGINT" if target in ("oid", "xid", "cid") else "VARCHAR"
            return exp.Cast(this=arg, to=exp.DataType.build(kind))
        if target in ("int2vector", "oidvector"):
            return exp.Cast(this=arg, to=exp.DataType.build("BIGINT[]"))
        if target in ("name", "char", "text", "cstring", "pg_node_tree", "bpchar", "varchar"):
            return exp.Cast(this=arg, to=exp.DataType.build("VARCHAR"))
        built = exp.DataType.build(target, dialect="postgres")
        return exp.Cast(this=arg, to=built)


def _attrelids(tree: exp.Expr) -> set[int] | None:
    """The table oids a query's reads of pg_attribute are restricted to (``attrelid = '16384'`` in an AND)."""
    found: set[int] = set()
    for select in tree.find_all(exp.Select):
        if not any(t.name.lower() == "pg_attribute" for t in select.find_all(exp.Table)):
            continue
        where = select.args.get("where")
        conjuncts = list(where.this.flatten()) if where is not None and isinstance(where.this, exp.And) else []
        conjuncts = conjuncts or ([where.this] if where is not None else [])
        oids = {
            int(side.name)
            for c in conjuncts
            if isinstance(c, exp.EQ) and isinstance(c.this, exp.Column) and c.this.name.lower() == "attrelid"
            for side in [c.expression]
            if isinstance(side, exp.Literal) and side.name.isdigit()
        }
        if not oids:
            return None
        found |= oids
    return found or None


def _relation_key(name: str, schema: str) -> str | None:
    if schema in ("", "pg_catalog") and name in _RELATIONS:
        return name
    if schema == "information_schema" and name in _INFORMATION_SCHEMA:
        return f"information_schema_{name}"
    return None


def _is_system_function(f: exp.Func) -> bool:
    if isinstance(f, exp.CurrentUser | exp.SessionUser | exp.CurrentSchema | exp.CurrentVersion):
        return True
    name = (f.name if isinstance(f, exp.Anonymous) else f.sql_name()).lower()
    return name in _NULL_FUNCTIONS | _TRUE_FUNCTIONS | _FALSE_FUNCTIONS | _ZERO_FUNCTIONS or name in (
        "version", "current_database", "current_catalog", "current_schema", "current_schemas", "pg_backend_pid",
        "getdatabaseencoding", "pg_encoding_to_char", "pg_get_userbyid", "format_type", "current_setting",
        "pg_size_pretty", "to_regtype", "to_regclass",
    )  # fmt: skip


def _type_name(to: exp.Expr) -> str | None:
    """The lower-case name of a cast's PostgreSQL-only target type, or None when sqlglot knows the type."""
    if isinstance(to, exp.ObjectIdentifier):
        return to.name.lower()
    if isinstance(to, exp.DataType):
        if to.this == exp.DataType.Type.NAME:
            return "name"
        if to.this == exp.DataType.Type.USERDEFINED:
            kind = to.args.get("kind")
            return kind.name.lower() if kind is not None else None
        if to.this == exp.DataType.Type.ARRAY and to.expressions and _type_name(to.expressions[0]):
            return None  # an array of a PostgreSQL type: the query reads an always-empty relation anyway
    return None


def _lookup(table: str, column: str, oid: exp.Expr) -> exp.Expr:
    return exp.Subquery(
        this=exp.select(column).from_(table).where(exp.EQ(this=exp.column("oid"), expression=oid.copy())).limit(1)
    )


def _operator(node: exp.Operator) -> exp.Expr:
    op = str(node.args.get("operator", "")).split(".")[-1]
    left, right = node.this, node.expression
    made: dict[str, exp.Expr] = {
        "~": exp.RegexpLike(this=left, expression=right),
        "!~": exp.Not(this=exp.RegexpLike(this=left, expression=right)),
        "~*": exp.RegexpILike(this=left, expression=right),
        "!~*": exp.Not(this=exp.RegexpILike(this=left, expression=right)),
        "=": exp.EQ(this=left, expression=right),
        "<>": exp.NEQ(this=left, expression=right),
    }
    return made.get(op, node)


def _pg_names(tree: exp.Expr) -> list[str]:
    """The output column names PostgreSQL gives the query's select list; unnamed items get one as alias."""
    select = tree
    while isinstance(select, exp.SetOperation):
        select = select.this
    names = []
    for i, item in enumerate(select.expressions):
        if isinstance(item, exp.Alias | exp.Star) or (isinstance(item, exp.Column) and item.is_star):
            names.append(item.alias_or_name)
            continue
        name = _pg_name(item)
        names.append(name)
        select.expressions[i].replace(exp.alias_(item.copy(), name, quoted=True))
    return names


def _pg_name(item: exp.Expr) -> str:
    e: exp.Expr = item
    while isinstance(e, exp.Cast | exp.Paren | exp.Collate):
        inner = e.this
        if isinstance(e, exp.Cast) and not isinstance(inner, exp.Column | exp.Func | exp.Dot | exp.Cast | exp.Paren):
            return _type_name(e.args["to"]) or e.args["to"].sql(dialect="postgres").lower()
        e = inner
    if isinstance(e, exp.Dot) and isinstance(e.expression, exp.Func):
        e = e.expression
    if isinstance(e, exp.Column):
        return e.name
    if isinstance(e, exp.Anonymous):
        return e.name.lower()
    if isinstance(e, exp.CurrentUser | exp.SessionUser | exp.CurrentSchema):
        return {exp.CurrentUser: "current_user", exp.SessionUser: "session_user"}.get(type(e), "current_schema")
    if isinstance(e, exp.CurrentVersion):
        return "version"
    if isinstance(e, exp.Case):
        return "case"
    if isinstance(e, exp.Func) and not isinstance(e, exp.Binary | exp.Predicate):
        return e.sql_name().lower()
    return "?column?"


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return out


def _category(t: pgtypes.PgType) -> str:
    if t in (pgtypes.INT2, pgtypes.INT4, pgtypes.INT8, pgtypes.FLOAT4, pgtypes.FLOAT8, pgtypes.NUMERIC, pgtypes.OID):
        return "N"
    if t in (pgtypes.TEXT, pgtypes.VARCHAR, pgtypes.NAME, pgtypes.BPCHAR, pgtypes.UNKNOWN):
        return "S"
    if t in (pgtypes.DATE, pgtypes.TIME, pgtypes.TIMESTAMP, pgtypes.TIMESTAMPTZ):
        return "D"
    return {pgtypes.BOOL: "B", pgtypes.INTERVAL: "T"}.get(t, "U")


_DYNAMIC = {"pg_class", "pg_attribute", "pg_tables", "pg_settings", "information_schema_tables"}
_DYNAMIC |= {"information_schema_columns"}
_COLUMN_RELATIONS = {"pg_attribute", "information_schema_columns"}
_NO_FLAGS = ("hasindexes", "hasrules", "hastriggers", "rowsecurity")


def _insert(db: duckdb.DuckDBPyConnection, rel: str, rows: list[dict[str, Any]]) -> None:
    """Inserts rows (columns not named are NULL) into a catalog relation."""
    if rows:
        cols = list(rows[0])
        names, marks = ", ".join(f'"{c}"' for c in cols), ", ".join("?" for _ in cols)
        db.executemany(f'INSERT INTO "pgc_{rel}" ({names}) VALUES ({marks})', [[r[c] for c in cols] for r in rows])


def _class_row(name: str, oid: int, natts: int) -> dict[str, Any]:
    flags = ("relhasindex", "relisshared", "relhasrules", "relhastriggers", "relhassubclass", "relrowsecurity",
             "relforcerowsecurity", "relispartition")  # fmt: skip
    return {
        "oid": oid, "relname": name, "relnamespace": PUBLIC_OID, "reltype": 0, "reloftype": 0, "relowner": OWNER_OID,
        "relam": HEAP_OID, "relfilenode": oid, "reltablespace": 0, "relpages": 0, "reltuples": -1, "relallvisible": 0,
        "reltoastrelid": 0, "relpersistence": "p", "relkind": "r", "relnatts": natts, "relchecks": 0,
        "relispopulated": True, "relreplident": "d", "relrewrite": 0, **dict.fromkeys(flags, False),
    }  # fmt: skip


def _attribute_row(relid: int, num: int, column: Column) -> dict[str, Any]:
    t = pgtypes.pg_type(column.type)
    fixed = 0 < t.size <= 8
    flags = ("attnotnull", "atthasdef", "atthasmissing", "attisdropped")
    return {
        "attrelid": relid, "attname": column.name, "atttypid": t.oid, "attstattarget": -1, "attlen": t.size,
        "attnum": num, "attndims": 0, "attcacheoff": -1, "atttypmod": -1, "attbyval": fixed, "attalign": "i",
        "attstorage": "p" if fixed else "x", "attcompression": "", "attidentity": "", "attgenerated": "",
        "attislocal": True, "attinhcount": 0, "attcollation": 100 if t is pgtypes.TEXT else 0,
        **dict.fromkeys(flags, False),
    }  # fmt: skip


def _type_row(t: pgtypes.PgType) -> dict[str, Any]:
    textual = t in (pgtypes.TEXT, pgtypes.VARCHAR, pgtypes.NAME, pgtypes.BPCHAR)
    return {
        "oid": t.oid, "typname": t.name, "typnamespace": CATALOG_OID, "typowner": OWNER_OID, "typlen": t.size,
        "typbyval": 0 < t.size <= 8, "typtype": "b", "typcategory": _category(t), "typisdefined": True,
        "typdelim": ",", "typrelid": 0, "typelem": 0, "typarray": 0, "typcollation": 100 if textual else 0,
        "typbasetype": 0, "typtypmod": -1, "typndims": 0, "typnotnull": False,
    }  # fmt: skip
