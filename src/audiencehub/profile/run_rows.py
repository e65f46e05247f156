"""The SQL of an external audience run's accepted rows, as both profile stores read them.

Portable SQL (the lake store's statements run on Spark too): the rows of the run's validated files that passed
their checks, keyed by their first non-empty identity (``ns``, ``id``), with the delete flag, each identity column
as text, the payload and, with ``place``, the row's place in the run (file, row number in the file).
"""

from __future__ import annotations

from audiencehub.domain.audiences import FieldType
from audiencehub.engines.ingest_sql import CHECK, INTERNAL, field_column, ident, lit, path_list
from audiencehub.profile.base import AudienceRows
from audiencehub.profile.columns import DELETE, FILE, ID, NS, RN


def identity_text(n: int) -> str:
    """The column of identity column ``n`` of the run's rows, as text."""
    return f"{INTERNAL}i{n}"


def identity_unknown(n: int) -> str:
    """The column that says identity ``n`` of a row is not in the store yet."""
    return f"{INTERNAL}u{n}"


def delete_expr(column: str, ftype: FieldType) -> str:
    """Whether the run's delete column says to remove the row's membership: 1, true, yes or y."""
    col = ident(field_column(column))
    if ftype in (FieldType.NUMBER, FieldType.LONG, FieldType.INTEGER):
        return f"coalesce({col} = 1, false)"
    if ftype is FieldType.BOOLEAN:
        return f"coalesce({col}, false)"
    return f"coalesce(lower(trim(CAST({col} AS VARCHAR))) IN ('1', 'true', 'yes', 'y'), false)"


def accepted_sql(rows: AudienceRows, *, place: bool = True) -> str:
    """The run's accepted rows (see the module's docstring), one SELECT per file, UNION ALL."""
    cols = [ident(field_column(i.column)) for i in rows.identities]
    ns = (
        "CASE "
        + " ".join(f"WHEN {c} IS NOT NULL THEN {lit(i.namespace)}" for c, i in zip(cols, rows.identities, strict=True))
        + " END"
    )
    pid = "coalesce(" + ", ".join(f"CAST({c} AS VARCHAR)" for c in cols) + ")"
    delete = delete_expr(*rows.delete_column) if rows.delete_column else "false"
    extra = "".join(f", CAST({c} AS VARCHAR) AS {identity_text(n)}" for n, c in enumerate(cols))
    payload = "".join(f", {ident(field_column(name))} AS {ident(name)}" for name, _ in rows.payload)
    return " UNION ALL ".join(
        f"SELECT {ns} AS {NS}, {pid} AS {ID}, {delete} AS {DELETE}{extra}{payload}"
        + (f", {n} AS {FILE}, file_row_number AS {RN} " if place else " ")
        + f"FROM read_parquet({path_list([path])}{', file_row_number = true' if place else ''}) "
        f"WHERE {CHECK} IS NULL"
        for n, path in enumerate(rows.files)
    )
