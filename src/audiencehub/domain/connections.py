"""Flow Service base connections: the connection specs audiencehub knows and the rules of their params.

A base connection names a connection spec (AEP's fixed ids for Amazon S3, Google Cloud Storage and
SFTP, and the HTTP API streaming inlet), an authentication spec within it (``auth.specName``) and
that spec's ``auth.params``. Params marked secret are sealed at rest and masked in every answer.
Validation messages name a param and, for params that are not secret, its value; a secret's value is
never repeated.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from audiencehub.domain.audiences import CloudType
from audiencehub.domain.paths import shown, validate_relative_path

MASK = "********"
"""What answers show instead of a secret param's value; sent back in a PATCH, it keeps the stored value."""

S3_SPEC_ID = "ecadc60c-7455-4d87-84dc-2a0e293d997b"
GCS_SPEC_ID = "32e8f412-cdf7-464c-9885-78184cb113fd"
SFTP_SPEC_ID = "b7bf2577-4520-42c9-bae9-cad01560f7bc"
HTTP_API_SPEC_ID = "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb"
INLET_ID = "inletId"
"""The param of an HTTP API connection that names its inlet: ``POST /collection/{inletId}``; set by the server."""
GCS_XML_ENDPOINT = "https://storage.googleapis.com"
BUCKET = re.compile(r"[a-z0-9][a-z0-9._\-]{1,220}[a-z0-9]")
REGION = re.compile(r"[a-z]{2,}(-[a-z0-9]+)*")
HOST = re.compile(r"[A-Za-z0-9_.\-:\[\]]{1,253}")


@dataclass(frozen=True)
class Param:
    name: str
    kind: type = str
    required: bool = False
    secret: bool = False
    aliases: tuple[str, ...] = ()
    default: Any = None
    generated: bool = False
    """Set by the server (an inlet's id): refused in a create, kept unchanged by a PATCH."""


@dataclass(frozen=True)
class AuthSpec:
    name: str
    """The canonical ``auth.specName``; matched case-insensitively."""
    params: tuple[Param, ...]
    aliases: tuple[str, ...] = ()

    def param(self, name: str) -> Param | None:
        low = name.lower()
        return next((p for p in self.params if low in (p.name.lower(), *(a.lower() for a in p.aliases))), None)

    @property
    def secret_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.params if p.secret)


@dataclass(frozen=True)
class ConnectionSpec:
    id: str
    name: str
    cloud_type: CloudType | None
    """The files' cloud of a source spec; None for a streaming inlet, which has no files to read."""
    auth_specs: tuple[AuthSpec, ...]
    version: str = "1.0"
    inlet: bool = False
    """Data is sent to it (``POST /collection/{inletId}``) instead of read from it: no source backend."""

    @property
    def kind(self) -> str:
        """What messages call its connections: the cloud (S3, GCS, SFTP) or the spec's name (http-api)."""
        return self.cloud_type.value if self.cloud_type is not None else self.name

    def auth_spec(self, name: str) -> AuthSpec | None:
        low = name.strip().lower()
        return next((a for a in self.auth_specs if low in (a.name.lower(), *(x.lower() for x in a.aliases))), None)


_SCOPING = (Param("bucketName"), Param("folderPath"))
_SFTP_COMMON = (
    Param("host", required=True),
    Param("port", kind=int, default=22),
    Param("userName", required=True, aliases=("username",)),
    Param("folderPath"),
    Param("knownHostKey"),
    Param("disableHostKeyChecking", kind=bool, default=False),
)

SPECS: tuple[ConnectionSpec, ...] = (  # the file sources: one backend module each (wiring.backend_for)
    ConnectionSpec(
        S3_SPEC_ID,
        "amazon-s3",
        CloudType.S3,
        (
            AuthSpec(
                "Access Key",
                (
                    Param("s3AccessKey", required=True, secret=True),
                    Param("s3SecretKey", required=True, secret=True),
                    Param("s3SessionToken", secret=True),
                    Param("serviceUrl"),
                    Param("region"),
                    *_SCOPING,
                ),
                aliases=("Basic Authentication for S3", "AmazonS3Auth"),
            ),
        ),
    ),
    ConnectionSpec(
        GCS_SPEC_ID,
        "google-cloud",
        CloudType.GCS,
        (
            AuthSpec(
                "Basic Authentication for google-cloud",
                (
                    Param("accessKeyId", required=True, secret=True),
                    Param("secretAccessKey", required=True, secret=True),
                    Param("serviceUrl"),
                    *_SCOPING,
                ),
                aliases=("HMAC Key Authentication for google-cloud",),
            ),
            AuthSpec(
                "Service Account Authentication for google-cloud",
                (Param("serviceAccountKey", kind=dict, required=True, secret=True), Param("serviceUrl"), *_SCOPING),
                aliases=("Service Account Key",),
            ),
        ),
    ),
    ConnectionSpec(
        SFTP_SPEC_ID,
        "sftp",
        CloudType.SFTP,
        (
            AuthSpec(
                "Basic Authentication for sftp",
                (*_SFTP_COMMON, Param("password", required=True, secret=True)),
                aliases=("Basic Authentication for SFTP", "Password Authentication for sftp"),
            ),
            AuthSpec(
                "SSH PublicKey Authentication for sftp",
                (
                    *_SFTP_COMMON,
                    Param("privateKeyContent", required=True, secret=True),
                    Param("passPhrase", secret=True, aliases=("passphrase",)),
                ),
                aliases=("SSH Public Key Authentication for sftp",),
            ),
        ),
    ),
)


DATA_TYPES = ("xdm", "raw")

INLET_SPECS: tuple[ConnectionSpec, ...] = (
    ConnectionSpec(
        HTTP_API_SPEC_ID,
        "http-api",
        None,
        (
            AuthSpec(
                "Streaming Connection",
                (
                    Param("sourceId"),
                    Param("dataType", default="xdm"),
                    Param("name"),
                    # NOTE: AEP's default: an inlet accepts data without a token unless this is true.
                    Param("authenticationRequired", kind=bool, default=False),
                    Param(INLET_ID, generated=True),
                ),
            ),
        ),
        inlet=True,
    ),
)
ALL_SPECS = SPECS + INLET_SPECS


def find_spec(spec_id: str) -> ConnectionSpec | None:
    return next((s for s in ALL_SPECS if s.id == spec_id.strip().lower()), None)


def new_inlet_id() -> str:
    """An inlet id as AEP shows them: 64 hex digits (256 random bits: it routes unauthenticated data)."""
    return secrets.token_hex(32)


def complete_inlet(params: ConnectionParams, connection_name: str, inlet_id: str) -> None:
    """A new inlet's params as AEP answers them: ``name`` and ``sourceId`` default to the connection's name."""
    params.public.setdefault("name", connection_name)
    params.public.setdefault("sourceId", params.public["name"])
    params.public[INLET_ID] = inlet_id


@dataclass
class ConnectionParams:
    """Validated ``auth.params``, split into what may be shown and what is sealed."""

    public: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=dict)

    @property
    def merged(self) -> dict[str, Any]:
        return {**self.public, **self.secrets}


def validate_params(
    spec: ConnectionSpec, auth: AuthSpec, raw: Any, *, keep: dict[str, Any] | None = None
) -> ConnectionParams:
    """``raw`` (``auth.params``) checked against ``auth``: ValueError names the param and what is wrong.

    ``keep`` holds the stored secrets of a connection being updated: a secret sent back as
    :data:`MASK` keeps its stored value.
    """
    if not isinstance(raw, dict):
        raise ValueError(f"auth.params: must be a JSON object, got {type(raw).__name__}")
    out = ConnectionParams()
    for key, value in raw.items():
        param = auth.param(str(key))
        if param is None:
            known = ", ".join(p.name for p in auth.params)
            raise ValueError(f"auth.params.{key}: not a param of {auth.name!r} (known: {known})")
        if param.name in out.merged:
            raise ValueError(f"auth.params.{key}: given twice (as {param.name})")
        if param.generated:
            if not keep or keep.get(param.name) != value:
                raise ValueError(f"auth.params.{param.name}: set by the server; it cannot be given or changed")
            out.public[param.name] = value
            continue
        if param.secret and value == MASK:
            if not keep or param.name not in keep:
                raise ValueError(
                    f"auth.params.{param.name}: {MASK!r} stands for a stored secret and none is stored; send the value"
                )
            value = keep[param.name]
        target = out.secrets if param.secret else out.public
        target[param.name] = _coerce(param, value)
    for param in auth.params:
        if param.name not in out.merged:
            if param.generated and keep and param.name in keep:
                out.public[param.name] = keep[param.name]
            elif param.required:
                raise ValueError(f"auth.params.{param.name}: required for {auth.name!r}")
            if param.default is not None:
                out.public[param.name] = param.default
    folder = out.public.get("folderPath")
    if folder is not None:
        out.public["folderPath"] = normalize_folder(folder, absolute_ok=spec.cloud_type is CloudType.SFTP)
    _check_rules(spec, out.merged)
    return out


def _coerce(param: Param, value: Any) -> Any:
    where = f"auth.params.{param.name}"
    said = "" if param.secret else f", got {value!r}"
    if param.kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ValueError(f"{where}: must be true or false{said}")
    if param.kind is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"{where}: must be an integer{said}")
        text = str(value).strip()
        if not (text.isascii() and text.isdigit()):
            raise ValueError(f"{where}: must be an integer{said}")
        return int(text)
    if param.kind is dict:
        if isinstance(value, dict | str) and value:
            return value
        raise ValueError(f"{where}: must be a JSON object or its text")
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: must be a non-empty string{said if not isinstance(value, str) else ''}")
    return value.strip() if not param.secret else value


def _check_rules(spec: ConnectionSpec, params: dict[str, Any]) -> None:
    data_type = str(params.get("dataType"))
    if spec.inlet and data_type not in DATA_TYPES:
        raise ValueError(f"auth.params.dataType: must be xdm or raw, got {shown(data_type)}")
    if spec.inlet and data_type == "raw":
        raise ValueError(
            "auth.params.dataType: raw needs Data Prep mappings, which audiencehub does not have; send XDM "
            "messages to an xdm connection"
        )
    url = params.get("serviceUrl")
    if url is not None:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (raises on a port that is not a number)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"auth.params.serviceUrl: must be an http:// or https:// URL, got {shown(url)}")
    bucket = params.get("bucketName")
    if bucket is not None and not BUCKET.fullmatch(bucket):
        raise ValueError(
            f"auth.params.bucketName: {shown(bucket)} is not a bucket name (3 to 222 lowercase letters, digits, "
            "dots, dashes or underscores)"
        )
    region = params.get("region")
    if region is not None and not REGION.fullmatch(region):
        raise ValueError(f"auth.params.region: {shown(region)} is not a region name (such as eu-west-1)")
    if spec.cloud_type is CloudType.SFTP:
        if not HOST.fullmatch(params["host"]):
            raise ValueError(f"auth.params.host: {shown(params['host'])} is not a host name or address")
        if not 1 <= params["port"] <= 65535:
            raise ValueError(f"auth.params.port: must be from 1 to 65535, got {params['port']}")
        if not params.get("knownHostKey") and not params.get("disableHostKeyChecking"):
            raise ValueError(
                "auth.params.knownHostKey: required (the server's public host key, one OpenSSH line such as "
                "'ssh-ed25519 AAAA...'); set disableHostKeyChecking to true to connect without checking it"
            )


def normalize_folder(folder: str, *, absolute_ok: bool) -> str:
    """A connection's ``folderPath`` without surrounding slashes (SFTP keeps a leading one: an absolute path)."""
    lead = "/" if absolute_ok and folder.startswith("/") else ""
    body = folder.strip("/")
    try:
        key = validate_relative_path(body, allow_empty=True)
    except ValueError as exc:
        raise ValueError(f"auth.params.folderPath: {exc}") from exc
    return lead + key if key else lead


def source_key(path: str) -> str:
    """A ``sourceSpec.path`` under a connection's root: relative, and a leading "/" means the root itself."""
    return validate_relative_path(path.lstrip("/"))
