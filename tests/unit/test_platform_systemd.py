"""The Linux service: the sd_notify client against real AF_UNIX datagram sockets (a path and an
abstract name), journal detection and priority prefixes, and the unit for a config with files and
haproxy bindings (checked by systemd-analyze verify where it exists)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import typing
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from certkeeper.config import parse
from certkeeper.logs import JournalFormatter
from certkeeper.platform.journal import stderr_is_journal, stream_is_journal, syslog_priority, with_priority
from certkeeper.platform.sdnotify import Notifier, socket_address, watchdog_interval
from certkeeper.platform.systemd import WRITTEN_FILE_OPTIONS, render_unit, unit_spec, watchdog_seconds

TEMPLATE = (Path(__file__).resolve().parents[2] / "certkeeper" / "data" / "certkeeper.service").read_text()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(5)
    try:
        yield str(path), sock
    finally:
        sock.close()


def test_notify_socket_names() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@/org/freedesktop/systemd1/notify/123") == b"\0/org/freedesktop/systemd1/notify/123"
    assert socket_address("vsock:2:1234") is None  # another transport: not used
    assert socket_address("") is None and socket_address("relative/path") is None and socket_address("@") is None


def test_watchdog_interval_and_its_pid() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, pid=42) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, pid=42) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "43"}, pid=42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, pid=42) is None
    assert watchdog_interval({}, pid=42) is None


def test_ready_watchdog_stopping_reach_a_real_socket_and_the_environment_is_cleared(
        listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    environ = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid()), "HOME": "/x"}
    notifier = Notifier.from_environment(environ)
    assert environ == {"HOME": "/x"}  # children (a reload command) do not inherit them
    assert notifier.enabled and notifier.watchdog_seconds == 4.0
    assert notifier.ready("node cas01")
    assert notifier.watchdog()
    assert notifier.stopping()
    assert [sock.recv(4096) for _ in range(3)] == [b"READY=1\nSTATUS=node cas01", b"WATCHDOG=1", b"STOPPING=1"]


def test_an_abstract_socket_name_starting_with_at() -> None:
    name = f"@certkeeper-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name[1:].encode())
        sock.settimeout(5)
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": name})
        assert notifier.ready()
        assert sock.recv(4096) == b"READY=1"


def test_without_systemd_or_with_its_socket_gone_nothing_is_sent_and_nothing_raises(tmp_path: Path) -> None:
    assert not Notifier.from_environment({}).ready()
    gone = Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert gone.enabled and not gone.ready() and not gone.watchdog()


def test_journal_stream_matches_stderr_only() -> None:
    assert stream_is_journal("8:1234", 8, 1234)
    assert not stream_is_journal("8:1234", 8, 1235)
    assert not stream_is_journal(None, 8, 1234) and not stream_is_journal("", 8, 1234)
    assert not stream_is_journal("garbage", 8, 1234) and not stream_is_journal("8:x", 8, 1234)


def test_stderr_is_journal_compares_with_the_real_descriptor(tmp_path: Path) -> None:
    with (tmp_path / "stream").open("w") as stream:
        info = os.fstat(stream.fileno())
        assert stderr_is_journal({"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}, fd=stream.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino + 1}"}, fd=stream.fileno())
        assert not stderr_is_journal({}, fd=stream.fileno())


def test_priorities_follow_syslog_and_every_line_carries_one() -> None:
    levels = [logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG]
    assert [syslog_priority(level) for level in levels] == [2, 3, 4, 6, 7]
    assert with_priority("failed\nTraceback (most recent call last):\n  x", logging.ERROR) == \
        "<3>failed\n<3>Traceback (most recent call last):\n<3>  x"
    record = logging.LogRecord("certkeeper", logging.WARNING, __file__, 1, "lease %s lost", ("issuer",), None)
    assert JournalFormatter(logging.Formatter("%(message)s")).format(record) == "<4>lease issuer lost"


def test_the_daemon_logs_with_priorities_when_stderr_is_the_journal(tmp_path: Path) -> None:
    # the CLI in a subprocess whose stderr is a file named by $JOURNAL_STREAM, as systemd sets it
    err = tmp_path / "stderr"
    with err.open("w") as stream:
        info = os.fstat(stream.fileno())
        env = dict(os.environ, JOURNAL_STREAM=f"{info.st_dev}:{info.st_ino}",
                   CERTKEEPER_CONFIG=str(tmp_path / "missing.toml"))
        code = "from certkeeper.logs import setup_logging; import logging; setup_logging(); " \
               "logging.getLogger('certkeeper').error('boom'); logging.getLogger('certkeeper').info('fine')"
        subprocess.run([sys.executable, "-c", code], stderr=stream, env=env, check=True,
                       cwd=Path(__file__).resolve().parents[2])
    lines = err.read_text().splitlines()
    assert lines[0].startswith("<3>") and lines[0].endswith("ERROR certkeeper: boom")
    assert lines[1].startswith("<6>")


def _config(tmp_path: Path, *, reload: object = None) -> typing.Any:
    files: dict[str, object] = {"type": "files", "cert": "/etc/nginx/tls/mail.crt", "key": "/etc/nginx/tls/mail.key",
                                "fullchain": "/etc/nginx/chains/mail.pem"}
    if reload is not None:
        files["reload"] = reload
    data = {"certificates": [{"id": "outlook", "names": ["mail.contoso.com"], "bindings": [
        files, {"type": "haproxy", "socket": "/run/haproxy/admin.sock", "crt": "/etc/haproxy/certs/mail.pem"},
        {"type": "iis", "site": "Default Web Site"}]}]}
    return parse(data, path=tmp_path / "certkeeper.toml", data_dir=Path("/var/lib/certkeeper"))


def _settings(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and line[:1].isalpha():
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_the_unit_for_files_and_haproxy_bindings(tmp_path: Path) -> None:
    spec = unit_spec(_config(tmp_path), binary=sys.executable)
    unit = render_unit(TEMPLATE, spec)
    assert "@" not in unit.replace("@/", "")  # every placeholder filled
    settings = _settings(unit)
    assert settings["Type"] == ["notify"] and settings["NotifyAccess"] == ["main"]
    assert settings["WatchdogSec"] == ["120s"]  # three heartbeats of the default 120 s lease
    assert settings["KillMode"] == ["mixed"] and settings["ProtectSystem"] == ["strict"]
    assert settings["ReadWritePaths"] == ["-/etc/haproxy/certs", "-/etc/nginx/chains", "-/etc/nginx/tls"]
    assert settings["StateDirectory"] == ["certkeeper"]  # /var/lib/certkeeper is systemd's to create
    assert settings["User"] == ["certkeeper"] and settings["NoNewPrivileges"] == ["true"]
    assert settings["Environment"] == [f"CERTKEEPER_CONFIG={tmp_path / 'certkeeper.toml'}",
                                       "CERTKEEPER_DATA_DIR=/var/lib/certkeeper"]
    assert f"ExecStart={sys.executable} daemon --log-format json" in unit
    assert "NOPASSWD: /usr/sbin/nginx -s reload" in unit  # the documented sudo rule


def test_a_sudo_reload_lifts_no_new_privileges_and_root_drops_the_user(tmp_path: Path) -> None:
    spec = unit_spec(_config(tmp_path, reload=["sudo", "-n", "/usr/sbin/nginx", "-s", "reload"]),
                     binary=sys.executable)
    settings = _settings(render_unit(TEMPLATE, spec))
    assert settings["NoNewPrivileges"] == ["false"]
    assert "-/run/sudo" in settings["ReadWritePaths"]
    as_root = _settings(render_unit(TEMPLATE, unit_spec(_config(tmp_path, reload="nginx -s reload"),
                                                         binary=sys.executable, user="root")))
    assert "User" not in as_root and as_root["NoNewPrivileges"] == ["true"]


def test_a_data_folder_elsewhere_is_listed_and_quoted(tmp_path: Path) -> None:
    config = parse({}, path=None, data_dir=Path("/srv/cert keeper/100%"))
    spec = unit_spec(config, binary="/usr/bin/certkeeper")
    assert spec.data_dir == PurePosixPath("/srv/cert keeper/100%")
    settings = _settings(render_unit(TEMPLATE, spec))
    assert "StateDirectory" not in settings
    assert settings["ReadWritePaths"] == ['"-/srv/cert keeper/100%%"']
    assert settings["Environment"][1] == '"CERTKEEPER_DATA_DIR=/srv/cert keeper/100%%"'
    assert settings["ProtectHome"] == ["true"]
    home = unit_spec(parse({}, path=None, data_dir=Path("/home/alice/ck")), binary="/usr/bin/certkeeper")
    assert _settings(render_unit(TEMPLATE, home))["ProtectHome"] == ["read-only"]


def test_watchdog_follows_the_lease_ttl() -> None:
    assert watchdog_seconds(120) == 120 and watchdog_seconds(10) == 10 and watchdog_seconds(3) == 6


def test_the_written_file_options_are_the_binders_path_options() -> None:
    from certkeeper.binders.files import FilesOptions
    from certkeeper.binders.haproxy import HaproxyOptions

    def path_fields(model: typing.Any) -> set[str]:
        return {name for name, field in model.model_fields.items() if "Path" in str(field.annotation)}

    assert set(WRITTEN_FILE_OPTIONS["files"]) == path_fields(FilesOptions)
    assert set(WRITTEN_FILE_OPTIONS["haproxy"]) == path_fields(HaproxyOptions)


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit's content is checked above, its syntax is not")
    unit = tmp_path / "certkeeper.service"
    unit.write_text(render_unit(TEMPLATE, unit_spec(
        _config(tmp_path, reload=["sudo", "-n", "/usr/sbin/nginx", "-s", "reload"]), binary=sys.executable)))
    checked = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, check=False)
    assert "certkeeper.service:" not in checked.stderr, checked.stderr  # no line it failed to parse
