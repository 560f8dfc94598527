"""The ``apprise`` notifier: PagerDuty, Opsgenie, ntfy, Telegram, Matrix, Pushover and the ~100 other
services Apprise speaks (https://github.com/caronc/apprise/wiki), through the same outbox.

Example::

    [notifiers.oncall]
    type = "apprise"
    urls = ["secret:pagerduty-url", "env:NTFY_URL"]   # e.g. pagerduty://KEY@ROUTING, ntfys://host/topic

An Apprise URL carries the service's token, so every URL is a secret reference (a literal works
with a warning, as for webhooks). Apprise answers each send with true or false and no reason;
false becomes a retryable :class:`~certkeeper.errors.NotifyError` ("retry later"), and the outbox
retries the whole notifier: a service that succeeded may get the alert again (at least once, as
everywhere). One URL per notifier gives exact retries.

What certkeeper's own HTTP notifiers guarantee and Apprise does not: the SSRF checks of
:mod:`certkeeper.notifiers.http` (address policy, pinned connection, no redirects) are not applied
to Apprise's requests. Apprise runs with no plugin folders, memory-only storage, its secure
logging on, and certkeeper drops Apprise's DEBUG records (they can hold URLs and payloads) and
masks the configured URLs and their parts in the rest.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from certkeeper.config import validate_options
from certkeeper.errors import CertkeeperError, ConfigError, NotifyError
from certkeeper.model import Event, EventKind
from certkeeper.notifiers import render
from certkeeper.notifiers.http import SecretValue, secret_option
from certkeeper.plugins import PluginContext

log = logging.getLogger(__name__)

_KIND_TYPES = {
    EventKind.ISSUED: "success", EventKind.RENEWED: "success", EventKind.DEPLOYED: "success",
    EventKind.RECOVERED: "success", EventKind.RENEWAL_FAILED: "failure", EventKind.REJECTED: "failure",
    EventKind.DEPLOY_FAILED: "failure", EventKind.VERIFY_MISMATCH: "failure", EventKind.EXPIRING: "warning",
    EventKind.PENDING_APPROVAL: "warning",
}


class AppriseOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Apprise URLs, each a secret reference (secret:NAME, env:VAR, file:PATH)
    urls: tuple[str, ...] = Field(min_length=1)
    #: seconds Apprise may spend on one service
    timeout: float = Field(default=20, gt=0, le=120)


class _MaskAppriseLogs(logging.Filter):
    """Masks the URLs in use (and their parts) in log records; drops DEBUG records if asked
    (Apprise's own DEBUG lines can hold whole URLs and payloads)."""

    def __init__(self, drop_debug: bool) -> None:
        super().__init__()
        self.drop_debug = drop_debug
        self.secrets: dict[int, list[str]] = {}
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.drop_debug and record.levelno < logging.INFO:
            return False
        with self.lock:
            secrets = [secret for values in self.secrets.values() for secret in values]
        if secrets:
            message = record.getMessage()
            cleaned = message
            for secret in sorted(secrets, key=len, reverse=True):
                cleaned = cleaned.replace(secret, "***")
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True

    @contextmanager
    def hiding(self, urls: list[str]) -> Iterator[None]:
        parts = set(urls)
        for url in urls:
            # the token-looking pieces of a URL: user, password, path segments, query values
            parts.update(piece for piece in re.split(r"[:/@?&=#,]+", url.split("://", 1)[-1]) if len(piece) >= 6)
        key = threading.get_ident()
        with self.lock:
            self.secrets[key] = sorted(parts)
        try:
            yield
        finally:
            with self.lock:
                self.secrets.pop(key, None)


_MASK_APPRISE = _MaskAppriseLogs(drop_debug=True)
#: urllib3 logs each request line ("POST /topic-or-token HTTP/1.1") at DEBUG for Apprise's requests
_MASK_URLLIB3 = _MaskAppriseLogs(drop_debug=False)
logging.getLogger("apprise").addFilter(_MASK_APPRISE)
logging.getLogger("urllib3.connectionpool").addFilter(_MASK_URLLIB3)


class AppriseNotifier:
    """Sends each event to every Apprise URL of the notifier."""

    def __init__(self, name: str, urls: list[SecretValue], timeout: float = 20) -> None:
        self.name = name
        self.urls = urls
        self.timeout = timeout

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: PluginContext) -> Self:
        where = f"notifiers.{name}"
        if importlib.util.find_spec("apprise") is None:
            raise ConfigError(f"{where}: type = 'apprise' needs Apprise: pip install 'certkeeper[apprise]'")
        parsed: AppriseOptions = validate_options(AppriseOptions, options, where=where)
        urls = [secret_option(url, context, where=where, key=f"urls[{index}]") for index, url in enumerate(parsed.urls)]
        return cls(name, urls, parsed.timeout)

    def _urls(self) -> list[str]:
        resolved = []
        for index, url in enumerate(self.urls):
            try:
                resolved.append(url.get().strip())
            except CertkeeperError as exc:
                raise NotifyError(f"URL #{index + 1} of notifier {self.name!r} cannot be read: {exc}") from None
        return resolved

    def notify(self, event: Event) -> None:
        import apprise

        urls = self._urls()
        asset = apprise.AppriseAsset(storage_mode="memory", secure_logging=True, service_timeout=self.timeout)
        asset.async_mode = False
        failed = 0
        with _MASK_APPRISE.hiding(urls), _MASK_URLLIB3.hiding(urls):
            for index, url in enumerate(urls):
                sender = apprise.Apprise(asset=asset)
                if not sender.add(url):
                    raise NotifyError(f"URL #{index + 1} of notifier {self.name!r} is not a URL Apprise understands",
                                      retryable=False)
                try:
                    ok = bool(sender.notify(body=render.plain_text(event), title=event.title,
                                            notify_type=_KIND_TYPES.get(event.kind, "info")))
                except Exception as exc:  # noqa: BLE001 - a plugin bug: name it, keep its text (URLs) out
                    log.debug("apprise raised %s", type(exc).__name__)
                    ok = False
                if not ok:
                    failed += 1
        if failed:
            raise NotifyError(f"Apprise could not reach or was refused by {failed} of {len(urls)} service(s) of "
                              f"notifier {self.name!r}; retrying later")
        log.debug("sent %s through Apprise", event.kind.value, extra={"notifier": self.name})
