"""One PowerShell step as data, and its text: what runs, what a log line or a dry run shows.

A :class:`Command` is a cmdlet name with *ordered* parameters (or a fixed ``param()`` script that
stands for one), so a recording runner can check exactly what runs, in which order, and
:func:`render` can print it as the PowerShell line the local runner executes. Parameter values
are plain Python values plus four markers:

* :data:`SWITCH` - a switch parameter (``-Force``);
* ``bytes`` - a ``[byte[]]`` (``-FileData``);
* :class:`SecureString` - a ``[SecureString]`` (``-Password``);
* :class:`Placeholder` - a value only known at run time (read from the server), in a dry run.

Bytes and secrets never appear in the text: the line names a variable (``-FileData $FileData``)
that the runner binds from its own channel (the local runner's stdin, PSRP's CLIXML for the
remote runner). PowerShell's script block logging (event 4104) records script *text*, so a secret
inlined into a script would land in the event log. :func:`prelude` shows how those variables are
bound, with the value as ``'<redacted>'``; that is what ``certkeeper deploy --dry-run`` prints.

Everything :func:`render` writes is PowerShell 2.0 (Exchange 2010 on Windows Server 2008 R2);
tests parse it with tree-sitter-powershell for every Exchange version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from certkeeper.errors import BindError

REDACTED = "<redacted>"


class _Switch:
    def __repr__(self) -> str:
        return "SWITCH"


#: value of a switch parameter (``-Force``, ``-Exportable``)
SWITCH: Any = _Switch()


@dataclass(frozen=True)
class SecureString:
    """A parameter PowerShell must receive as ``[SecureString]``; never shown."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "SecureString(***)"


@dataclass(frozen=True)
class Placeholder:
    """A value read from the server at run time; a dry run shows it as ``$name``."""

    name: str
    description: str
    #: a switch parameter's value (``-DoNotRequireSsl:$DoNotRequireSsl``)
    switch: bool = False


_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


def quote(value: str) -> str:
    """A PowerShell single-quoted string literal (``'`` doubled, as the language wants)."""
    return "'" + value.replace("'", "''") + "'"


def _literal(key: str, value: Any) -> str:
    if isinstance(value, SecureString | bytes | bytearray):
        return f"${key}"
    if isinstance(value, Placeholder):
        return f"${value.name}"
    if isinstance(value, bool):
        return "$true" if value else "$false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return ",".join(_literal(key, item) for item in value) if value else "@()"
    return quote(str(value))


@dataclass(frozen=True)
class Command:
    """One cmdlet call with ordered parameters, or a fixed ``param()`` script standing for one."""

    name: str
    parameters: tuple[tuple[str, Any], ...] = ()
    script: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for key, _ in self.parameters:
            if not _NAME.match(key):
                raise ValueError(f"parameter name {key!r} is not a PowerShell identifier")

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.parameters)

    def describe(self) -> str:
        """The command as one PowerShell line, secrets and bytes as variables: safe to log."""
        return render(self)

    def summary(self) -> str:
        """The cmdlet line a fixed script stands for (``Name -Param value``), secrets and bytes as
        variables: what a transcript or a plan shows in one line."""
        return f"{self.name} {_arguments(self)}".rstrip()

    def __str__(self) -> str:
        return self.describe()


def _arguments(command: Command) -> str:
    parts = []
    for key, value in command.parameters:
        if value is SWITCH:
            parts.append(f"-{key}")
        elif isinstance(value, bool) or (isinstance(value, Placeholder) and value.switch):
            parts.append(f"-{key}:{_literal(key, value)}")
        else:
            parts.append(f"-{key} {_literal(key, value)}")
    return " ".join(parts)


def render(command: Command) -> str:
    """The PowerShell text for ``command``: a cmdlet line, or ``& { script } -Param value``."""
    arguments = _arguments(command)
    if command.script is None:
        return f"{command.name} {arguments}".rstrip()
    return f"& {{\n{command.script.rstrip()}\n}} {arguments}".rstrip()


def bound_values(command: Command) -> list[tuple[str, str, Any]]:
    """``(variable, kind, value)`` for the values the runner binds: kind ``bytes`` or ``secret``."""
    out: list[tuple[str, str, Any]] = []
    for key, value in command.parameters:
        if isinstance(value, SecureString):
            out.append((key, "secret", value.value))
        elif isinstance(value, bytes | bytearray):
            out.append((key, "bytes", bytes(value)))
    return out


def prelude(command: Command) -> list[str]:
    """Lines that show how the bound variables get their values, with the values redacted."""
    lines = []
    for key, kind, _ in bound_values(command):
        if kind == "secret":
            lines.append(f"${key} = ConvertTo-SecureString -String {quote(REDACTED)} -AsPlainText -Force")
        else:
            lines.append(f"${key} = [Convert]::FromBase64String({quote(REDACTED)})")
    for _, value in command.parameters:
        if isinstance(value, Placeholder):
            lines.append(f"# ${value.name}: {value.description}")
    return lines


def dry_run_text(command: Command, *, note: str | None = None) -> str:
    """What ``deploy --dry-run`` shows for one step: a note, the prelude, the command."""
    lines = [f"# {line}" for line in (note or "").splitlines() if line.strip()]
    lines += prelude(command)
    lines.append(render(command))
    return "\n".join(lines)


class PowerShellError(BindError):
    """A PowerShell command failed; ``command`` is the command line (no secrets)."""

    def __init__(self, command: Command, message: str) -> None:
        super().__init__(f"{command.name} failed: {message}")
        self.command = render(command) if command.script is None else command.name
        self.cmdlet = command.name
