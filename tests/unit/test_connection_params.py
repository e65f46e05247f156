"""Connection params: specs and their lookup, validation and coercion, folders and source keys, secrets kept out of
every message."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest

from audiencehub.domain.audiences import CloudType
from audiencehub.domain.connections import (
    GCS_SPEC_ID,
    MASK,
    S3_SPEC_ID,
    SFTP_SPEC_ID,
    SPECS,
    AuthSpec,
    ConnectionSpec,
    find_spec,
    normalize_folder,
    source_key,
    validate_params,
)

SECRET = "hunter2-Very-Secret-Value"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def spec_auth(spec_id: str, auth_name: str) -> tuple[ConnectionSpec, AuthSpec]:
    spec = find_spec(spec_id)
    assert spec is not None
    auth = spec.auth_spec(auth_name)
    assert auth is not None
    return spec, auth


def s3() -> tuple[ConnectionSpec, AuthSpec]:
    return spec_auth(S3_SPEC_ID, "Access Key")


def sftp_password() -> tuple[ConnectionSpec, AuthSpec]:
    return spec_auth(SFTP_SPEC_ID, "Basic Authentication for sftp")


def sftp_key() -> tuple[ConnectionSpec, AuthSpec]:
    return spec_auth(SFTP_SPEC_ID, "SSH PublicKey Authentication for sftp")


def gcs_hmac() -> tuple[ConnectionSpec, AuthSpec]:
    return spec_auth(GCS_SPEC_ID, "Basic Authentication for google-cloud")


def gcs_service_account() -> tuple[ConnectionSpec, AuthSpec]:
    return spec_auth(GCS_SPEC_ID, "Service Account Authentication for google-cloud")


SFTP_KEY_PLACEHOLDER = "not-parsed-by-validation"
S3_OK: dict[str, Any] = {"s3AccessKey": "AKIAEXAMPLE", "s3SecretKey": SECRET, "bucketName": "my-bucket"}
SFTP_OK: dict[str, Any] = {
    "host": "sftp.example.com",
    "userName": "alice",
    "password": SECRET,
    "knownHostKey": HOST_KEY,
}

SFTP_KEY_OK: dict[str, Any] = {
    **{k: v for k, v in SFTP_OK.items() if k != "password"},
    "privateKeyContent": SFTP_KEY_PLACEHOLDER,
}


# -- specs ------------------------------------------------------------------------------------------


def test_find_spec_knows_the_three_clouds_and_ignores_case_and_blanks() -> None:
    assert {s.id: s.cloud_type for s in SPECS} == {
        S3_SPEC_ID: CloudType.S3,
        GCS_SPEC_ID: CloudType.GCS,
        SFTP_SPEC_ID: CloudType.SFTP,
    }
    for spec_id in (S3_SPEC_ID, GCS_SPEC_ID, SFTP_SPEC_ID):
        found = find_spec(f"  {spec_id.upper()}\n")
        assert found is not None and found.id == spec_id


@pytest.mark.parametrize("spec_id", ["", "   ", "not-a-spec", S3_SPEC_ID[:-1], S3_SPEC_ID + "0"])
def test_find_spec_of_an_unknown_id_is_none(spec_id: str) -> None:
    assert find_spec(spec_id) is None


@pytest.mark.parametrize(
    ("spec_id", "given", "canonical"),
    [
        (S3_SPEC_ID, "Access Key", "Access Key"),
        (S3_SPEC_ID, "access key", "Access Key"),
        (S3_SPEC_ID, "  ACCESS KEY  ", "Access Key"),
        (S3_SPEC_ID, "Basic Authentication for S3", "Access Key"),
        (S3_SPEC_ID, "amazons3auth", "Access Key"),
        (GCS_SPEC_ID, "HMAC Key Authentication for google-cloud", "Basic Authentication for google-cloud"),
        (GCS_SPEC_ID, "service account key", "Service Account Authentication for google-cloud"),
        (SFTP_SPEC_ID, "Basic Authentication for SFTP", "Basic Authentication for sftp"),
        (SFTP_SPEC_ID, "password authentication for SFTP", "Basic Authentication for sftp"),
        (SFTP_SPEC_ID, "SSH Public Key Authentication for sftp", "SSH PublicKey Authentication for sftp"),
    ],
)
def test_auth_spec_matches_names_and_aliases_case_insensitively(spec_id: str, given: str, canonical: str) -> None:
    spec = find_spec(spec_id)
    assert spec is not None
    auth = spec.auth_spec(given)
    assert auth is not None and auth.name == canonical


@pytest.mark.parametrize(
    ("spec_id", "given"),
    [
        (S3_SPEC_ID, "Basic Authentication for sftp"),  # another spec's auth
        (SFTP_SPEC_ID, "Access Key"),
        (GCS_SPEC_ID, "Service Account"),  # a prefix is not a match
        (S3_SPEC_ID, ""),
    ],
)
def test_auth_spec_of_another_spec_or_a_prefix_is_none(spec_id: str, given: str) -> None:
    spec = find_spec(spec_id)
    assert spec is not None and spec.auth_spec(given) is None


def test_param_lookup_by_name_alias_and_any_case() -> None:
    _, auth = sftp_key()
    for given, canonical in [
        ("userName", "userName"),
        ("username", "userName"),
        ("USERNAME", "userName"),
        ("passPhrase", "passPhrase"),
        ("passphrase", "passPhrase"),
        ("PASSPHRASE", "passPhrase"),
        ("privatekeycontent", "privateKeyContent"),
        ("HOST", "host"),
    ]:
        param = auth.param(given)
        assert param is not None and param.name == canonical, given
    assert auth.param("user") is None
    assert auth.param("password") is None  # a param of the password spec, not of the key spec


def test_secret_names_are_the_secret_params() -> None:
    assert s3()[1].secret_names == {"s3AccessKey", "s3SecretKey", "s3SessionToken"}
    assert gcs_hmac()[1].secret_names == {"accessKeyId", "secretAccessKey"}
    assert gcs_service_account()[1].secret_names == {"serviceAccountKey"}
    assert sftp_password()[1].secret_names == {"password"}
    assert sftp_key()[1].secret_names == {"privateKeyContent", "passPhrase"}


# -- validate_params ------------------------------------------------------------------------------


def test_s3_params_split_into_public_and_secret() -> None:
    out = validate_params(*s3(), dict(S3_OK, region="eu-west-1", folderPath="in/coming"))
    assert out.public == {"bucketName": "my-bucket", "region": "eu-west-1", "folderPath": "in/coming"}
    assert out.secrets == {"s3AccessKey": "AKIAEXAMPLE", "s3SecretKey": SECRET}
    assert out.merged == {**out.public, **out.secrets}


def test_aliases_are_stored_under_the_canonical_name() -> None:
    raw = {k: v for k, v in SFTP_OK.items() if k != "userName"} | {"USERNAME": "bob"}
    out = validate_params(*sftp_password(), raw)
    assert out.public["userName"] == "bob"
    assert "USERNAME" not in out.merged and "username" not in out.merged


def test_a_param_given_twice_under_an_alias_is_refused() -> None:
    with pytest.raises(ValueError, match=r"auth\.params\.username: given twice \(as userName\)"):
        validate_params(*sftp_password(), dict(SFTP_OK, username="mallory"))


def test_sftp_defaults_port_22_and_host_key_checking_on() -> None:
    out = validate_params(*sftp_password(), SFTP_OK)
    assert out.public["port"] == 22
    assert out.public["disableHostKeyChecking"] is False
    assert out.secrets == {"password": SECRET}


def test_given_values_override_defaults_and_are_coerced() -> None:
    raw = {k: v for k, v in SFTP_OK.items() if k != "knownHostKey"}
    out = validate_params(*sftp_password(), dict(raw, port=" 2222 ", disableHostKeyChecking="TRUE"))
    assert out.public["port"] == 2222
    assert out.public["disableHostKeyChecking"] is True
    out = validate_params(*sftp_password(), dict(SFTP_OK, port=2022, disableHostKeyChecking=False))
    assert (out.public["port"], out.public["disableHostKeyChecking"]) == (2022, False)


def test_public_strings_are_stripped_secrets_are_not() -> None:
    out = validate_params(*s3(), dict(S3_OK, s3SecretKey=f" {SECRET} ", region="  us-east-2 "))
    assert out.public["region"] == "us-east-2"
    assert out.secrets["s3SecretKey"] == f" {SECRET} "


def test_sftp_needs_a_host_key_unless_checking_is_disabled() -> None:
    raw = {k: v for k, v in SFTP_OK.items() if k != "knownHostKey"}
    with pytest.raises(ValueError, match=r"auth\.params\.knownHostKey: required"):
        validate_params(*sftp_password(), raw)
    assert validate_params(*sftp_password(), dict(raw, disableHostKeyChecking=True)).public["port"] == 22


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"port": 0}, r"auth\.params\.port: must be from 1 to 65535, got 0"),
        ({"port": "65536"}, r"auth\.params\.port: must be from 1 to 65535, got 65536"),
        ({"port": -1}, r"auth\.params\.port: must be an integer, got -1"),
        ({"port": 22.0}, r"auth\.params\.port: must be an integer, got 22\.0"),
        ({"port": True}, r"auth\.params\.port: must be an integer, got True"),
        ({"port": "twenty"}, r"auth\.params\.port: must be an integer, got 'twenty'"),
        ({"disableHostKeyChecking": "yes"}, r"auth\.params\.disableHostKeyChecking: must be true or false, got 'yes'"),
        ({"disableHostKeyChecking": 1}, r"auth\.params\.disableHostKeyChecking: must be true or false, got 1"),
        ({"host": "bad host"}, r"auth\.params\.host: 'bad host' is not a host name or address"),
        ({"host": "   "}, r"auth\.params\.host: must be a non-empty string"),
        ({"userName": 7}, r"auth\.params\.userName: must be a non-empty string, got 7"),
        ({"folderPath": "a/../b"}, r"auth\.params\.folderPath: path 'a/\.\./b' must not contain"),
        ({"shell": "/bin/sh"}, r"auth\.params\.shell: not a param of 'Basic Authentication for sftp' \(known: host,"),
    ],
)
def test_sftp_errors_name_the_param_and_what_is_wrong(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_params(*sftp_password(), dict(SFTP_OK, **changes))


@pytest.mark.parametrize("missing", ["host", "userName", "password"])
def test_required_params_are_named_when_missing(missing: str) -> None:
    raw = {k: v for k, v in SFTP_OK.items() if k != missing}
    with pytest.raises(ValueError, match=rf"auth\.params\.{missing}: required for 'Basic Authentication for sftp'"):
        validate_params(*sftp_password(), raw)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"serviceUrl": "ftp://example.com"},
            r"serviceUrl: must be an http:// or https:// URL, got 'ftp://example.com'",
        ),
        ({"serviceUrl": "http://"}, r"serviceUrl: must be an http:// or https:// URL"),
        ({"bucketName": "UPPER"}, r"auth\.params\.bucketName: 'UPPER' is not a bucket name"),
        ({"bucketName": "ab"}, r"auth\.params\.bucketName: 'ab' is not a bucket name"),
        ({"bucketName": "-ab"}, r"auth\.params\.bucketName: '-ab' is not a bucket name"),
        ({"folderPath": "a b"}, r"auth\.params\.folderPath: path 'a b' must not contain spaces"),
        ({"region": "EU West 1"}, r"auth\.params\.region: 'EU West 1' is not a region name"),
        ({"region": "eu_west_1"}, r"auth\.params\.region: 'eu_west_1' is not a region name"),
        ({"serviceUrl": "http://host:port"}, r"serviceUrl: must be an http:// or https:// URL, got 'http://host:port'"),
    ],
)
def test_object_store_rules(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_params(*s3(), dict(S3_OK, **changes))


@pytest.mark.parametrize("raw", [None, [], "params", 3, [("s3AccessKey", "x")]])
def test_params_must_be_an_object(raw: Any) -> None:
    with pytest.raises(ValueError, match=rf"auth\.params: must be a JSON object, got {type(raw).__name__}"):
        validate_params(*s3(), raw)


def test_service_account_key_is_an_object_or_its_text() -> None:
    key = {"client_email": "x@example.com", "private_key": SECRET}
    assert validate_params(*gcs_service_account(), {"serviceAccountKey": key}).secrets == {"serviceAccountKey": key}
    text = json.dumps(key)
    assert validate_params(*gcs_service_account(), {"serviceAccountKey": text}).secrets == {"serviceAccountKey": text}
    wrong: list[Any] = [{}, "", 42, [key]]
    for bad in wrong:
        with pytest.raises(ValueError, match=r"auth\.params\.serviceAccountKey: must be a JSON object or its text"):
            validate_params(*gcs_service_account(), {"serviceAccountKey": bad})


# -- MASK on update -------------------------------------------------------------------------------


def test_mask_keeps_the_stored_secret_on_update() -> None:
    stored = validate_params(*s3(), S3_OK).merged
    sent = dict(S3_OK, s3AccessKey=MASK, s3SecretKey=MASK, region="eu-west-3")
    out = validate_params(*s3(), sent, keep=stored)
    assert out.secrets == {"s3AccessKey": "AKIAEXAMPLE", "s3SecretKey": SECRET}
    assert out.public["region"] == "eu-west-3"


def test_a_new_secret_replaces_the_stored_one() -> None:
    stored = validate_params(*s3(), S3_OK).merged
    out = validate_params(*s3(), dict(S3_OK, s3SecretKey="rotated-secret"), keep=stored)
    assert out.secrets["s3SecretKey"] == "rotated-secret"


def test_mask_keeps_a_stored_service_account_object_and_an_alias_works_too() -> None:
    key = {"client_email": "x@example.com", "private_key": SECRET}
    out = validate_params(*gcs_service_account(), {"SERVICEACCOUNTKEY": MASK}, keep={"serviceAccountKey": key})
    assert out.secrets == {"serviceAccountKey": key}
    spec, auth = sftp_key()
    stored = {"passPhrase": "stored-phrase", "privateKeyContent": "stored-key"}
    raw = dict(SFTP_OK, privateKeyContent=MASK, passphrase=MASK)
    del raw["password"]
    assert validate_params(spec, auth, raw, keep=stored).secrets == stored


def test_mask_for_a_secret_that_is_not_stored_is_refused() -> None:
    """On create (nothing kept) or for a secret never stored, the mask is not a value to store."""
    with pytest.raises(ValueError, match=r"^auth\.params\.s3SecretKey: '\*{8}' stands for a stored secret"):
        validate_params(*s3(), dict(S3_OK, s3SecretKey=MASK))
    stored = validate_params(*s3(), S3_OK).merged
    with pytest.raises(ValueError, match=r"^auth\.params\.s3SessionToken: '\*{8}' stands for a stored secret"):
        validate_params(*s3(), dict(S3_OK, s3SessionToken=MASK), keep=stored)


def test_mask_in_a_public_param_is_a_value_like_any_other() -> None:
    out = validate_params(*s3(), dict(S3_OK, folderPath=MASK), keep={"folderPath": "kept", **S3_OK})
    assert out.public["folderPath"] == MASK


def test_keep_does_not_fill_secrets_that_were_not_sent() -> None:
    with pytest.raises(ValueError, match=r"auth\.params\.s3SecretKey: required"):
        validate_params(*s3(), {"s3AccessKey": MASK}, keep={"s3AccessKey": "A", "s3SecretKey": SECRET})


# -- folders and source keys ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "absolute_ok", "expected"),
    [
        ("", False, ""),
        ("", True, ""),
        ("/", False, ""),
        ("/", True, "/"),
        ("in/coming", False, "in/coming"),
        ("/in/coming/", False, "in/coming"),
        ("/in/coming/", True, "/in/coming"),
        ("in/coming/", True, "in/coming"),
        ("//in//coming//", True, "/in/coming"),
        ("//in//coming//", False, "in/coming"),
    ],
)
def test_normalize_folder(folder: str, absolute_ok: bool, expected: str) -> None:
    assert normalize_folder(folder, absolute_ok=absolute_ok) == expected


@pytest.mark.parametrize("folder", ["..", "/../etc", "a/../../b", "a/./b", "a b", "a\\b", "a\x00b"])
def test_normalize_folder_refuses_escapes_and_odd_characters(folder: str) -> None:
    for absolute_ok in (False, True):
        with pytest.raises(ValueError, match=r"^auth\.params\.folderPath: path "):
            normalize_folder(folder, absolute_ok=absolute_ok)


@pytest.mark.parametrize(
    ("which", "raw", "expected"),
    [
        (sftp_password, "/srv/in/", "/srv/in"),
        (sftp_password, "srv//in", "srv/in"),
        (s3, "/srv/in/", "srv/in"),
        (s3, "in//coming", "in/coming"),
    ],
    ids=["sftp-trailing-slash", "sftp-double-slash", "s3-leading-slash", "s3-double-slash"],
)
def test_validated_folder_path_is_stored_normalized(which: Any, raw: str, expected: str) -> None:
    spec, auth = which()
    base = SFTP_OK if spec.cloud_type is CloudType.SFTP else S3_OK
    assert validate_params(spec, auth, dict(base, folderPath=raw)).public["folderPath"] == expected


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-3", "auto", "ap-southeast-2"])
def test_regions(region: str) -> None:
    assert validate_params(*s3(), dict(S3_OK, region=region)).public["region"] == region


def test_folder_path_already_normal_is_stored_as_given() -> None:
    assert validate_params(*sftp_password(), dict(SFTP_OK, folderPath="/srv/in")).public["folderPath"] == "/srv/in"
    assert validate_params(*s3(), dict(S3_OK, folderPath="srv/in")).public["folderPath"] == "srv/in"


@pytest.mark.parametrize(
    ("path", "expected"),
    [("a.csv", "a.csv"), ("/a.csv", "a.csv"), ("//in/a.csv", "in/a.csv"), ("in//a.csv", "in/a.csv")],
)
def test_source_key(path: str, expected: str) -> None:
    assert source_key(path) == expected


@pytest.mark.parametrize("path", ["", "/", "//", "../a.csv", "/../a.csv", "a/../../b.csv", "a b.csv", "a\\b.csv"])
def test_source_key_refuses_empty_and_escaping_paths(path: str) -> None:
    with pytest.raises(ValueError):
        source_key(path)


# -- secrets never appear in messages -------------------------------------------------------------

WRONG_TYPES: list[Any] = [
    12345678901234,
    3.14159265358979,
    True,
    ["hunter2-in-a-list"],
    {"value": "hunter2-in-an-object"},
    "",
    "   ",
    None,
]

SECRET_PARAMS = [
    (s3, "s3AccessKey", S3_OK),
    (s3, "s3SecretKey", S3_OK),
    (s3, "s3SessionToken", S3_OK),
    (gcs_hmac, "accessKeyId", {"accessKeyId": "GOOG1", "secretAccessKey": SECRET}),
    (gcs_hmac, "secretAccessKey", {"accessKeyId": "GOOG1", "secretAccessKey": SECRET}),
    (gcs_service_account, "serviceAccountKey", {"serviceAccountKey": {"private_key": SECRET}}),
    (sftp_password, "password", SFTP_OK),
    (sftp_key, "privateKeyContent", SFTP_KEY_OK),
    (sftp_key, "passPhrase", SFTP_KEY_OK),
]


def _shown_forms(value: Any) -> list[str]:
    """The ways a value could be echoed into a message (its str, repr and JSON, and the strings inside it)."""
    forms = {str(value), repr(value)}
    with contextlib.suppress(TypeError):
        forms.add(json.dumps(value))
    if isinstance(value, list):
        forms.update(str(v) for v in value)
    if isinstance(value, dict):
        forms.update(str(v) for v in value.values())
    return [f for f in forms if len(f.strip()) >= 4 and f not in ("None", "True")]


def _accepted_by_validation(name: str, value: Any) -> bool:
    """serviceAccountKey takes any non-empty object or text here (the backend parses the key later)."""
    return name == "serviceAccountKey" and isinstance(value, dict | str) and bool(value)


WRONG_SECRETS = [
    pytest.param(which, name, base, value, id=f"{name}-{type(value).__name__}{i}")
    for which, name, base in SECRET_PARAMS
    for i, value in enumerate(WRONG_TYPES)
    if not _accepted_by_validation(name, value)
]


@pytest.mark.parametrize(("which", "name", "base", "value"), WRONG_SECRETS)
def test_a_wrong_secret_is_refused_without_repeating_it(
    which: Any, name: str, base: dict[str, Any], value: Any
) -> None:
    spec, auth = which()
    with pytest.raises(ValueError) as caught:
        validate_params(spec, auth, dict(base, **{name: value}))
    message = str(caught.value)
    assert f"auth.params.{name}" in message
    for form in _shown_forms(value):
        assert form not in message


def test_no_message_repeats_any_secret_sent_with_it() -> None:
    """Whatever else is wrong with the params, the secrets sent along are never echoed back."""
    secrets = {"s3AccessKey": "AKIA-SECRET-ACCESS", "s3SecretKey": SECRET, "s3SessionToken": "token-SECRET-xyz"}
    wrongs: list[dict[str, Any]] = [
        {"bucketName": "NOT A BUCKET"},
        {"serviceUrl": "gopher://x"},
        {"folderPath": "../up"},
        {"unknown": "x"},
        {"region": 5},
        {"S3SECRETKEY": "again"},
    ]
    for wrong in wrongs:
        with pytest.raises(ValueError) as caught:
            validate_params(*s3(), {**secrets, **wrong})
        for value in secrets.values():
            assert value not in str(caught.value), wrong


def test_an_unknown_param_is_named_but_its_value_is_not_repeated() -> None:
    with pytest.raises(ValueError) as caught:
        validate_params(*s3(), dict(S3_OK, secretKey=SECRET))
    assert "auth.params.secretKey: not a param of 'Access Key'" in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("port", ["²", "2²", "①"])
def test_port_of_unicode_digits_is_refused_naming_the_param(port: str) -> None:
    """str.isdigit() accepts digits that int() refuses: the message must still name the param."""
    with pytest.raises(ValueError, match=r"^auth\.params\.port: must be an integer"):
        validate_params(*sftp_password(), dict(SFTP_OK, port=port))


@pytest.mark.filterwarnings("ignore:Warning. bcrypt.kdf:UserWarning")  # few rounds on purpose: a fast test
def test_an_encrypted_openssh_key_asking_for_too_many_kdf_rounds_is_refused_before_decrypting() -> None:
    import asyncssh

    from audiencehub.sources.sftp import MAX_KDF_ROUNDS, kdf_rounds, load_private_key

    key = asyncssh.generate_private_key("ssh-ed25519")
    cheap = key.export_private_key("openssh", passphrase="pw", rounds=2).decode()
    costly = key.export_private_key("openssh", passphrase="pw", rounds=MAX_KDF_ROUNDS + 1).decode()
    assert kdf_rounds(cheap) == 2
    assert kdf_rounds(key.export_private_key("openssh").decode()) == 0
    load_private_key(cheap, "pw")  # accepted
    with pytest.raises(ValueError, match=rf"privateKeyContent: .*{MAX_KDF_ROUNDS + 1} bcrypt rounds") as caught:
        load_private_key(costly, "pw")
    assert "pw" not in str(caught.value).replace("passphrase", "")
