"""The remote runner: PSRP (pypsrp) to a server, one runspace pool per runner.

Two endpoints per Exchange server (https://learn.microsoft.com/powershell/exchange/connect-to-exchange-servers-using-remote-powershell):

* ``http://SERVER/PowerShell``, configuration ``Microsoft.Exchange`` - the Exchange cmdlets. It
  is a no-language runspace (https://github.com/jborean93/pypsrp/issues/103), so only cmdlets are
  sent (``add_cmdlet``/``add_parameter``); ``bytes`` travel as a CLIXML byte array and passwords
  as a SecureString after a session key exchange. It accepts Kerberos only
  (https://github.com/jborean93/pypsrp/issues/187): a UPN user name and the server's own FQDN,
  never a load-balanced name.
* the default WinRM endpoint (``Microsoft.PowerShell``, port 5985/5986, path ``wsman``) - the
  Windows steps an Exchange endpoint cannot run (app pool recycling, ``netsh``, services).

Exchange cmdlets report most failures as non-terminating error records and the invocation still
completes; pypsrp sets ``had_errors`` only when the whole invocation failed. So any record in the
error stream is a failure here, whatever ``had_errors`` says.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from certkeeper.binders.powershell.commands import SWITCH, Command, Placeholder, PowerShellError, SecureString
from certkeeper.errors import ConfigError

log = logging.getLogger(__name__)

#: (runner) -> an opened pypsrp RunspacePool (or a fake with the same surface, in tests)
PoolFactory = Callable[["RemoteRunner"], Any]
#: (pool) -> a pypsrp PowerShell (or a fake)
ShellFactory = Callable[[Any], Any]


def kerberos_missing() -> list[str]:
    """What this machine lacks for Kerberos to a remote PowerShell endpoint ([] when nothing).

    Windows uses SSPI and needs nothing; elsewhere pyspnego needs the ``gssapi`` package (the
    ``kerberos`` extra), which needs the MIT Kerberos libraries.
    """
    if sys.platform == "win32":
        return []
    try:
        import gssapi  # noqa: F401
    except ImportError:
        return [
            "the Python gssapi library: pip install 'certkeeper[kerberos]' (it builds against the MIT "
            "Kerberos libraries: apt-get install libkrb5-dev krb5-user, or dnf install krb5-devel)"
        ]
    try:
        from spnego._gss import HAS_GSSAPI
    except ImportError:  # pragma: no cover - pyspnego moved it
        return []
    return [] if HAS_GSSAPI else ["pyspnego cannot load gssapi (check the Kerberos libraries)"]


def _open_pool(runner: RemoteRunner) -> Any:
    from pypsrp.powershell import RunspacePool
    from pypsrp.wsman import WSMan

    wsman = WSMan(
        runner.server,
        port=runner.port,
        path=runner.path,
        ssl=runner.ssl,
        auth=runner.auth,
        username=runner.username,
        password=runner._password() if runner._password else None,
        cert_validation=runner.cert_validation,
        operation_timeout=int(runner.timeout),
        read_timeout=int(runner.timeout) + 10,
    )
    pool = RunspacePool(wsman, configuration_name=runner.configuration_name)
    pool.open()
    return pool


def _new_shell(pool: Any) -> Any:
    from pypsrp.powershell import PowerShell

    return PowerShell(pool)


def _secure(value: SecureString) -> Any:
    from pypsrp.serializer import TaggedValue

    return TaggedValue("SS", value.value)


class RemoteRunner:
    """PSRP to one server's Exchange endpoint or default WinRM endpoint.

    The runspace pool opens on first use and stays open until :meth:`close` (Exchange limits the
    number of remote sessions; the binders always close).
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
        open_pool: PoolFactory = _open_pool,
        new_shell: ShellFactory = _new_shell,
        secure: Callable[[SecureString], Any] = _secure,
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
        self._open_pool = open_pool
        self._new_shell = new_shell
        self._secure = secure
        self._pool: Any = None
        self._keys_exchanged = False

    @property
    def exchange_endpoint(self) -> bool:
        return self.configuration_name == "Microsoft.Exchange"

    def _open(self, command: Command) -> Any:
        if self._pool is None:
            if self.auth == "kerberos" and self._open_pool is _open_pool:  # the real transport
                missing = kerberos_missing()
                if missing:
                    raise PowerShellError(command, f"{self.server}: Kerberos is not available: {'; '.join(missing)}")
            self._pool = self._open_pool(self)
        return self._pool

    def invoke(self, command: Command) -> list[Any]:
        log.debug("powershell %s: %s", self.server, command.describe())
        if self.exchange_endpoint and command.script is not None:
            # a script cannot run on the no-language Exchange endpoint; a binder bug, not a server state
            raise PowerShellError(command, f"{self.server}: scripts cannot run on the Exchange endpoint")
        try:
            pool = self._open(command)
            if not self._keys_exchanged and any(isinstance(v, SecureString) for _, v in command.parameters):
                pool.exchange_keys()
                self._keys_exchanged = True
            ps = self._new_shell(pool)
            if command.script is not None:
                ps.add_script(command.script)
            else:
                ps.add_cmdlet(command.name)
            for key, value in command.parameters:
                if isinstance(value, Placeholder):
                    raise PowerShellError(command, f"{key}: a dry-run placeholder reached a runner")
                if value is SWITCH:
                    ps.add_parameter(key)
                elif isinstance(value, SecureString):
                    ps.add_parameter(key, self._secure(value))
                elif isinstance(value, tuple):
                    ps.add_parameter(key, list(value))
                else:
                    ps.add_parameter(key, value)
            output = ps.invoke()
        except PowerShellError:
            raise
        except Exception as exc:  # noqa: BLE001 - translate transport errors once, here
            raise PowerShellError(command, f"{self.server}: {type(exc).__name__}: {str(exc)[:200]}") from None
        records = list(getattr(ps.streams, "error", None) or [])
        if records or ps.had_errors:
            # Exchange's errors are non-terminating: the invocation completes, had_errors may be False
            message = str(records[0]) if records else "the invocation failed without an error record"
            raise PowerShellError(command, f"{self.server}: {message[:300]}")
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
