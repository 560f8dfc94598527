"""Running PowerShell for the Exchange and IIS binders: one command at a time, through a Runner.

A :class:`Command` is a cmdlet name with *ordered* parameters, so a recording runner (tests, dry
runs) can check exactly which cmdlets run, with which parameters, in which order. Parameter
values are plain Python values plus three markers:

* :data:`SWITCH` - a switch parameter (``-Force``);
* ``bytes`` - a ``[byte[]]`` (``-FileData``); shown as ``<N bytes>`` in logs;
* :class:`SecureString` - a ``[SecureString]`` (``-Password``); shown as ``<SecureString>``.

:meth:`Command.describe` is the only text form that is ever logged or put in an error message,
and it never contains a secret or the PFX bytes.

Some steps cannot be one cmdlet call (``Import-PfxCertificate`` wants a file path; an IIS
binding change calls a method). Such a command carries a fixed ``script`` (a ``param()`` block)
that receives the same parameters; its ``name`` still says which cmdlet it stands for.

Runners:

* :class:`LocalRunner` - ``powershell.exe -NoProfile -NonInteractive`` on this Windows machine.
  The script (no secrets) goes in ``-EncodedCommand``; parameter values (the PFX bytes, the
  password) go through stdin as JSON and are turned into ``[byte[]]`` / ``SecureString`` inside
  PowerShell, so they never appear on a command line. For Exchange it first loads the
  management shell: the ``Microsoft.Exchange.Management.PowerShell.E2010`` snap-in on 2010,
  ``RemoteExchange.ps1`` + ``Connect-ExchangeServer -Auto`` on 2013 and later
  (reference/exchange.md §4.1).
* :class:`RemoteRunner` - PSRP with pypsrp to ``http://SERVER/PowerShell``, configuration
  ``Microsoft.Exchange``, Kerberos (or NTLM), the Exchange way (§4.2-4.3). The Exchange endpoint
  is a no-language runspace, so only cmdlets are sent (``add_cmdlet`` / ``add_parameter``),
  ``bytes`` travel as a CLIXML byte array and passwords as an encrypted SecureString after a
  session key exchange. For IIS, point it at the default WinRM endpoint
  (``configuration_name="Microsoft.PowerShell"``, port 5985/5986, path ``wsman``), where
  script commands are allowed.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from certkeeper.errors import BindError, ConfigError

log = logging.getLogger(__name__)


class ExchangeVersion(StrEnum):
    """Exchange major versions; 2016, 2019 and SE share one cmdlet surface for certificates."""

    EX2010 = "2010"
    EX2013 = "2013"
    EX2016 = "2016"
    EX2019 = "2019"
    SE = "se"

    @property
    def is_2013_or_later(self) -> bool:
        return self is not ExchangeVersion.EX2010


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


def _describe_value(value: Any) -> str:
    if isinstance(value, SecureString):
        return "<SecureString>"
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, bool):
        return "$true" if value else "$false"
    if isinstance(value, list | tuple):
        return ",".join(_describe_value(item) for item in value)
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


@dataclass(frozen=True)
class Command:
    """One cmdlet call with ordered parameters (or a fixed script standing for one)."""

    name: str
    parameters: tuple[tuple[str, Any], ...] = ()
    script: str | None = field(default=None, repr=False)

    @classmethod
    def cmdlet(cls, name: str, *parameters: tuple[str, Any], script: str | None = None) -> Command:
        return cls(name, tuple(parameters), script)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.parameters)

    def describe(self) -> str:
        """The command as a PowerShell line, with secrets and bytes masked: safe to log."""
        parts = [self.name]
        for key, value in self.parameters:
            if value is SWITCH:
                parts.append(f"-{key}")
            elif isinstance(value, bool):
                parts.append(f"-{key}:{_describe_value(value)}")
            else:
                parts.append(f"-{key} {_describe_value(value)}")
        return " ".join(parts)

    def __str__(self) -> str:
        return self.describe()


class PowerShellError(BindError):
    """A PowerShell command failed; ``command`` is the masked command line."""

    def __init__(self, command: Command, message: str) -> None:
        super().__init__(f"{command.name} failed: {message}")
        self.command = command.describe()
        self.cmdlet = command.name


@runtime_checkable
class Runner(Protocol):
    """Runs one command and returns its output objects (dicts / strings / numbers).

    Raises:
        PowerShellError: the command wrote an error or the runner could not run it.
    """

    def invoke(self, command: Command) -> list[Any]: ...

    def close(self) -> None: ...


# ----------------------------------------------------------------------------- local


def exchange_preamble(version: ExchangeVersion) -> str:
    """The lines that load the Exchange Management Shell in a plain powershell.exe."""
    if version is ExchangeVersion.EX2010:
        return "Add-PSSnapin Microsoft.Exchange.Management.PowerShell.E2010 -ErrorAction Stop\n"
    return (
        ". (Join-Path $env:ExchangeInstallPath 'bin\\RemoteExchange.ps1')\n"
        "Connect-ExchangeServer -Auto -ClientApplication:ManagementShell\n"
    )


_LOCAL_TEMPLATE = """\
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
{preamble}$request = [Console]::In.ReadToEnd() | ConvertFrom-Json
$p = @{{}}
foreach ($item in $request.parameters) {{
    switch ($item.kind) {{
        'switch' {{ $p[$item.name] = [switch]$true }}
        'bytes'  {{ $p[$item.name] = [byte[]][Convert]::FromBase64String($item.value) }}
        'secret' {{ $p[$item.name] = ConvertTo-SecureString -String $item.value -AsPlainText -Force }}
        'list'   {{ $p[$item.name] = [string[]]$item.value }}
        default  {{ $p[$item.name] = $item.value }}
    }}
}}
{invoke}
Write-Output '{marker}'
@($out) | ForEach-Object {{ $_ }} | ConvertTo-Json -Depth 3 -Compress
"""


#: printed before the JSON result: the Exchange shell's banner (Write-Host) shares stdout
OUTPUT_MARKER = "@@certkeeper-output@@"


def _encode_value(name: str, value: Any) -> dict[str, Any]:
    if value is SWITCH:
        return {"name": name, "kind": "switch", "value": True}
    if isinstance(value, bytes | bytearray):
        return {"name": name, "kind": "bytes", "value": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, SecureString):
        return {"name": name, "kind": "secret", "value": value.value}
    if isinstance(value, list | tuple):
        return {"name": name, "kind": "list", "value": [str(item) for item in value]}
    return {"name": name, "kind": "value", "value": value}


class LocalRunner:
    """``powershell.exe -NoProfile -NonInteractive`` on the local (Windows) machine."""

    def __init__(
        self,
        *,
        exchange: ExchangeVersion | None = None,
        executable: str = "powershell.exe",
        timeout: float = 300,
    ) -> None:
        self.exchange = exchange
        self.executable = executable
        self.timeout = timeout

    def script(self, command: Command) -> str:
        """The PowerShell text run for ``command``; holds no parameter values."""
        preamble = exchange_preamble(self.exchange) if self.exchange else ""
        if command.script is not None:
            invoke = f"$block = {{\n{command.script}\n}}\n$out = & $block @p"
        else:
            invoke = "$out = & $request.name @p"
        return _LOCAL_TEMPLATE.format(preamble=preamble, invoke=invoke, marker=OUTPUT_MARKER)

    def argv(self, command: Command) -> list[str]:
        encoded = base64.b64encode(self.script(command).encode("utf-16-le")).decode()
        return [
            self.executable,
            "-NoProfile",
            "-NonInteractive",
            "-ExecutionPolicy",
            "Bypass",
            "-EncodedCommand",
            encoded,
        ]

    @staticmethod
    def request(command: Command) -> bytes:
        """The stdin document: the cmdlet name and the parameter values (secrets included)."""
        return json.dumps(
            {
                "name": command.name,
                "parameters": [_encode_value(key, value) for key, value in command.parameters],
            }
        ).encode()

    def invoke(self, command: Command) -> list[Any]:
        log.debug("powershell: %s", command.describe())
        try:
            done = subprocess.run(
                self.argv(command),
                input=self.request(command),
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise PowerShellError(command, f"no answer within {self.timeout:g}s") from None
        except OSError as exc:
            raise PowerShellError(command, f"cannot run {self.executable}: {exc.strerror or exc}") from None
        if done.returncode != 0:
            lines = [line for line in done.stderr.decode(errors="replace").splitlines() if line.strip()]
            raise PowerShellError(command, (lines[0] if lines else f"exit status {done.returncode}")[:300])
        stdout = done.stdout.decode(errors="replace")
        if OUTPUT_MARKER not in stdout:
            # never guess from banner text: "no output" would read as "certificate not there"
            raise PowerShellError(command, "the script ended without its output marker")
        text = stdout.rpartition(OUTPUT_MARKER)[2].strip()
        if not text:
            return []
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            raise PowerShellError(command, "the output is not JSON") from None
        return parsed if isinstance(parsed, list) else [parsed]

    def close(self) -> None:
        return None


# ----------------------------------------------------------------------------- remote


class RemoteRunner:
    """PSRP (pypsrp) to an Exchange server's ``/PowerShell`` endpoint, or any WinRM endpoint.

    The runspace pool opens on first use and stays open until :meth:`close` (Exchange limits
    the number of remote sessions, so always close; the binders do).
    """

    def __init__(
        self,
        server: str,
        *,
        auth: str = "kerberos",
        username: str | None = None,
        password: Callable[[], str] | None = None,
        port: int = 80,
        path: str = "PowerShell",
        ssl: bool = False,
        configuration_name: str = "Microsoft.Exchange",
        cert_validation: bool = True,
        timeout: float = 300,
    ) -> None:
        if auth not in ("kerberos", "ntlm", "negotiate"):
            raise ConfigError(f"PowerShell auth {auth!r}: use kerberos, ntlm or negotiate")
        self.server = server
        self.auth = auth
        self.username = username
        self._password = password
        self.port = port
        self.path = path
        self.ssl = ssl
        self.configuration_name = configuration_name
        self.cert_validation = cert_validation
        self.timeout = timeout
        self._pool: Any = None
        self._keys_exchanged = False

    def _open(self) -> Any:
        if self._pool is None:
            from pypsrp.powershell import RunspacePool
            from pypsrp.wsman import WSMan

            wsman = WSMan(
                self.server,
                port=self.port,
                path=self.path,
                ssl=self.ssl,
                auth=self.auth,
                username=self.username,
                password=self._password() if self._password else None,
                cert_validation=self.cert_validation,
                operation_timeout=int(self.timeout),
                read_timeout=int(self.timeout) + 10,
            )
            pool = RunspacePool(wsman, configuration_name=self.configuration_name)
            pool.open()
            self._pool = pool
        return self._pool

    def invoke(self, command: Command) -> list[Any]:
        from pypsrp.powershell import PowerShell
        from pypsrp.serializer import TaggedValue

        log.debug("powershell %s: %s", self.server, command.describe())
        try:
            pool = self._open()
            if not self._keys_exchanged and any(isinstance(v, SecureString) for _, v in command.parameters):
                pool.exchange_keys()
                self._keys_exchanged = True
            ps = PowerShell(pool)
            if command.script is not None:
                ps.add_script(command.script)
            else:
                ps.add_cmdlet(command.name)
            for key, value in command.parameters:
                if value is SWITCH:
                    ps.add_parameter(key)
                elif isinstance(value, SecureString):
                    ps.add_parameter(key, TaggedValue("SS", value.value))
                elif isinstance(value, tuple):
                    ps.add_parameter(key, list(value))
                else:
                    ps.add_parameter(key, value)
            output = ps.invoke()
        except PowerShellError:
            raise
        except Exception as exc:  # noqa: BLE001 - translate transport errors once, here
            raise PowerShellError(command, f"{self.server}: {type(exc).__name__}: {str(exc)[:200]}") from None
        if ps.had_errors:
            errors = [str(record) for record in ps.streams.error] or ["error stream written"]
            raise PowerShellError(command, errors[0][:300])
        return [_plain(item) for item in output]

    def close(self) -> None:
        if self._pool is not None:
            try:
                self._pool.close()
            except Exception as exc:  # noqa: BLE001 - a cleanup failure is logged, never raised
                log.warning("closing the PowerShell session to %s failed: %s", self.server, exc)
            self._pool = None
            self._keys_exchanged = False


def _plain(item: Any) -> Any:
    """pypsrp GenericComplexObject -> dict of its adapted/extended properties."""
    properties = getattr(item, "adapted_properties", None)
    if isinstance(properties, dict):
        out = dict(properties)
        out.update(getattr(item, "extended_properties", {}) or {})
        return out
    return item


# ----------------------------------------------------------------------------- recording


@dataclass
class RecordingRunner:
    """Records every command and answers from a script; for tests and ``--dry-run`` plans.

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


def run_all(runner: Runner, commands: Sequence[Command]) -> list[list[Any]]:
    return [runner.invoke(command) for command in commands]
