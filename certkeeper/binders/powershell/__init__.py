"""Running PowerShell for the Exchange and IIS binders: one command at a time, through a Runner.

* :mod:`.commands` - a step as data (:class:`Command`) and its text (:func:`render`);
* :mod:`.local` - :class:`LocalRunner`, one ``powershell.exe`` per server per deploy;
* :mod:`.remote` - :class:`RemoteRunner`, PSRP to the Exchange or the default WinRM endpoint;
* :class:`RecordingRunner` - records and answers from a script, for tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from certkeeper.binders.powershell.commands import (
    REDACTED,
    SWITCH,
    Command,
    Placeholder,
    PowerShellError,
    SecureString,
    dry_run_text,
    prelude,
    quote,
    render,
)
from certkeeper.binders.powershell.local import LocalRunner, exchange_preamble
from certkeeper.binders.powershell.remote import RemoteRunner, kerberos_missing
from certkeeper.binders.powershell.versions import ExchangeVersion

__all__ = [
    "REDACTED",
    "SWITCH",
    "Command",
    "ExchangeVersion",
    "LocalRunner",
    "Placeholder",
    "PowerShellError",
    "RecordingRunner",
    "RemoteRunner",
    "Runner",
    "SecureString",
    "dry_run_text",
    "exchange_preamble",
    "kerberos_missing",
    "prelude",
    "quote",
    "render",
]


@runtime_checkable
class Runner(Protocol):
    """Runs one command and returns its output objects (dicts / strings / numbers).

    Raises:
        PowerShellError: the command wrote an error record or the runner could not run it.
    """

    def invoke(self, command: Command) -> list[Any]: ...

    def close(self) -> None: ...


@dataclass
class RecordingRunner:
    """Records every command and answers from a script; for tests.

    ``outputs`` maps a cmdlet name to a function of the command returning its output;
    ``fail`` maps a cmdlet name to an error message (or a function deciding per command).
    """

    outputs: dict[str, Callable[[Command], list[Any]]] = field(default_factory=dict)
    fail: dict[str, str | Callable[[Command], str | None]] = field(default_factory=dict)
    calls: list[Command] = field(default_factory=list)
    closed: int = 0

    def invoke(self, command: Command) -> list[Any]:
        self.calls.append(command)
        failure = self.fail.get(command.name)
        message = failure(command) if callable(failure) else failure
        if message:
            raise PowerShellError(command, message)
        answer = self.outputs.get(command.name)
        return answer(command) if answer else []

    def close(self) -> None:
        self.closed += 1

    def names(self) -> list[str]:
        return [command.name for command in self.calls]

    def lines(self) -> list[str]:
        return [command.describe() for command in self.calls]

    def __iter__(self) -> Iterator[Command]:
        return iter(self.calls)
