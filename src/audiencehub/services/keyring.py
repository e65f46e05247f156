"""The server's key file (``secrets.key``, mode 0600) and the keys derived from it.

One random root key; purpose keys are derived with HKDF so a token-signing key never doubles as
an encryption key. Credentials stored by later features are sealed with AES-GCM.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32


class Keyring:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._root = _load_or_create(path)

    def derive(self, purpose: str) -> bytes:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose.encode())
        return hkdf.derive(self._root)

    def seal(self, plaintext: bytes, purpose: str = "credentials") -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(self.derive(purpose)).encrypt(nonce, plaintext, purpose.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, token: str, purpose: str = "credentials") -> bytes:
        raw = base64.urlsafe_b64decode(token.encode())
        return AESGCM(self.derive(purpose)).decrypt(raw[:12], raw[12:], purpose.encode())


def _load_or_create(path: Path) -> bytes:
    if path.exists():
        data = base64.b64decode(path.read_bytes().strip())
        if len(data) != KEY_BYTES:
            raise RuntimeError(f"{path} does not hold a {KEY_BYTES}-byte key; restore it or remove it")
        return data
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    # O_EXCL: two processes starting at once must not both write a key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _load_or_create(path)
    with os.fdopen(fd, "wb") as fh:
        fh.write(base64.b64encode(key) + b"\n")
    return key
