"""The local runner: one ``powershell.exe`` per server per deploy, PowerShell 2.0 throughout.

The process starts once with a fixed bootstrap script (``-EncodedCommand``, no values in it) that
loads the Exchange Management Shell the supported way on every version - ``RemoteExchange.ps1``
then ``Connect-ExchangeServer -Auto``, as the EMS shortcut and Microsoft's CSS-Exchange scripts
do (https://github.com/microsoft/CSS-Exchange/blob/main/Shared/Confirm-ExchangeShell.ps1); loading
the snap-in directly is unsupported (https://blog.rmilne.ca/2015/01/28/directly-loading-exchange-2010-or-2013-snapin-is-not-supported/,
https://github.com/win-acme/win-acme/issues/1372). It then reads requests from stdin until
``EXIT`` and removes its Exchange session (``Remove-PSSession``) before it ends.

Windows Server 2008 R2 ships PowerShell 2.0, which has no JSON cmdlets
(https://learn.microsoft.com/powershell/module/microsoft.powershell.utility/convertfrom-json says
3.0+), so the protocol is lines of base64 fields:

request::

    SCRIPT <base64 UTF-8 text>            the step, as render() prints it
    TEXT|BYTES|SECRET <name> <base64>     a value bound to $name before the step runs
    RUN

answer (after any banner text the shell prints)::

    @@certkeeper@@ BEGIN
    S <base64>                            a string / number output
    O                                     an object; then its properties:
    P <base64 name> <base64 value>        ... as a string
    L <base64 name> <base64> <base64> ... ... as a list
    B <base64 name> <base64 bytes>        ... a byte array (RawData)
    N <base64 name>                       ... $null
    E <base64 message>                    an error record: the step failed
    @@certkeeper@@ END

Secrets reach the process on stdin only, become ``SecureString``/``byte[]`` variables inside
PowerShell and are removed after the step; the script text (which script block logging records)
never holds them.
"""

from __future__ import annotations

import base64
import logging
import queue
import subprocess
import threading
from typing import IO, Any

from certkeeper.binders.powershell.commands import Command, PowerShellError, bound_values, render
from certkeeper.binders.powershell.versions import ExchangeVersion

log = logging.getLogger(__name__)

BEGIN = "@@certkeeper@@ BEGIN"
END = "@@certkeeper@@ END"


def exchange_preamble(version: ExchangeVersion) -> str:
    """Load the Exchange Management Shell in a plain powershell.exe (v14 = 2010, v15 = 2013+).

    The install path comes from the Setup key CSS-Exchange reads (``MsiInstallPath``); 2010 has no
    ``-ClientApplication`` parameter on ``Connect-ExchangeServer`` (its EMS shortcut runs
    ``Connect-ExchangeServer -auto``).
    """
    key = "v14" if version is ExchangeVersion.EX2010 else "v15"
    connect = "Connect-ExchangeServer -Auto"
    if version.is_2013_or_later:
        connect += " -ClientApplication:ManagementShell"
    return (
        f"$setup = Get-ItemProperty -Path 'HKLM:\\SOFTWARE\\Microsoft\\ExchangeServer\\{key}\\Setup'\n"
        ". (Join-Path $setup.MsiInstallPath 'bin\\RemoteExchange.ps1')\n"
        f"{connect}\n"
    )


_BOOTSTRAP = """\
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
{preamble}function ConvertTo-CkBase64([string]$Text) {{
    return [System.Convert]::ToBase64String([System.Text.Encoding]::UTF8.GetBytes($Text))
}}
function ConvertFrom-CkBase64([string]$Field) {{
    if ($Field -eq '') {{ return '' }}
    return [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($Field))
}}
function Write-CkObject($Item) {{
    if ($null -eq $Item) {{ return }}
    if ($Item -is [string] -or $Item -is [System.ValueType]) {{
        [Console]::Out.WriteLine('S ' + (ConvertTo-CkBase64 ([string]$Item)))
        return
    }}
    [Console]::Out.WriteLine('O')
    foreach ($property in $Item.PSObject.Properties) {{
        $value = $null
        try {{ $value = $property.Value }} catch {{ continue }}
        $name = ConvertTo-CkBase64 $property.Name
        if ($null -eq $value) {{
            [Console]::Out.WriteLine('N ' + $name)
        }} elseif ($value -is [byte[]]) {{
            [Console]::Out.WriteLine('B ' + $name + ' ' + [System.Convert]::ToBase64String($value))
        }} elseif ($value -is [string] -or -not ($value -is [System.Collections.IEnumerable])) {{
            [Console]::Out.WriteLine('P ' + $name + ' ' + (ConvertTo-CkBase64 ([string]$value)))
        }} else {{
            $fields = @()
            foreach ($element in $value) {{ $fields += ConvertTo-CkBase64 ([string]$element) }}
            [Console]::Out.WriteLine(('L ' + $name + ' ' + ($fields -join ' ')).TrimEnd())
        }}
    }}
}}
function Invoke-CkStep([string]$Text, [hashtable]$Values) {{
    foreach ($name in $Values.Keys) {{ Set-Variable -Name $name -Value $Values[$name] -Scope Global }}
    $output = @()
    $records = @()
    try {{
        $block = [ScriptBlock]::Create($Text)
        foreach ($item in @(& $block 2>&1)) {{
            if ($item -is [System.Management.Automation.ErrorRecord]) {{ $records += $item }}
            else {{ $output += $item }}
        }}
    }} catch {{
        $records += $_
    }} finally {{
        foreach ($name in $Values.Keys) {{ Remove-Variable -Name $name -Scope Global -ErrorAction SilentlyContinue }}
    }}
    [Console]::Out.WriteLine('{begin}')
    foreach ($item in $output) {{ Write-CkObject $item }}
    foreach ($record in $records) {{ [Console]::Out.WriteLine('E ' + (ConvertTo-CkBase64 ([string]$record))) }}
    [Console]::Out.WriteLine('{end}')
    [Console]::Out.Flush()
}}
$ErrorActionPreference = 'Continue'
$values = @{{}}
$text = ''
while ($true) {{
    $line = [Console]::In.ReadLine()
    if ($null -eq $line -or $line -eq 'EXIT') {{ break }}
    $fields = $line.Split(' ')
    switch ($fields[0]) {{
        'SCRIPT' {{ $text = ConvertFrom-CkBase64 $fields[1] }}
        'TEXT' {{ $values[$fields[1]] = ConvertFrom-CkBase64 $fields[2] }}
        'BYTES' {{ $values[$fields[1]] = [System.Convert]::FromBase64String($fields[2]) }}
        'SECRET' {{
            $plain = ConvertFrom-CkBase64 $fields[2]
            $values[$fields[1]] = ConvertTo-SecureString -String $plain -AsPlainText -Force
            $plain = $null
        }}
        'RUN' {{
            Invoke-CkStep $text $values
            $values = @{{}}
            $text = ''
        }}
    }}
}}
Get-PSSession | Remove-PSSession
"""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(field: str) -> str:
    return base64.b64decode(field).decode("utf-8", errors="replace") if field else ""


def parse_answer(lines: list[str]) -> tuple[list[Any], list[str]]:
    """The answer block (between BEGIN and END) -> (outputs, error messages)."""
    outputs: list[Any] = []
    errors: list[str] = []
    current: dict[str, Any] | None = None
    for line in lines:
        tag, _, rest = line.partition(" ")
        fields = rest.split(" ") if rest else []
        if tag == "S":
            outputs.append(_unb64(fields[0] if fields else ""))
            current = None
        elif tag == "O":
            current = {}
            outputs.append(current)
        elif tag in ("P", "L", "B", "N") and current is not None and fields:
            name = _unb64(fields[0])
            if tag == "P":
                current[name] = _unb64(fields[1] if len(fields) > 1 else "")
            elif tag == "L":
                current[name] = [_unb64(item) for item in fields[1:]]
            elif tag == "B":
                current[name] = base64.b64decode(fields[1]) if len(fields) > 1 else b""
            else:
                current[name] = None
        elif tag == "E":
            errors.append(_unb64(fields[0] if fields else "") or "an error record without a message")
    return outputs, errors


class LocalRunner:
    """``powershell.exe -NoProfile -NonInteractive`` on this (Windows) machine, one process per runner.

    The process starts on the first :meth:`invoke` and ends at :meth:`close`; Exchange runners load
    the Exchange Management Shell once in between.
    """

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
        self._process: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._threads: list[threading.Thread] = []

    def bootstrap(self) -> str:
        """The script the process starts with: holds no parameter values and no secrets."""
        preamble = exchange_preamble(self.exchange) if self.exchange else ""
        return _BOOTSTRAP.format(preamble=preamble, begin=BEGIN, end=END)

    def argv(self) -> list[str]:
        encoded = _b64(self.bootstrap().encode("utf-16-le"))
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
        """The stdin lines for one step: its text, then the values it binds (secrets included)."""
        lines = [f"SCRIPT {_b64(render(command).encode())}"]
        for name, kind, value in bound_values(command):
            if kind == "bytes":
                lines.append(f"BYTES {name} {_b64(value)}")
            else:
                lines.append(f"SECRET {name} {_b64(str(value).encode())}")
        lines.append("RUN")
        return ("\n".join(lines) + "\n").encode()

    def _pump(self, stream: IO[bytes], sink: queue.Queue[str | None] | list[str]) -> None:
        with stream:  # closed at end of file, when the process has ended
            for raw in stream:
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if isinstance(sink, list):
                    sink.append(text)
                    del sink[:-20]
                else:
                    sink.put(text)
        if not isinstance(sink, list):
            sink.put(None)

    def _reap(self, process: subprocess.Popen[bytes]) -> None:
        """Wait for an ended process and its output threads, so every pipe is closed."""
        process.wait(timeout=10)
        if process.stdin is not None and not process.stdin.closed:
            try:
                process.stdin.close()
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=10)

    def _start(self, command: Command) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        try:
            process = subprocess.Popen(
                self.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as exc:
            raise PowerShellError(command, f"cannot run {self.executable}: {exc.strerror or exc}") from None
        self._lines = queue.Queue()
        self._stderr = []
        assert process.stdout is not None and process.stderr is not None
        self._threads = [
            threading.Thread(target=self._pump, args=(process.stdout, self._lines), daemon=True),
            threading.Thread(target=self._pump, args=(process.stderr, self._stderr), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._process = process
        return process

    def _ended(self, command: Command) -> PowerShellError:
        process, self._process = self._process, None
        code = None
        if process is not None:
            self._reap(process)
            code = process.returncode
        detail = next((line for line in self._stderr if line.strip()), f"exit status {code}")
        return PowerShellError(command, f"powershell ended: {detail[:300]}")

    def invoke(self, command: Command) -> list[Any]:
        log.debug("powershell: %s", command.describe())
        process = self._start(command)
        assert process.stdin is not None
        try:
            process.stdin.write(self.request(command))
            process.stdin.flush()
        except OSError:
            raise self._ended(command) from None
        block: list[str] | None = None
        while True:
            try:
                line = self._lines.get(timeout=self.timeout)
            except queue.Empty:
                self._kill()
                raise PowerShellError(command, f"no answer within {self.timeout:g}s") from None
            if line is None:
                raise self._ended(command)
            if line == BEGIN:
                block = []
            elif line == END and block is not None:
                break
            elif block is not None:
                block.append(line)
            else:
                log.debug("powershell says: %s", line[:200])  # the shell's banner, warnings
        outputs, errors = parse_answer(block)
        if errors:
            raise PowerShellError(command, errors[0][:300])
        return outputs

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            self._reap(process)

    def close(self) -> None:
        """Ask the process to remove its Exchange session and end; kill it if it does not."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            assert process.stdin is not None
            process.stdin.write(b"EXIT\n")
            process.stdin.close()
            process.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("powershell did not end by itself (%s); killing it", exc)
            process.kill()
        self._reap(process)
