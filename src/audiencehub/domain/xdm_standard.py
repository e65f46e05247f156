"""The standard XDM resources: the global classes, field groups and behaviors, and their ids.

Pure data, built once at import: what the Schema Registry lists under its ``global`` container and
resolves ``$ref``s to (:func:`find_global`). The rules and resolution live in :mod:`audiencehub.domain.xdm`.
"""

from __future__ import annotations

import copy
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
GLOBAL_LIB_VERSION = "1.50.1"
JSON_SCHEMA = "http://json-schema.org/draft-06/schema#"
INTEGER_TYPES: dict[str, tuple[int, int]] = {
    "byte": (-(2**7), 2**7 - 1),
    "short": (-(2**15), 2**15 - 1),
    "int": (-(2**31), 2**31 - 1),
    "long": (-(2**53) + 1, 2**53 - 1),
}


# -- ids -------------------------------------------------------------------------------------------


def alt_id_of(resource_id: str) -> str:
    """``https://ns.adobe.com/xdm/context/profile`` → ``_xdm.context.profile`` (AEP's dot notation)."""
    rest = resource_id.removeprefix(NS + "/")
    return "_" + rest.replace("/", ".")


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
