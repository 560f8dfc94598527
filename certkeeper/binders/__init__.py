"""Binders put a certificate where clients meet it and report what the endpoint serves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Self, cast, runtime_checkable

from certkeeper.model import Bundle, Verification
from certkeeper.plugins import PluginContext, load_plugin


@runtime_checkable
class Binder(Protocol):
    """Deploys a bundle, given the previous one so it can swap and roll back (win-acme style).

    ``deploy`` is idempotent. Rolling back is ``deploy(previous, bundle)``. ``verify`` says what
    the endpoints serve now. ``retire(previous)`` removes the old certificate once the new one is
    verified (only what certkeeper installed); it may be a no-op.
    """

    name: str

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: PluginContext) -> Self: ...

    def deploy(self, bundle: Bundle, previous: Bundle | None) -> None: ...

    def verify(self, bundle: Bundle) -> Verification: ...

    def retire(self, previous: Bundle, current: Bundle) -> None: ...


@dataclass(frozen=True)
class PlannedStep:
    """One step a deploy would run: where, what, and the exact script (secrets as ``<redacted>``).

    ``endpoint`` says who runs it: ``exchange`` (the Exchange PowerShell endpoint), ``windows``
    (the server's default WinRM endpoint or the local ``powershell.exe``), or ``certkeeper``
    (this process, e.g. the TLS probe; its script is a comment).
    """

    binding: str
    server: str
    step: str
    script: str
    endpoint: str = "exchange"

    def to_dict(self) -> dict[str, str]:
        return {
            "binding": self.binding,
            "server": self.server,
            "step": self.step,
            "endpoint": self.endpoint,
            "script": self.script,
        }


@runtime_checkable
class SupportsDryRun(Protocol):
    """A binder that can say what ``deploy(bundle, previous)`` would run, running nothing."""

    def plan(self, bundle: Bundle, previous: Bundle | None) -> list[PlannedStep]: ...


#: the built-in binders: config ``type`` -> "module:Class"
BINDERS: Mapping[str, str] = {
    "files": "certkeeper.binders.files:FilesBinder",
    "haproxy": "certkeeper.binders.haproxy:HaproxyBinder",
    "iis": "certkeeper.binders.iis:IisBinder",
    "exchange": "certkeeper.binders.exchange:ExchangeBinder",
}


def load_binder(kind: str) -> type[Binder]:
    """The binder class for a binding ``type``; ConfigError names the known types."""
    return cast("type[Binder]", load_plugin(BINDERS, kind, "binding"))
