"""XDM for the Schema Registry: the standard classes and field groups, resolution, and the rules.

Pure: no I/O. A resource is an AEP-shaped JSON document (``$id``, ``meta:altId``, ``definitions``,
``allOf`` of ``$ref``s). :func:`resolve_document` follows a document's ``allOf`` (through a ``lookup``
that the caller provides) and merges every ``properties`` into one tree: the ``xed-full`` form.
Problems raise :class:`XdmInvalid`, whose message names the field path and the value.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

NS = "https://ns.adobe.com"
PROFILE_CLASS = f"{NS}/xdm/context/profile"
EVENT_CLASS = f"{NS}/xdm/context/experienceevent"
SEGMENT_DEFINITION_CLASS = f"{NS}/xdm/context/segmentdefinition"
RECORD = f"{NS}/xdm/data/record"
TIME_SERIES = f"{NS}/xdm/data/time-series"
AUDITABLE = f"{NS}/xdm/common/auditable"
IDENTITY_MAP = f"{NS}/xdm/context/identitymap"
CONTEXT_REF = f"{NS}/xdm/common/extensible#/definitions/@context"
UNION_SUFFIX = "__union"
UNION_TAG = "union"
GLOBAL_LIB_VERSION = "1.50.1"
JSON_SCHEMA = "http://json-schema.org/draft-06/schema#"
INTEGER_TYPES: dict[str, tuple[int, int]] = {
    "byte": (-(2**7), 2**7 - 1),
    "short": (-(2**15), 2**15 - 1),
    "int": (-(2**31), 2**31 - 1),
    "long": (-(2**53) + 1, 2**53 - 1),
}
STRING_FORMATS = frozenset({"date", "date-time", "email", "uri"})
FIELD_NAME = re.compile(r"(?!__)[A-Za-z_][A-Za-z0-9_]{0,127}")
TENANT_ID = re.compile(r"[a-z][a-z0-9]{0,63}")

Lookup = Callable[[str], Mapping[str, Any] | None]
"""The document of a resource by ``$id`` (or altId), or None when there is none."""


class XdmInvalid(ValueError):
    """A resource breaks a rule; the message names the field path and the value."""


@dataclass(frozen=True)
class IdentityField:
    path: tuple[str, ...]
    """("_demoemea", "personID") or ("_id",)."""
    namespace: str
    """The namespace code as the descriptor names it, e.g. "Email"."""
    primary: bool


@dataclass(frozen=True)
class ResolvedSchema:
    """A schema (or a union) with all of its fields: what ingestion, segmentation and exports read."""

    id: str
    """``$id``."""
    alt_id: str
    """``meta:altId``, e.g. ``_demoemea.schemas.0123...`` or ``_xdm.context.profile__union``."""
    title: str
    class_id: str
    """e.g. ``https://ns.adobe.com/xdm/context/profile``."""
    properties: dict[str, Any]
    """The xed-full ``properties``: objects ``{"type":"object","properties":{...}}``, arrays ``{"type":"array",
    "items":{...}}``, maps ``{"type":"object","additionalProperties":{...}}``; strings may carry ``format``
    (date, date-time, email, uri), ``enum``, ``maxLength``, ``pattern``; integers carry ``meta:xdmType``
    (long, int, short, byte)."""
    required: tuple[tuple[str, ...], ...]
    """Paths that must be present (("timestamp",) for events)."""
    identities: tuple[IdentityField, ...]
    profile_enabled: bool
    version: str
    tenant_id: str
    """Without the leading underscore."""

    def field(self, path: tuple[str, ...]) -> dict[str, Any] | None:
        """The definition of the field at ``path`` (through objects only), or None."""
        return field_at(self.properties, path)

    @property
    def primary_identity(self) -> IdentityField | None:
        return next((i for i in self.identities if i.primary), None)


# -- ids -------------------------------------------------------------------------------------------


def tenant_id_for(org_id: str) -> str:
    """The tenant id derived from an org id: lower case, letters and digits only, ``@AdobeOrg`` dropped.

    A ``t`` goes in front when the rest would start with a digit (or be empty): field names start
    with ``_{TENANT_ID}`` and XDM names do not start with a digit after the underscore.
    """
    base = re.sub(r"[^a-z0-9]", "", org_id.lower().removesuffix("@adobeorg"))
    if not base or base[0].isdigit():
        base = "t" + base
    return base[:64]


def check_tenant_id(value: str) -> str:
    if not TENANT_ID.fullmatch(value):
        raise XdmInvalid(
            f"tenant id {value!r} must start with a lower-case letter and hold only lower-case letters and digits "
            "(at most 64)"
        )
    return value


def alt_id_of(resource_id: str) -> str:
    """``https://ns.adobe.com/xdm/context/profile`` → ``_xdm.context.profile`` (AEP's dot notation)."""
    rest = resource_id.removeprefix(NS + "/")
    return "_" + rest.replace("/", ".")


def union_id(class_id: str) -> str:
    return class_id + UNION_SUFFIX


def union_class(ref: str) -> str | None:
    """The class whose union ``ref`` names (as ``$id`` or altId), or None when ``ref`` is no union id."""
    if not ref.endswith(UNION_SUFFIX):
        return None
    base = ref.removesuffix(UNION_SUFFIX)
    if base.startswith("_"):
        base = NS + "/" + base[1:].replace(".", "/")
    return base


# -- field builders for the standard resources ----------------------------------------------------


def _f(title: str, type_: str, xdm: str | None = None, description: str = "", **extra: Any) -> dict[str, Any]:
    field: dict[str, Any] = {"title": title, "type": type_}
    if description:
        field["description"] = description
    field.update(extra)
    field["meta:xdmType"] = xdm or type_
    return field


def _s(title: str, description: str = "", **extra: Any) -> dict[str, Any]:
    return _f(title, "string", description=description, **extra)


def _date(title: str, description: str = "") -> dict[str, Any]:
    return _f(title, "string", "date", description, format="date")


def _dt(title: str, description: str = "") -> dict[str, Any]:
    return _f(title, "string", "date-time", description, format="date-time")


def _num(title: str, description: str = "") -> dict[str, Any]:
    return _f(title, "number", description=description)


def _int(title: str, xdm: str, description: str = "") -> dict[str, Any]:
    low, high = INTEGER_TYPES[xdm]
    return _f(title, "integer", xdm, description, minimum=low, maximum=high)


def _bool(title: str, description: str = "") -> dict[str, Any]:
    return _f(title, "boolean", description=description)


def _obj(title: str, description: str = "", **properties: dict[str, Any]) -> dict[str, Any]:
    return _f(title, "object", description=description, properties=properties)


def _map(title: str, values: dict[str, Any], description: str = "") -> dict[str, Any]:
    return _f(title, "object", "map", description, additionalProperties=values)


def _array(title: str, items: dict[str, Any], description: str = "") -> dict[str, Any]:
    return _f(title, "array", description=description, items=items)


def _enum(title: str, values: list[str], description: str = "", **extra: Any) -> dict[str, Any]:
    return _s(title, description, enum=values, **extra)


def _value(title: str) -> dict[str, Any]:
    return _obj(title, value=_num("Value", "The quantifiable value of this measure."))


def _resource(
    rid: str,
    kind: str,
    title: str,
    description: str,
    fields: dict[str, dict[str, Any]],
    *,
    refs: tuple[str, ...] = (),
    extends: tuple[str, ...] = (),
    extend_to: tuple[str, ...] = (),
    required: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A global resource as the registry's ``xed`` form shows it."""
    name = rid.rsplit("/", 1)[-1]
    doc: dict[str, Any] = {
        "$id": rid,
        "meta:altId": alt_id_of(rid),
        "meta:resourceType": kind,
        "version": GLOBAL_LIB_VERSION,
        "title": title,
        "type": "object",
        "description": description,
        "definitions": {name: {"properties": fields}},
        "allOf": [ref_entry(r) for r in (*refs, f"#/definitions/{name}")],
        "meta:extensible": True,
        "meta:abstract": True,
        "meta:xdmType": "object",
        "meta:status": "stable",
        "$schema": JSON_SCHEMA,
    }
    if extends:
        doc["meta:extends"] = list(extends)
    if extend_to:
        doc["meta:intendedToExtend"] = list(extend_to)
    if required:
        doc["required"] = list(required)
    return doc


def ref_entry(target: str) -> dict[str, Any]:
    return {"$ref": target, "type": "object", "meta:xdmType": "object"}


_ID = _s("Identifier", "A unique identifier for the record.", **{"meta:xdmField": "@id"})

# Behaviors and mixed-in fragments: resolved through, never listed (the registry's /behaviors are left out).
FRAGMENTS: tuple[dict[str, Any], ...] = (
    _resource(RECORD, "behaviors", "Record Schema", "Record data semantic.", {"_id": _ID}),
    _resource(
        TIME_SERIES,
        "behaviors",
        "Time-series Schema",
        "Time-series data semantic.",
        {"_id": _ID, "timestamp": _dt("Timestamp", "The time when an event or observation occurred.")},
    ),
    _resource(
        AUDITABLE,
        "mixins",
        "Auditable",
        "System fields that record when and by which batch a record was written.",
        {
            "_repo": _obj(
                "Repository metadata",
                createDate=_dt("Create date", "The server date and time when the resource was created."),
                modifyDate=_dt("Modify date", "The server date and time when the resource was last modified."),
            ),
            "createdByBatchID": _s("Created by batch identifier", "The dataset files batch that created this record."),
            "modifiedByBatchID": _s("Modified by batch identifier", "The last dataset files batch that changed it."),
        },
    ),
)

_IDENTITY_ITEM = _obj(
    "Identity",
    id=_s("Identifier", "Identity of the consumer in the related namespace."),
    authenticatedState=_enum(
        "Authenticated state",
        ["ambiguous", "authenticated", "loggedOut"],
        "The state this identity is authenticated as for this observed ExperienceEvent.",
        default="ambiguous",
    ),
    primary=_bool("Primary", "Indicates this identity is the preferred identity."),
)
_MEMBERSHIP = _obj(
    "Segment membership",
    version=_s("Version", "The version of the segment definition used in this segment assertion."),
    lastQualificationTime=_dt("Last qualification time", "When the assertion of segment membership was made."),
    validUntil=_dt("Valid until", "When the segment assertion should no longer be assumed to be valid."),
    status=_enum(
        "Status",
        ["existing", "realized", "exited"],
        "Is the segment participation realized as part of the current request.",
        default="realized",
    ),
    payload=_obj(
        "Payload",
        payloadType=_enum("Payload type", ["boolean", "number", "propensity", "string"]),
        payloadBooleanValue=_bool("Value"),
        payloadNumberValue=_num("Value"),
        payloadPropensityValue=_num("Value"),
        payloadStringValue=_s("Value"),
    ),
)
_PHONE = {"number": _s("Number", "The phone number."), "primary": _bool("Primary")}

CLASSES: tuple[dict[str, Any], ...] = (
    _resource(
        PROFILE_CLASS,
        "classes",
        "XDM Individual Profile",
        "A singular representation of the attributes and interests of both identified and partially-identified "
        "individuals.",
        {"personID": _s("Person ID", "Unique identifier of Person/Profile fragment.")},
        refs=(RECORD, AUDITABLE),
        extends=(RECORD, AUDITABLE),
    ),
    _resource(
        EVENT_CLASS,
        "classes",
        "XDM ExperienceEvent",
        "A fact record of what occurred, including the point in time and identity of the individual involved.",
        {
            "eventMergeId": _s("ExperienceEvent merge ID", "An ID to correlate or merge multiple Experience events."),
            "eventType": _s("Event Type", "The primary event type for this time-series record."),
        },
        refs=(TIME_SERIES, IDENTITY_MAP),
        extends=(TIME_SERIES, IDENTITY_MAP),
        required=("_id", "timestamp"),
    ),
    _resource(
        SEGMENT_DEFINITION_CLASS,
        "classes",
        "Segment definition",
        "The base class for a segment definition, with required fields like the identity and name of a segment.",
        {
            "segmentIdentity": _obj(
                "Segment identity",
                "Identity of the segment.",
                _id=_s("Identifier", "Identity of the segment in the related namespace."),
                namespace=_obj("Namespace", code=_s("Code", "The code of the namespace.")),
                xid=_s("Experience identifier"),
            ),
            "segmentName": _s("Segment name", "Name of the segment."),
            "description": _s("Segment description", "Description of the segment."),
            "version": _s("Segment version", "Version of the segment."),
            "segmentStatus": _enum("Segment status", ["ACTIVE", "INACTIVE", "DELETED", "DRAFT", "REVOKED"]),
            "labels": _array("Labels", _s("Label"), "Resource ids of labels."),
        },
        refs=(RECORD, AUDITABLE, IDENTITY_MAP),
        extends=(RECORD, AUDITABLE),
        required=("segmentName",),
    ),
)

FIELD_GROUPS: tuple[dict[str, Any], ...] = (
    _resource(
        IDENTITY_MAP,
        "mixins",
        "IdentityMap",
        "A map of identities keyed by namespace code.",
        {"identityMap": _map("Identity map", _array("Identities", _IDENTITY_ITEM))},
        extend_to=(PROFILE_CLASS, EVENT_CLASS, SEGMENT_DEFINITION_CLASS),
    ),
    _resource(
        f"{NS}/xdm/context/profile-person-details",
        "mixins",
        "Demographic Details",
        "Demographic information such as name, gender, and birth date of an individual.",
        {
            "person": _obj(
                "Person",
                "An individual actor, contact, or owner.",
                name=_obj(
                    "Full name",
                    firstName=_s("First name", "The first segment of the name in the writing order."),
                    middleName=_s("Middle name", "Middle, alternative, or additional names."),
                    lastName=_s("Last name", "The last segment of the name in the writing order."),
                    fullName=_s("Full name", "The full name of the person, in writing order."),
                    courtesyTitle=_s("Courtesy title", "Normally an abbreviation of a persons title."),
                    suffix=_s("Suffix", "A group of letters provided after a person's name."),
                ),
                gender=_enum("Gender", ["female", "male", "not_specified", "non_specific"], "Gender identity."),
                birthDate=_date("Birth date", "The full date a person was born."),
                birthYear=_int("Birth year", "short", "The year a person was born including the century."),
                birthDayAndMonth=_s(
                    "Birth date", "The day and month a person was born, MM-DD.", pattern=r"[0-1][0-9]-[0-9][0-9]"
                ),
            )
        },
        extend_to=(PROFILE_CLASS,),
    ),
    _resource(
        f"{NS}/xdm/context/profile-personal-details",
        "mixins",
        "Personal Contact Details",
        "Contact information for an individual person such as home address, phone number, and email.",
        {
            "personalEmail": _obj(
                "Personal email",
                "A personal email address.",
                address=_s("Address", "The technical address, e.g 'name@domain.com'.", format="email"),
                primary=_bool("Primary"),
            ),
            "mobilePhone": _obj("Mobile phone", "Mobile phone number.", **_PHONE),
            "homePhone": _obj("Home phone", "Home phone number.", **_PHONE),
            "homeAddress": _obj(
                "Home address",
                "A home postal address.",
                street1=_s("Street 1", "Primary Street level information."),
                street2=_s("Street 2", "Optional street information second line."),
                city=_s("City", "The name of the city."),
                stateProvince=_s("State or province", "The state or province portion of the address."),
                postalCode=_s("Postal code", "The postal code of the location."),
                country=_s("Country", "The name of the government-administered territory."),
                countryCode=_s("Country code", "The two-character ISO 3166-1 alpha-2 code.", pattern="^[A-Z]{2}$"),
            ),
        },
        extend_to=(PROFILE_CLASS,),
    ),
    _resource(
        f"{NS}/xdm/context/profile-segmentation",
        "mixins",
        "Segment Membership Details",
        "Segment memberships of a profile: a map of namespace to a map of segment id to its membership.",
        {"segmentMembership": _map("Segment membership", _map("Segments of a namespace", _MEMBERSHIP))},
        extend_to=(PROFILE_CLASS,),
    ),
    _resource(
        f"{NS}/xdm/context/experienceevent-web",
        "mixins",
        "Web Details",
        "Web details like page, link and referrer of an ExperienceEvent.",
        {
            "web": _obj(
                "Web",
                webPageDetails=_obj(
                    "Web page details",
                    name=_s("Name", "The normative name of the web page."),
                    URL=_s("URL", "The URL of the web page.", format="uri"),
                    pageViews=_value("Page views"),
                ),
                webReferrer=_obj(
                    "Web referrer",
                    URL=_s("URL", "The referrer URL.", format="uri"),
                    type=_s("Type", "The referrer type."),
                ),
            )
        },
        extend_to=(EVENT_CLASS,),
    ),
    _resource(
        f"{NS}/xdm/context/experienceevent-commerce",
        "mixins",
        "Commerce Details",
        "Commerce actions and the products they concern.",
        {
            "commerce": _obj(
                "Commerce",
                order=_obj(
                    "Order",
                    purchaseID=_s("Purchase ID", "The unique identifier assigned by the seller for this purchase."),
                    priceTotal=_num("Price total", "The total price of this order."),
                    currencyCode=_s("Currency code", "The ISO 4217 currency code.", pattern="^[A-Z]{3}$"),
                ),
                purchases=_value("Purchases"),
                productViews=_value("Product views"),
                productListAdds=_value("Product list adds"),
                checkouts=_value("Checkouts"),
            ),
            "productListItems": _array(
                "Product list items",
                _obj(
                    "Product list item",
                    SKU=_s("SKU", "Stock keeping unit: the unique identifier of a product."),
                    name=_s("Name", "The display name of the product."),
                    quantity=_int("Quantity", "int", "The number of units of the product."),
                    priceTotal=_num("Price total", "The total price of the product line item."),
                    currencyCode=_s("Currency code", "The ISO 4217 currency code.", pattern="^[A-Z]{3}$"),
                ),
            ),
        },
        extend_to=(EVENT_CLASS,),
    ),
)

# Fields the registry puts into a union of its own (AEP: "automatically includes identityMap and
# segmentMembership"), whether or not a profile-enabled schema has them.
UNION_EXTRAS: dict[str, tuple[str, ...]] = {
    PROFILE_CLASS: (IDENTITY_MAP, f"{NS}/xdm/context/profile-segmentation"),
}

_GLOBAL: dict[str, dict[str, Any]] = {}
for _doc in (*FRAGMENTS, *CLASSES, *FIELD_GROUPS):
    _GLOBAL[_doc["$id"]] = _doc
    _GLOBAL[_doc["meta:altId"]] = _doc


def find_global(ref: str) -> dict[str, Any] | None:
    """A standard class, field group or behavior by ``$id`` or altId (a deep copy), or None."""
    found = _GLOBAL.get(ref)
    return copy.deepcopy(found) if found is not None else None


def global_kind(ref: str) -> str | None:
    """``classes`` or ``mixins`` (field groups) for a listed standard resource, else None."""
    found = _GLOBAL.get(ref)
    if found is None or found in FRAGMENTS:
        return None
    return str(found["meta:resourceType"])


# -- resolution ------------------------------------------------------------------------------------


def resolve_document(doc: Mapping[str, Any], lookup: Lookup) -> tuple[dict[str, Any], tuple[tuple[str, ...], ...]]:
    """The merged ``properties`` of ``doc`` (its ``allOf`` followed through ``lookup``) and its required paths."""
    props: dict[str, Any] = {}
    required: list[tuple[str, ...]] = []
    _collect(doc, lookup, props, required, set())
    required.extend(_nested_required(props, ()))
    return props, tuple(dict.fromkeys(required))


def _collect(
    doc: Mapping[str, Any], lookup: Lookup, props: dict[str, Any], required: list[tuple[str, ...]], seen: set[str]
) -> None:
    required.extend((name,) for name in doc.get("required", []) if isinstance(name, str))
    for entry in doc.get("allOf", []):
        ref = entry.get("$ref") if isinstance(entry, Mapping) else None
        if not isinstance(ref, str) or ref == CONTEXT_REF:
            continue
        if ref.startswith("#/definitions/"):
            fragment = doc.get("definitions", {}).get(ref.removeprefix("#/definitions/"))
            if not isinstance(fragment, Mapping):
                raise XdmInvalid(f"allOf: {ref!r} names no definition of {doc.get('$id', 'this resource')}")
            merge_properties(props, fragment.get("properties", {}))
            required.extend((name,) for name in fragment.get("required", []) if isinstance(name, str))
            continue
        if ref in seen:
            continue
        seen.add(ref)
        other = lookup(ref)
        if other is None:
            raise XdmInvalid(f"allOf: $ref {ref!r} is not a class or field group of this registry")
        _collect(other, lookup, props, required, seen)
    merge_properties(props, doc.get("properties", {}))


def _nested_required(props: Mapping[str, Any], prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    for name, field in props.items():
        if isinstance(field, Mapping) and isinstance(field.get("properties"), Mapping):
            for sub in field.get("required", []):
                if isinstance(sub, str):
                    yield (*prefix, name, sub)
            yield from _nested_required(field["properties"], (*prefix, name))


def merge_properties(into: dict[str, Any], new: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> None:
    """Adds the fields of ``new`` to ``into``; objects merge field by field, anything else must agree."""
    for name, field in new.items():
        here = (*prefix, name)
        if name not in into:
            into[name] = copy.deepcopy(field)
            continue
        _merge_field(into[name], field, here)


def _merge_field(old: dict[str, Any], new: Mapping[str, Any], here: tuple[str, ...]) -> None:
    if shape(old) != shape(new):
        raise XdmInvalid(
            f"{'.'.join(here)}: defined twice with different types ({shape(old)} and {shape(new)}); "
            "a schema cannot hold both"
        )
    if isinstance(old.get("properties"), dict):
        merge_properties(old["properties"], new.get("properties", {}), here)
        extra = [n for n in new.get("required", []) if n not in old.get("required", [])]
        if extra:
            old["required"] = [*old.get("required", []), *extra]
    elif isinstance(old.get("additionalProperties"), dict):
        _merge_field(old["additionalProperties"], new["additionalProperties"], (*here, "*"))
    elif isinstance(old.get("items"), dict):
        _merge_field(old["items"], new["items"], (*here, "[]"))


def shape(field: Mapping[str, Any]) -> str:
    """What two definitions of one field must agree on: the type, and for leaves the XDM type and format."""
    kind = str(field.get("type"))
    if kind == "object":
        return "map" if "additionalProperties" in field and "properties" not in field else "object"
    if kind == "array":
        return "array"
    xdm = field.get("meta:xdmType", kind)
    return f"{kind}/{xdm}" + (f"/{field['format']}" if "format" in field else "")


def field_at(props: Mapping[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    """The field at ``path`` walking through objects' ``properties`` (not into arrays or maps), or None."""
    node: Any = {"properties": props}
    for name in path:
        children = node.get("properties") if isinstance(node, Mapping) else None
        if not isinstance(children, Mapping) or name not in children:
            return None
        node = children[name]
    return dict(node) if isinstance(node, Mapping) else None


def pointer_path(pointer: str, where: str) -> tuple[str, ...]:
    """``/_demoemea/personID`` → ``("_demoemea", "personID")`` (JSON Pointer, with ``~1`` and ``~0``)."""
    if not isinstance(pointer, str) or not pointer.startswith("/") or pointer == "/":
        raise XdmInvalid(f"{where}: a path to a field like '/_tenant/field' is required, got {pointer!r}")
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/"))


def strip_text(value: Any) -> Any:
    """``value`` without ``title`` and ``description`` anywhere (the ``-notext`` forms)."""
    if isinstance(value, dict):
        return {k: strip_text(v) for k, v in value.items() if k not in ("title", "description")}
    if isinstance(value, list):
        return [strip_text(v) for v in value]
    return value


def strip_titles(value: Any) -> Any:
    """``value`` without ``title`` anywhere (the ``xed-full-desc`` form)."""
    if isinstance(value, dict):
        return {k: strip_titles(v) for k, v in value.items() if k != "title"}
    if isinstance(value, list):
        return [strip_titles(v) for v in value]
    return value


# -- custom fields ---------------------------------------------------------------------------------


def check_field_group_definitions(definitions: Any, tenant: str) -> dict[str, Any]:
    """A tenant field group's ``definitions``, checked and with ``meta:xdmType`` filled in.

    Every field lives under ``_{tenant}``: the strict form of AEP's rule (no root-level custom fields).
    """
    if not isinstance(definitions, dict) or not definitions:
        raise XdmInvalid("definitions: an object with at least one definition is required")
    namespace = f"_{tenant}"
    out: dict[str, Any] = {}
    for name, fragment in definitions.items():
        where = f"definitions.{name}"
        if not isinstance(fragment, dict) or not isinstance(fragment.get("properties"), dict):
            raise XdmInvalid(f"{where}.properties: an object of fields is required")
        unknown = sorted(set(fragment) - {"properties", "type", "required", "title", "description"})
        if unknown:
            raise XdmInvalid(f"{where}.{unknown[0]}: not supported in a field group definition")
        for key in fragment["properties"]:
            if key != namespace:
                raise XdmInvalid(
                    f"{where}.properties.{key}: custom fields must be nested under {namespace} "
                    f"(definitions.{name}.properties.{namespace}.properties.{key})"
                )
        checked = dict(fragment)
        checked["properties"] = check_fields(fragment["properties"], f"{where}.properties")
        tenant_field = checked["properties"].get(namespace)
        if tenant_field is not None and tenant_field.get("meta:xdmType") != "object":
            raise XdmInvalid(f"{where}.properties.{namespace}: must be an object with properties")
        out[name] = checked
    return out


def check_fields(fields: Any, where: str) -> dict[str, Any]:
    """Custom field definitions, checked, with ``meta:xdmType`` set as AEP stores it."""
    if not isinstance(fields, dict):
        raise XdmInvalid(f"{where}: an object of fields is required")
    return {name: _check_field(name, field, f"{where}.{name}") for name, field in fields.items()}


def _check_field(name: str, field: Any, where: str) -> dict[str, Any]:
    if not isinstance(name, str) or not FIELD_NAME.fullmatch(name):
        raise XdmInvalid(
            f"{where}: field name {name!r} must start with a letter or _ and hold only letters, digits and _ (not __)"
        )
    if not isinstance(field, dict):
        raise XdmInvalid(f"{where}: a field definition (an object with a type) is required")
    if "$ref" in field:
        raise XdmInvalid(f"{where}.$ref: data types are not supported here; define the fields inline")
    kind = field.get("type")
    out = dict(field)
    if kind == "string":
        out["meta:xdmType"] = _string_type(field, where)
    elif kind == "integer":
        out["meta:xdmType"] = _integer_type(field, where)
    elif kind in ("number", "boolean"):
        out["meta:xdmType"] = kind
    elif kind == "array":
        if not isinstance(field.get("items"), dict):
            raise XdmInvalid(f"{where}.items: an array needs the definition of its items")
        out["items"] = _check_field("items", field["items"], f"{where}.items")
        out["meta:xdmType"] = "array"
    elif kind == "object":
        has_props, has_map = "properties" in field, "additionalProperties" in field
        if has_props == has_map:
            raise XdmInvalid(f"{where}: an object needs either properties (fields) or additionalProperties (a map)")
        if has_props:
            out["properties"] = check_fields(field["properties"], f"{where}.properties")
            for sub in field.get("required", []):
                if sub not in out["properties"]:
                    raise XdmInvalid(f"{where}.required: {sub!r} is not a field of this object")
            out["meta:xdmType"] = "object"
        else:
            if not isinstance(field["additionalProperties"], dict):
                raise XdmInvalid(f"{where}.additionalProperties: the definition of the map's values is required")
            out["additionalProperties"] = _check_field(
                "additionalProperties", field["additionalProperties"], f"{where}.additionalProperties"
            )
            out["meta:xdmType"] = "map"
    else:
        raise XdmInvalid(f"{where}.type: {kind!r} is not a type; use string, integer, number, boolean, object or array")
    return out


def _string_type(field: Mapping[str, Any], where: str) -> str:
    fmt = field.get("format")
    if fmt is not None and fmt not in STRING_FORMATS:
        raise XdmInvalid(f"{where}.format: {fmt!r} is not one of {sorted(STRING_FORMATS)}")
    enum = field.get("enum")
    if enum is not None and (not isinstance(enum, list) or not all(isinstance(v, str) for v in enum) or not enum):
        raise XdmInvalid(f"{where}.enum: a list of strings is required, got {enum!r}")
    for key in ("maxLength", "minLength"):
        value = field.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise XdmInvalid(f"{where}.{key}: a whole number of 0 or more is required, got {value!r}")
    pattern = field.get("pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise XdmInvalid(f"{where}.pattern: {pattern!r} is not a regular expression ({exc})") from exc
    return fmt if fmt in ("date", "date-time") else "string"


def _integer_type(field: Mapping[str, Any], where: str) -> str:
    declared = field.get("meta:xdmType")
    if declared is not None:
        if declared not in INTEGER_TYPES:
            raise XdmInvalid(f"{where}.meta:xdmType: {declared!r} is not one of {list(INTEGER_TYPES)}")
        return str(declared)
    low, high = field.get("minimum"), field.get("maximum")
    if low is None and high is None:
        return "int"
    # The narrowest XDM integer type that holds the declared range, as the registry infers it.
    for name, (lo, hi) in INTEGER_TYPES.items():
        if (low is None or low >= lo) and (high is None or high <= hi) and low is not None and high is not None:
            return name
    return "long"


# -- bodies ----------------------------------------------------------------------------------------


def refs_of(all_of: Any, where: str = "allOf") -> list[str]:
    """The ``$ref``s of an ``allOf`` list (each item ``{"$ref": ...}``)."""
    if not isinstance(all_of, list) or not all_of:
        raise XdmInvalid(f"{where}: a list of {{'$ref': ...}} objects is required")
    refs: list[str] = []
    for n, entry in enumerate(all_of):
        ref = entry.get("$ref") if isinstance(entry, dict) else None
        if not isinstance(ref, str) or not ref.strip():
            raise XdmInvalid(f"{where}[{n}].$ref: the $id of a class or field group is required, got {entry!r}")
        if ref not in refs:
            refs.append(ref.strip())
    return refs


def text_field(body: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise XdmInvalid(f"{name}: a non-empty string is required, got {value!r}")
    if len(value) > 1024:
        raise XdmInvalid(f"{name}: at most 1024 characters")
    return value.strip() if required else value


def check_object_type(body: Mapping[str, Any]) -> None:
    kind = body.get("type", "object")
    if kind != "object":
        raise XdmInvalid(f"type: must be 'object', got {kind!r}")


# -- JSON Patch (RFC 6902: add, remove, replace) -----------------------------------------------------


def apply_patch(doc: dict[str, Any], ops: Any) -> dict[str, Any]:
    """``doc`` with the patch ``ops`` applied (a new document; ``doc`` is left as it was)."""
    if not isinstance(ops, list) or not ops:
        raise XdmInvalid("body: a JSON array of patch operations ({op, path, value}) is required")
    out = copy.deepcopy(doc)
    for n, op in enumerate(ops):
        where = f"[{n}]"
        if not isinstance(op, dict) or not isinstance(op.get("op"), str) or not isinstance(op.get("path"), str):
            raise XdmInvalid(f"{where}: a patch operation must be an object with op and path (and value)")
        kind = op["op"].lower()
        if kind not in ("add", "remove", "replace"):
            raise XdmInvalid(f"{where}.op: {op['op']!r} is not supported; use add, remove or replace")
        if kind != "remove" and "value" not in op:
            raise XdmInvalid(f"{where}.value: required for {kind}")
        path = op["path"]
        if not path.startswith("/"):
            raise XdmInvalid(f"{where}.path: {path!r} must start with /")
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]
        parent: Any = out
        for token in tokens[:-1]:
            parent = _step(parent, token, f"{where}.path {path!r}")
        _apply(parent, tokens[-1], kind, copy.deepcopy(op.get("value")), f"{where}.path {path!r}")
    return out


def _step(node: Any, token: str, where: str) -> Any:
    if isinstance(node, dict) and token in node:
        return node[token]
    if isinstance(node, list) and token.isdigit() and int(token) < len(node):
        return node[int(token)]
    raise XdmInvalid(f"{where}: {token!r} does not exist")


def _apply(parent: Any, token: str, kind: str, value: Any, where: str) -> None:
    if isinstance(parent, dict):
        if kind != "add" and token not in parent:
            raise XdmInvalid(f"{where}: {token!r} does not exist")
        if kind == "remove":
            del parent[token]
        else:
            parent[token] = value
        return
    if isinstance(parent, list):
        if token == "-" and kind == "add":
            parent.append(value)
            return
        if not token.isdigit() or int(token) > len(parent) or (kind != "add" and int(token) == len(parent)):
            raise XdmInvalid(f"{where}: {token!r} is not an index of the list")
        index = int(token)
        if kind == "add":
            parent.insert(index, value)
        elif kind == "remove":
            del parent[index]
        else:
            parent[index] = value
        return
    raise XdmInvalid(f"{where}: cannot {kind} inside a {type(parent).__name__}")
