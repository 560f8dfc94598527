"""Secrets at rest: the Fernet keys that encrypt private keys and other secrets in the store.

The keys live outside the database: in ``$CERTKEEPER_SECRET_KEY`` (one or more Fernet keys separated
by commas, newest first) or in a key file (one key per line, newest first, mode 0600, created at
``certkeeper init`` or first use). :class:`Sealer` wraps :class:`~cryptography.fernet.MultiFernet`,
so after ``certkeeper keys rotate`` older keys still open what they sealed until it is re-encrypted.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from certkeeper.atomicfile import atomic_write, make_dirs, remove_stale_temps
from certkeeper.errors import SecretKeyError


class Sealer:
    """Encrypts and decrypts secrets with the newest key; opens anything sealed by any key."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SecretKeyError("no secret key given")
        try:
            self._fernets = [Fernet(key) for key in keys]
        except (ValueError, TypeError) as exc:
            raise SecretKeyError("a secret key is malformed (expected 32 url-safe base64 bytes)") from exc
        self.keys = list(keys)
        self._multi = MultiFernet(self._fernets)

    def seal(self, plaintext: bytes) -> bytes:
        return self._multi.encrypt(plaintext)

    def open(self, token: bytes) -> bytes:
        try:
            return self._multi.decrypt(token)
        except InvalidToken:
            raise SecretKeyError(
                "the secret key does not open this store (wrong key file or $CERTKEEPER_SECRET_KEY?)"
            ) from None

    def reseal(self, token: bytes) -> bytes:
        """Re-encrypt ``token`` under the newest key (for key rotation)."""
        try:
            return self._multi.rotate(token)
        except InvalidToken:
            raise SecretKeyError("a stored secret cannot be opened with the configured keys") from None


def generate_key() -> bytes:
    return Fernet.generate_key()


def parse_keys(text: str) -> list[bytes]:
    keys = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        for part in line.split(","):
            part = part.strip()
            if part:
                keys.append(part.encode("ascii"))
    return keys


def read_key_file(path: Path) -> list[bytes]:
    try:
        return parse_keys(path.read_text(encoding="ascii"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretKeyError(f"cannot read the secret key file {path}: {exc}") from None


def write_key_file(path: Path, keys: list[bytes]) -> None:
    """Write the key file atomically, mode 0600, in a 0700 folder; a temp file a killed earlier
    write left beside it (it holds keys) is removed first."""
    make_dirs(path.parent, 0o700)
    remove_stale_temps(path)
    header = "# certkeeper secret keys, newest first. Keep a backup: without it the store cannot be opened.\n"
    atomic_write(path, (header + "".join(key.decode() + "\n" for key in keys)).encode(), mode=0o600)


def load_sealer(key_file: Path, *, create: bool) -> Sealer:
    """The sealer from ``$CERTKEEPER_SECRET_KEY`` or ``key_file``; create the file if allowed."""
    env = os.environ.get("CERTKEEPER_SECRET_KEY")
    if env:
        return Sealer(parse_keys(env))
    keys = read_key_file(key_file)
    if not keys:
        if not create:
            raise SecretKeyError(
                f"no secret key: {key_file} is missing and $CERTKEEPER_SECRET_KEY is not set"
            )
        keys = [generate_key()]
        write_key_file(key_file, keys)
    return Sealer(keys)
