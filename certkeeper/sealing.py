"""Secrets at rest: the Fernet keys that encrypt private keys and other secrets in the store.

The keys live outside the database: in ``$CERTKEEPER_SECRET_KEY`` (one or more Fernet keys separated
by commas, newest first) or in a key file (one key per line, newest first, mode 0600, created at
``certkeeper init`` or first use). :class:`Sealer` wraps :class:`~cryptography.fernet.MultiFernet`,
so after ``certkeeper keys rotate`` older keys still open what they sealed until it is re-encrypted.

With ``[store] secret_key_protection = "dpapi"`` (Windows only) the key file holds the keys sealed
with DPAPI for this machine (:mod:`certkeeper.platform.dpapi`): one ``dpapi:<base64>`` line. A plain
key file found then is sealed in place on first use.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from certkeeper.atomicfile import atomic_write, remove_stale_temps
from certkeeper.errors import SecretKeyError
from certkeeper.platform.dpapi import Dpapi, machine_dpapi
from certkeeper.platform.protection import make_private_dir

if TYPE_CHECKING:
    from certkeeper.config import Config

log = logging.getLogger(__name__)

#: how a line of a key file sealed with DPAPI starts
DPAPI_PREFIX = "dpapi:"


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


PLAIN_HEADER = "# certkeeper secret keys, newest first. Keep a backup: without it the store cannot be opened.\n"
SEALED_HEADER = ("# certkeeper secret keys, sealed with DPAPI for this machine only (machine scope): keep a\n"
                 "# backup of the keys themselves elsewhere; this file cannot be opened on another machine.\n")


class KeyFile:
    """The secret key file: plain (``protection="file"``) or sealed with DPAPI (``"dpapi"``).

    ``dpapi`` gives the DPAPI to use; by default this platform's (:func:`machine_dpapi`, which
    refuses off Windows), asked for only when a sealed file is read or written."""

    def __init__(self, path: Path, *, protection: str = "file",
                 dpapi: Callable[[], Dpapi] = machine_dpapi) -> None:
        self.path = path
        self.protection = protection
        self._dpapi_factory = dpapi
        self._dpapi: Dpapi | None = None

    @classmethod
    def of(cls, config: Config) -> KeyFile:
        return cls(config.secret_key_file, protection=config.settings.store.secret_key_protection)

    def dpapi(self) -> Dpapi:
        if self._dpapi is None:
            self._dpapi = self._dpapi_factory()
        return self._dpapi

    def _text(self) -> str | None:
        try:
            return self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretKeyError(f"cannot read the secret key file {self.path}: {exc}") from None

    def is_sealed(self) -> bool:
        text = self._text()
        return text is not None and any(line.startswith(DPAPI_PREFIX) for line in text.splitlines())

    def read(self) -> list[bytes]:
        """The keys, newest first; [] when the file does not exist."""
        text = self._text()
        if text is None:
            return []
        sealed = [line[len(DPAPI_PREFIX):].strip() for line in text.splitlines() if line.startswith(DPAPI_PREFIX)]
        if not sealed:
            return parse_keys(text)
        try:
            dpapi = self.dpapi()
        except SecretKeyError:
            raise SecretKeyError(f"{self.path} is sealed with DPAPI, which only the Windows machine that sealed "
                                 "it can open; give this machine the keys in $CERTKEEPER_SECRET_KEY") from None
        keys: list[bytes] = []
        for blob in sealed:
            try:
                raw = base64.b64decode(blob, validate=True)
            except (binascii.Error, ValueError):
                raise SecretKeyError(f"{self.path}: a dpapi: line is not base64 (the file is damaged)") from None
            keys.extend(parse_keys(dpapi.unprotect(raw).decode("ascii")))
        return keys

    def write(self, keys: list[bytes]) -> None:
        """Write the key file atomically, mode 0600, in a private folder (0700; the data folder's DACL
        on Windows); a temp file a killed earlier write left beside it (it holds keys) is removed first."""
        plain = "".join(key.decode() + "\n" for key in keys)
        if self.protection == "dpapi":
            blob = self.dpapi().protect(plain.encode("ascii"), "certkeeper secret keys")
            text = SEALED_HEADER + DPAPI_PREFIX + base64.b64encode(blob).decode("ascii") + "\n"
        else:
            text = PLAIN_HEADER + plain
        make_private_dir(self.path.parent)
        remove_stale_temps(self.path)
        atomic_write(self.path, text.encode("ascii"), mode=0o600)


def load_sealer(key_file: KeyFile | Path, *, create: bool) -> Sealer:
    """The sealer from ``$CERTKEEPER_SECRET_KEY`` or ``key_file``; create the file if allowed."""
    env = os.environ.get("CERTKEEPER_SECRET_KEY")
    if env:
        return Sealer(parse_keys(env))
    if isinstance(key_file, Path):
        key_file = KeyFile(key_file)
    if key_file.protection == "dpapi":
        key_file.dpapi()  # off Windows: the clear "Windows only" error before anything is read or written
    keys = key_file.read()
    if not keys:
        if not create:
            raise SecretKeyError(
                f"no secret key: {key_file.path} is missing and $CERTKEEPER_SECRET_KEY is not set"
            )
        keys = [generate_key()]
        key_file.write(keys)
    elif key_file.protection == "dpapi" and not key_file.is_sealed():
        try:
            key_file.write(keys)
            log.info("sealed the secret key file %s with DPAPI", key_file.path)
        except OSError as exc:
            log.warning("could not seal the secret key file %s with DPAPI yet: %s", key_file.path, exc)
    return Sealer(keys)
