"""The embedded profile store's table names, internal columns (prefix ``__ah_``, which field names cannot have) and
the SQL that reads a membership table as it stands now."""

from __future__ import annotations

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


def fragment_table_for(dataset_id: str) -> str:
    return "f_" + "".join(c for c in dataset_id.lower() if c.isalnum())


def table_for(audience_id: str) -> str:
    return "m_" + "".join(c for c in audience_id.lower() if c.isalnum())


def effective(tbl: str, ttl_days: int, at: str = "now()") -> str:
    """The audience's memberships with their status as read at ``at`` (SQL; default now): a membership past the
    ttl reads exited."""
    ttl = f"to_days({int(ttl_days)})"
    expired = f"({STATUS} IN ('realized', 'existing') AND {QUALIFIED_AT} < {at} - {ttl})"
    return (
        f"SELECT * REPLACE (CASE WHEN {expired} THEN 'exited' ELSE {STATUS} END AS {STATUS}, "
        f"CASE WHEN {expired} THEN {QUALIFIED_AT} + {ttl} ELSE {QUALIFIED_AT} END AS {QUALIFIED_AT}) "
        f"FROM {ident(tbl)}"
    )
