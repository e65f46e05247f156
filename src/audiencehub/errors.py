"""The error tree: every error knows its AEP error code, HTTP status and title.

One exception handler (``api/errors.py``) turns any :class:`AudiencehubError` into the
problem+json body; services and domain code raise these and never build responses.
Errors that a retry may fix subclass :class:`TransientError`; the job runner retries them.
"""

from __future__ import annotations

from typing import ClassVar


class AudiencehubError(Exception):
    """Base of every error that reaches a user."""

    code: ClassVar[str] = "100970-500"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "INTERNAL_SERVER_ERROR"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class TransientError(AudiencehubError):
    """A failure that a retry with backoff may fix (connection reset, S3 SlowDown)."""

    code = "100970-502"
    status = 502
    title = "BAD_GATEWAY"


class BadRequest(AudiencehubError):
    """The request failed validation; ``detail`` names the field and the value."""

    code = "100910-400"
    status = 400
    title = "BAD_REQUEST"


class InvalidToken(AudiencehubError):
    code = "100911-400"
    status = 400
    title = "BAD_REQUEST"


class MissingHeader(AudiencehubError):
    code = "100920-401"
    status = 401
    title = "UNAUTHORIZED"


class InvalidOrg(AudiencehubError):
    code = "100921-401"
    status = 401
    title = "UNAUTHORIZED"


class ClientNotAllowed(AudiencehubError):
    code = "100922-401"
    status = 401
    title = "UNAUTHORIZED"


class NotFound(AudiencehubError):
    code = "100940-404"
    status = 404
    title = "NOT_FOUND"


class Duplicate(AudiencehubError):
    code = "100950-409"
    status = 409
    title = "DUPLICATE_RESOURCE"


class Unprocessable(AudiencehubError):
    code = "100960-422"
    status = 422
    title = "UNPROCESSABLE_ENTITY"


class PayloadTooLarge(AudiencehubError):
    code = "100910-413"
    status = 413
    title = "PAYLOAD_TOO_LARGE"


class InternalError(AudiencehubError):
    code = "100970-500"
    status = 500
    title = "INTERNAL_SERVER_ERROR"


class IllegalTransition(Exception):
    """A status change that the declared transition table forbids: a bug, never a user error."""


ALL_ERRORS: tuple[type[AudiencehubError], ...] = (
    BadRequest,
    InvalidToken,
    MissingHeader,
    InvalidOrg,
    ClientNotAllowed,
    NotFound,
    Duplicate,
    Unprocessable,
    PayloadTooLarge,
    InternalError,
    TransientError,
)
