"""External audiences: the request shapes of seed 003 and the rules of its property tables."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    field_validator,
    model_validator,
)

from audiencehub.domain.namespaces import CODE, IdType, Namespace, custom_namespace, find_standard
from audiencehub.domain.paths import validate_relative_path


class FieldType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    LONG = "long"
    INTEGER = "integer"
    DATE = "date"
    DATETIME = "datetime"
    BOOLEAN = "boolean"


class CloudType(StrEnum):
    S3 = "S3"
    DLZ = "DLZ"
    GCS = "GCS"
    SFTP = "SFTP"


NEEDS_CONNECTION = frozenset({CloudType.S3, CloudType.GCS, CloudType.SFTP})

# Field names become Parquet columns and SQL identifiers: letters, digits and underscores only.
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Names starting with this are the engine's and the profile store's own columns (``__ah_check``,
# ``__ah_profile_id``, ...), so that no field name can collide with them.
RESERVED_PREFIX = "__"
LABEL = re.compile(r"[A-Za-z0-9_\-]+/[A-Za-z0-9_.\-]+")
DEFAULT_NAMESPACE = "CustomerAudienceUpload"
DELETE_FIELD = "delete"
TTL_MIN, TTL_MAX, TTL_DEFAULT = 1, 90, 30
STORED_NAMESPACE = RESERVED_PREFIX + "ah_namespace"
"""The key of a stored field that names the custom namespace its identityNs resolved to (id and idType),
so that a run applies that namespace's rule; answers never show it (:func:`public_field`)."""


def _ttl(value: Any) -> Any:
    # NOTE: seed 003 sends ttlInDays as the string "40" and AEP echoes it as the integer 40.
    if isinstance(value, bool):
        raise ValueError(f"must be an integer from {TTL_MIN} to {TTL_MAX}, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?\d+", text):
            raise ValueError(f"must be an integer from {TTL_MIN} to {TTL_MAX}, got {value!r}")
        return int(text)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


TtlInDays = Annotated[int, BeforeValidator(_ttl), Field(ge=TTL_MIN, le=TTL_MAX, strict=True)]


def _labels(values: list[str]) -> list[str]:
    for label in values:
        if not LABEL.fullmatch(label):
            raise ValueError(f"label {label!r} is not of the form category/name (e.g. core/C1)")
    return values


Labels = Annotated[list[str], Field(max_length=100)]


class AudienceField(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    type: FieldType
    identityNs: str | None = None
    labels: Labels | None = None
    _custom: Namespace | None = PrivateAttr(default=None)
    _stored: bool = PrivateAttr(default=False)

    @model_validator(mode="wrap")
    @classmethod
    def _stored_namespace(cls, data: Any, handler: ModelWrapValidatorHandler[AudienceField]) -> AudienceField:
        stored = None
        if isinstance(data, dict) and STORED_NAMESPACE in data:
            data = dict(data)
            stored = data.pop(STORED_NAMESPACE)
        field = handler(data)
        if stored is not None:
            field._stored = True
            try:
                ns_id, id_type = int(stored["id"]), IdType(stored["idType"])
            except (TypeError, KeyError, ValueError):
                raise ValueError(f"{STORED_NAMESPACE}: is not a field that can be sent here") from None
            if field.identityNs is not None:
                field._custom = custom_namespace(field.identityNs, ns_id, id_type)
        return field

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not FIELD_NAME.fullmatch(v):
            raise ValueError(
                f"field name {v!r} must start with a letter or underscore and hold only letters, "
                "digits and underscores (at most 128)"
            )
        if v.startswith(RESERVED_PREFIX):
            raise ValueError(
                f"field name {v!r} must not start with {RESERVED_PREFIX!r} (reserved for internal columns)"
            )
        return v

    @field_validator("identityNs")
    @classmethod
    def _namespace(cls, v: str | None) -> str | None:
        """A standard code, made canonical; any other well-formed code is a custom namespace that the
        service looks up in the audience's sandbox (``NamespaceService.resolve``)."""
        if v is None:
            return None
        ns = find_standard(v)
        if ns is not None:
            return ns.code
        if not CODE.fullmatch(v):
            raise ValueError(unknown_namespace(v))
        return v

    @field_validator("labels")
    @classmethod
    def _field_labels(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _labels(v)

    @property
    def namespace(self) -> Namespace | None:
        """The identity namespace whose rule checks this field: a custom one once resolved, else a standard one."""
        if self._custom is not None:
            return self._custom
        return find_standard(self.identityNs) if self.identityNs else None

    @property
    def carries_stored_namespace(self) -> bool:
        """True when the input held :data:`STORED_NAMESPACE`: a request must not (only stored fields do)."""
        return self._stored

    def use_namespace(self, ns: Namespace) -> None:
        """Names ``ns`` (resolved from ``identityNs``) by its canonical code and applies its rule."""
        self.identityNs = ns.code
        self._custom = ns if ns.custom else None

    def stored(self) -> dict[str, Any]:
        """The field as the audience's spec keeps it: its public form, plus the custom namespace it resolved to."""
        body = self.model_dump(exclude_none=True, mode="json")
        if self._custom is not None:
            body[STORED_NAMESPACE] = {"id": self._custom.id, "idType": self._custom.id_type.value}
        return body


def unknown_namespace(code: str) -> str:
    return f"identityNs {code!r} is not a known identity namespace"


def public_field(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored field as answers show it (without :data:`STORED_NAMESPACE`)."""
    return {k: v for k, v in stored.items() if k != STORED_NAMESPACE}


class SourceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    type: Literal["file", "folder"]
    sourceType: Literal["Cloud Storage"] | None = None
    cloudType: CloudType | None = None
    baseConnectionId: str | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        validate_relative_path(v)
        return v

    @model_validator(mode="after")
    def _connection(self) -> SourceParams:
        if self.cloudType in NEEDS_CONNECTION and not self.baseConnectionId:
            raise ValueError(f"baseConnectionId is required when cloudType is {self.cloudType.value}")
        return self

    @property
    def resolved_cloud_type(self) -> CloudType | None:
        """DLZ when neither a cloud type nor a connection is named; None when a connection decides."""
        if self.cloudType is not None:
            return self.cloudType
        return None if self.baseConnectionId else CloudType.DLZ


class SourceSpec(BaseModel):
    """``sourceSpec`` as sent: seed 003 wraps it in ``params`` on create and shows it bare on PATCH."""

    params: SourceParams
    wrapped: bool = True

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        if isinstance(data, dict) and "params" not in data and "wrapped" not in data:
            return {"params": data, "wrapped": False}
        if isinstance(data, dict) and "params" in data and "wrapped" not in data:
            extra = set(data) - {"params"}
            if extra:
                raise ValueError(f"unexpected keys beside params: {sorted(extra)}")
            return {"params": data["params"], "wrapped": True}
        return data

    def public(self) -> dict[str, Any]:
        body = self.params.model_dump(exclude_none=True, mode="json")
        return {"params": body} if self.wrapped else body


class AudienceCreate(BaseModel):
    """``POST /external-audience/``. Unknown top-level keys are ignored, as AEP does."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=256)
    description: str | None = Field(default=None, max_length=4096)
    customAudienceId: str | None = Field(default=None, min_length=1, max_length=256)
    fields: list[AudienceField] = Field(min_length=1, max_length=500)
    sourceSpec: SourceSpec
    ttlInDays: TtlInDays = TTL_DEFAULT
    labels: Labels | None = None
    audienceType: Literal["people"] = "people"
    originName: Literal["CUSTOM_UPLOAD"]
    namespace: str = Field(default=DEFAULT_NAMESPACE, pattern=r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
    tags: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("name must not be blank")
        return v

    @field_validator("labels")
    @classmethod
    def _audience_labels(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _labels(v)

    @model_validator(mode="after")
    def _fields(self) -> AudienceCreate:
        seen: set[str] = set()
        for field in self.fields:
            key = field.name.lower()
            if key in seen:
                raise ValueError(f"fields: the name {field.name!r} appears more than once")
            seen.add(key)
        if not any(f.identityNs for f in self.fields):
            raise ValueError("fields: at least one field must name an identityNs (e.g. Email, ECID, CRMID)")
        return self

    def details(self) -> dict[str, Any]:
        """``operationDetails``: what was sent, normalized (canonical namespaces, integer ttl)."""
        body = self.model_dump(exclude_unset=True, exclude_none=True, mode="json", exclude={"sourceSpec"})
        body["fields"] = [f.model_dump(exclude_none=True, mode="json") for f in self.fields]
        body["sourceSpec"] = self.sourceSpec.public()
        if "ttlInDays" in self.model_fields_set:
            body["ttlInDays"] = self.ttlInDays
        return body


class FieldLabelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    labels: Labels

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: list[str]) -> list[str]:
        return _labels(v)


class AudiencePatch(BaseModel):
    """``PATCH /external-audience/{id}``: only what seed 003 lists may change."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=4096)
    labels: Labels | None = None
    fields: list[FieldLabelPatch] | None = None
    ttlInDays: TtlInDays | None = None

    @field_validator("labels")
    @classmethod
    def _audience_labels(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _labels(v)


class RunCreate(BaseModel):
    """``POST /external-audience/{id}/runs``."""

    model_config = ConfigDict(extra="forbid")

    dataFilterStartTime: int = Field(ge=0)
    dataFilterEndTime: int | None = Field(default=None, ge=0)
    differentialIngestion: bool | None = None
    errorThresholdPercent: float = Field(default=5.0, ge=0, le=100)

    @model_validator(mode="after")
    def _window(self) -> RunCreate:
        end = self.dataFilterEndTime
        if end is not None and end < self.dataFilterStartTime:
            raise ValueError(f"dataFilterEndTime ({end}) is before dataFilterStartTime ({self.dataFilterStartTime})")
        return self
