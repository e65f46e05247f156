"""The embedded profile store's table names, internal columns (prefix ``__ah_``, which field names cannot have) and
the SQL that reads a membership table as it stands now."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from audiencehub.engines.ingest_sql import INTERNAL, ident

# Membership tables (``m_{audience id hex}``): these first, then the audience's payload columns.
PROFILE_ID = INTERNAL + "profile_id"
STATUS = INTERNAL + "status"
QUALIFIED_AT = INTERNAL + "qualified_at"
RUN_ID = INTERNAL + "run_id"
MEMBER_COLUMNS = (PROFILE_ID, STATUS, QUALIFIED_AT, RUN_ID)
"""The membership table's own columns, first in every such table; the payload columns follow."""
# The temp table ``resolved`` of a run: one row per member-to-be, with the payload under the field
# names and these internal columns (plus ``__ah_i{n}`` and ``__ah_u{n}`` per identity column).
NS = INTERNAL + "ns"  # the namespace of the row's first non-empty identity
ID = INTERNAL + "id"  # that identity
DELETE = INTERNAL + "delete"  # the row asks to exit its member
FILE = INTERNAL + "file"  # the index of the row's file in the run
RN = INTERNAL + "rn"  # the row's number in its file
NEW = INTERNAL + "new"  # none of the row's identities is known: a new profile


# Fragment tables (``f_{dataset id hex}``): the profile (or entity) key, then these, then one column per leaf.
BATCH = INTERNAL + "batch"
TS = INTERNAL + "ts"
SEQ = INTERNAL + "seq"
ENTITY_NS = INTERNAL + "ns"
ENTITY_ID = INTERNAL + "id"
IDS = INTERNAL + "ids"
XFILE = INTERNAL + "file"
XRN = INTERNAL + "rn"
MEMBERSHIP_LEAF = "segmentMembership"
"""Records' own memberships go to ``fragment_memberships`` (one row per namespace and segment), not a column."""


RANK = INTERNAL + "rank"
"""A fragment row's dataset weight (:func:`dataset_rank`), added by the reader that merges."""
MERGE_KEY = INTERNAL + "key"
"""A fragment row's place in the newest-value merge (see :func:`merge_key`); ``arg_max(value, MERGE_KEY)`` wins."""
BATCH_ORDER = INTERNAL + "bo"
"""The relation :func:`batch_order` defines and the column of it that :func:`merge_key` reads."""


def dataset_rank(dataset_id: str, precedence: Sequence[str] | None) -> int:
    """The dataset's weight in a merge by dataset precedence (highest first): earlier datasets weigh more, datasets
    the list leaves out weigh 0; 0 for every dataset in a merge by time."""
    order = list(precedence or ())
    if len(order) >= 64:  # domain/merge_policies.MAX_ORDER is 50; the merge key holds 6 bits
        raise ValueError(f"a merge by dataset precedence weighs at most 63 datasets, got {len(order)}")
    return len(order) - order.index(dataset_id) if dataset_id in order else 0


def batch_order(tables: Iterable[str], table: Callable[[str], str] = ident) -> str:
    """A relation (``BATCH``, ``BATCH_ORDER``): each batch id the fragment tables hold and its place in id order.
    ``table`` turns a table name into the SQL that reads it (the lake store's files)."""
    # DISTINCT: with one table there is no UNION to drop repeats, and each repeat would multiply the join on BATCH.
    found = " UNION ".join(f"SELECT DISTINCT {BATCH} FROM {table(t)}" for t in tables) or f"SELECT NULL AS {BATCH}"
    return f"SELECT {BATCH}, CAST(row_number() OVER (ORDER BY {BATCH}) AS HUGEINT) AS {BATCH_ORDER} FROM ({found})"


def merge_key() -> str:
    """The merge key of a fragment row that carries its dataset's weight as ``RANK`` (:func:`dataset_rank`) and is
    joined (``USING (BATCH)``) to :func:`batch_order`: weight, then received time, batch id, row in batch; the
    greatest key wins.

    One HUGEINT compares far faster than the equivalent STRUCT: weight in bits 118-123 (merge policies name at most
    50 datasets), microseconds since 1970 in bits 64-117 (until the year 2541), the batch's place in bits 32-63, the
    row in bits 0-31. Every reader of merged values (lookups, segments, exports, the Query Service's profile table)
    orders the same way: :meth:`DuckDBProfileStore.entity` sorts by the same four values.

    Written with products and sums (the same value: the fields do not overlap), which Spark runs on DECIMAL(38, 0);
    it has no shift or OR of DECIMALs."""
    return (
        f"((CAST({RANK} AS HUGEINT) * {_power(118)}) + (CAST(epoch_us({TS}) AS HUGEINT) * {_power(64)}) "
        f"+ ({BATCH_ORDER} * {_power(32)}) + CAST({SEQ} AS HUGEINT))"
    )


def _power(bits: int) -> str:
    return f"CAST('{1 << bits}' AS HUGEINT)"


def fragment_table_for(dataset_id: str) -> str:
    return "f_" + "".join(c for c in dataset_id.lower() if c.isalnum())


def table_for(audience_id: str) -> str:
    return "m_" + "".join(c for c in audience_id.lower() if c.isalnum())


def effective(tbl: str, ttl_days: int, at: str = "now()", table: Callable[[str], str] = ident) -> str:
    """The audience's memberships with their status as read at ``at`` (SQL; default now): a membership past the
    ttl reads exited. ``table`` turns the table's name into the SQL that reads it (the lake store's files)."""
    ttl = f"to_days({int(ttl_days)})"
    expired = f"({STATUS} IN ('realized', 'existing') AND {QUALIFIED_AT} < {at} - {ttl})"
    return (
        f"SELECT * REPLACE (CASE WHEN {expired} THEN 'exited' ELSE {STATUS} END AS {STATUS}, "
        f"CASE WHEN {expired} THEN {QUALIFIED_AT} + {ttl} ELSE {QUALIFIED_AT} END AS {QUALIFIED_AT}) "
        f"FROM {table(tbl)}"
    )
