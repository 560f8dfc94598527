"""The secret key sealed with DPAPI: MachineDpapi over a recording fake of win32crypt (machine
scope, no prompt), the sealed key file, and the clear refusal off Windows."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from certkeeper.errors import SecretKeyError
from certkeeper.platform.dpapi import CRYPTPROTECT_LOCAL_MACHINE, CRYPTPROTECT_UI_FORBIDDEN, MachineDpapi, machine_dpapi
from certkeeper.sealing import DPAPI_PREFIX, KeyFile, generate_key, load_sealer


class FakeError(Exception):
    def __init__(self, winerror: int, funcname: str, strerror: str) -> None:
        super().__init__(winerror, funcname, strerror)
        self.winerror, self.funcname, self.strerror = winerror, funcname, strerror


class FakeCrypt:
    """win32crypt's two calls; 'sealing' reverses the bytes behind a marker, and records the call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def CryptProtectData(self, data: bytes, description: str | None, entropy: Any, reserved: Any,
                         prompt: Any, flags: int) -> bytes:
        self.calls.append(("protect", description, entropy, reserved, prompt, flags))
        return b"DPAPI" + bytes(reversed(data))

    def CryptUnprotectData(self, blob: bytes, entropy: Any, reserved: Any, prompt: Any,
                           flags: int) -> tuple[str, bytes]:
        self.calls.append(("unprotect", entropy, reserved, prompt, flags))
        if not blob.startswith(b"DPAPI"):
            raise FakeError(13, "CryptUnprotectData", "The data is invalid.")
        return "certkeeper secret keys", bytes(reversed(blob[5:]))


def test_machine_dpapi_seals_at_machine_scope_without_a_prompt() -> None:
    crypt = FakeCrypt()
    dpapi = MachineDpapi(crypt=crypt, error=FakeError)
    blob = dpapi.protect(b"key material", "certkeeper secret keys")
    assert dpapi.unprotect(blob) == b"key material"
    assert crypt.calls[0] == ("protect", "certkeeper secret keys", None, None, None,
                              CRYPTPROTECT_LOCAL_MACHINE | CRYPTPROTECT_UI_FORBIDDEN)
    assert (CRYPTPROTECT_LOCAL_MACHINE, CRYPTPROTECT_UI_FORBIDDEN) == (0x4, 0x1)  # dpapi.h
    assert crypt.calls[1] == ("unprotect", None, None, None, CRYPTPROTECT_UI_FORBIDDEN)
    with pytest.raises(SecretKeyError, match=r"sealed on another machine.*The data is invalid"):
        dpapi.unprotect(b"garbage")


def test_dpapi_is_windows_only_and_pywin32_is_imported_only_when_used() -> None:
    with pytest.raises(SecretKeyError, match="dpapi is Windows only"):
        machine_dpapi("linux")
    assert isinstance(machine_dpapi("win32"), MachineDpapi)
    assert "win32crypt" not in sys.modules


def test_a_sealed_key_file_holds_no_key_in_clear_and_reads_back(tmp_path: Path) -> None:
    crypt = FakeCrypt()
    key_file = KeyFile(tmp_path / "data" / "secret.key", protection="dpapi",
                       dpapi=lambda: MachineDpapi(crypt=crypt, error=FakeError))
    keys = [generate_key(), generate_key()]
    key_file.write(keys)
    text = key_file.path.read_text()
    assert all(key.decode() not in text for key in keys)
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert len(body) == 1 and body[0].startswith(DPAPI_PREFIX)
    assert key_file.is_sealed() and key_file.read() == keys


def test_a_plain_key_file_is_sealed_in_place_when_dpapi_is_asked_for(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CERTKEEPER_SECRET_KEY", raising=False)
    path = tmp_path / "secret.key"
    plain = KeyFile(path)
    keys = [generate_key()]
    plain.write(keys)
    assert not plain.is_sealed()
    crypt = FakeCrypt()
    sealed = KeyFile(path, protection="dpapi", dpapi=lambda: MachineDpapi(crypt=crypt, error=FakeError))
    sealer = load_sealer(sealed, create=False)
    assert sealer.keys == keys
    assert sealed.is_sealed() and keys[0].decode() not in path.read_text()
    assert load_sealer(sealed, create=False).keys == keys  # and opens again


def test_off_windows_dpapi_is_refused_before_anything_is_written(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CERTKEEPER_SECRET_KEY", raising=False)
    path = tmp_path / "data" / "secret.key"
    with pytest.raises(SecretKeyError, match="dpapi is Windows only"):
        load_sealer(KeyFile(path, protection="dpapi", dpapi=lambda: machine_dpapi("linux")), create=True)
    assert not path.exists()


def test_a_sealed_file_met_off_windows_says_so(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    KeyFile(path, protection="dpapi", dpapi=lambda: MachineDpapi(crypt=FakeCrypt(), error=FakeError)).write(
        [generate_key()])
    with pytest.raises(SecretKeyError, match="sealed with DPAPI, which only the Windows machine that sealed it"):
        KeyFile(path, dpapi=lambda: machine_dpapi("linux")).read()
