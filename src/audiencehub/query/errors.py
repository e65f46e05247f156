"""Query Service errors: a message for the client and the SQLSTATE PostgreSQL would give."""

from __future__ import annotations


class QueryError(Exception):
    """A statement was refused or failed. ``sqlstate`` is PostgreSQL's five-character code:

    42601 syntax error, 42P01 unknown table, 42703 unknown column, 42501 not allowed (file access,
    ATTACH, SET...), 0A000 not supported, 57014 cancelled or timed out, 28P01 bad credentials,
    3D000 unknown database (sandbox), 22000 data error, XX000 internal.
    The message names what was wrong and never holds a server path.
    """

    def __init__(self, message: str, sqlstate: str = "42000") -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
