"""The key file and the keys derived from it: sealed credentials open only with the same key and purpose."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from audiencehub.services.keyring import KEY_BYTES, Keyring


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring(tmp_path / "secrets.key")


def test_seal_then_open_gives_the_plaintext_back(keyring: Keyring) -> None:
    secret = b'{"accessKeyId": "AKIA...", "secretAccessKey": "s3cr\\xc3\\xa9t"}'
    token = keyring.seal(secret)
    assert secret not in base64.urlsafe_b64decode(token)
    assert keyring.open(token) == secret
    assert keyring.open(keyring.seal(b"", purpose="x"), purpose="x") == b""


def test_each_seal_is_fresh(keyring: Keyring) -> None:
    assert keyring.seal(b"same") != keyring.seal(b"same")


def test_a_key_file_read_again_opens_what_was_sealed(keyring: Keyring) -> None:
    token = keyring.seal(b"kept across restarts")
    assert Keyring(keyring.path).open(token) == b"kept across restarts"
    assert stat.S_IMODE(keyring.path.stat().st_mode) == 0o600
    assert len(base64.b64decode(keyring.path.read_bytes().strip())) == KEY_BYTES


@pytest.mark.parametrize("position", [0, 11, 12, -1])
def test_a_tampered_token_does_not_open(keyring: Keyring, position: int) -> None:
    raw = bytearray(base64.urlsafe_b64decode(keyring.seal(b"connection secret")))
    raw[position] ^= 0x01
    with pytest.raises(InvalidTag):
        keyring.open(base64.urlsafe_b64encode(bytes(raw)).decode())


def test_a_truncated_token_does_not_open(keyring: Keyring) -> None:
    raw = base64.urlsafe_b64decode(keyring.seal(b"connection secret"))
    with pytest.raises(InvalidTag):
        keyring.open(base64.urlsafe_b64encode(raw[:-1]).decode())


def test_another_purpose_does_not_open(keyring: Keyring) -> None:
    token = keyring.seal(b"connection secret", purpose="credentials")
    with pytest.raises(InvalidTag):
        keyring.open(token, purpose="tokens")
    assert keyring.derive("credentials") != keyring.derive("tokens")


def test_another_key_does_not_open(keyring: Keyring, tmp_path: Path) -> None:
    token = keyring.seal(b"connection secret")
    with pytest.raises(InvalidTag):
        Keyring(tmp_path / "other.key").open(token)


def test_a_damaged_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    path.write_bytes(base64.b64encode(b"short") + b"\n")
    with pytest.raises(RuntimeError, match="restore it or remove it"):
        Keyring(path)
