"""The secret key file sealed to this machine with DPAPI (``[store] secret_key_protection = "dpapi"``).

``CryptProtectData`` with ``CRYPTPROTECT_LOCAL_MACHINE`` (Microsoft Learn, "CryptProtectData
function (dpapi.h)") encrypts with a key Windows keeps for the machine: any process on this
machine can open it, so the service account and the admin's shell both can, and nothing can
once the file is copied to another machine (a backup, a disk image, a stolen VM). Who may read the
file on this machine is the data folder's DACL's job (:mod:`certkeeper.platform.protection`).
``CRYPTPROTECT_UI_FORBIDDEN``: a service has no desktop to prompt on.

DPAPI exists only on Windows: elsewhere :func:`machine_dpapi` refuses with a clear error.
"""

from __future__ import annotations

from typing import Any, Protocol

from certkeeper.errors import SecretKeyError
from certkeeper.platform import CURRENT

#: dpapi.h (Microsoft Learn, "CryptProtectData function")
CRYPTPROTECT_UI_FORBIDDEN = 0x1
CRYPTPROTECT_LOCAL_MACHINE = 0x4

WINDOWS_ONLY = ('[store] secret_key_protection = "dpapi": dpapi is Windows only (a Windows API); on this machine '
                'remove the setting or set it to "file"')


class Dpapi(Protocol):
    """Seals and opens bytes for this machine."""

    def protect(self, data: bytes, description: str) -> bytes: ...

    def unprotect(self, blob: bytes) -> bytes: ...


class MachineDpapi:
    """:class:`Dpapi` with pywin32's ``win32crypt``, machine scope. ``crypt`` (win32crypt) and
    ``error`` (pywintypes.error) are imported on first use; a test passes recording fakes."""

    flags = CRYPTPROTECT_LOCAL_MACHINE | CRYPTPROTECT_UI_FORBIDDEN

    def __init__(self, crypt: Any = None, error: type[Exception] | None = None) -> None:
        self._crypt = crypt
        self._error = error

    def _modules(self) -> tuple[Any, type[Exception]]:
        import importlib

        if self._crypt is None:
            self._crypt = importlib.import_module("win32crypt")
        if self._error is None:
            self._error = importlib.import_module("pywintypes").error
        assert self._error is not None
        return self._crypt, self._error

    def protect(self, data: bytes, description: str) -> bytes:
        crypt, error = self._modules()
        try:
            return bytes(crypt.CryptProtectData(data, description, None, None, None, self.flags))
        except error as exc:
            raise SecretKeyError(f"DPAPI could not seal the secret key: {getattr(exc, 'strerror', exc)}") from None

    def unprotect(self, blob: bytes) -> bytes:
        crypt, error = self._modules()
        try:
            _description, data = crypt.CryptUnprotectData(blob, None, None, None, CRYPTPROTECT_UI_FORBIDDEN)
        except error as exc:
            raise SecretKeyError(
                "DPAPI could not open the secret key file: it was sealed on another machine, or this machine's "
                f"DPAPI keys changed ({getattr(exc, 'strerror', exc)}); restore the keys from your backup"
            ) from None
        return bytes(data)


def machine_dpapi(platform: str = CURRENT) -> Dpapi:
    """DPAPI at machine scope on Windows; a :class:`SecretKeyError` elsewhere."""
    if platform != "win32":
        raise SecretKeyError(WINDOWS_ONLY)
    return MachineDpapi()
