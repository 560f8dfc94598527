"""Alerts by email over SMTP: STARTTLS, implicit TLS, or (explicitly) none; optional AUTH.

Each event becomes one ``multipart/alternative`` message (plain text and HTML) to every
recipient. Errors become :class:`NotifyError` with ``retryable`` decided per SMTP reply code:

- connection failures, timeouts, a dropped connection, TLS failures and every ``4xx`` reply are
  retryable (``421`` "service not available" is the classic outage answer);
- ``554`` is retryable too: RFC 5321 §3.1 lets a server answer ``554`` instead of its greeting
  ("no SMTP service here"), and relays use it for overload, greylisting-like policy blocks and
  their own outages. An alert is worth a bounded number of retries (the outbox gives up after
  its attempt and age limits), whereas dropping it at the first ``554`` loses it for good;
- other ``5xx`` replies are permanent: ``535`` authentication failed (retrying could lock the
  account in Active Directory), ``550``/``553`` mailbox or address refused, ``530`` TLS required,
  ``5xx`` to STARTTLS. The outbox marks those alerts dead and ``certkeeper status`` lists them.

The password is a secret reference resolved at send time and never appears in a message or log.
"""

from __future__ import annotations

import html
import logging
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from certkeeper.clock import Clock
from certkeeper.config import validate_options
from certkeeper.errors import CertkeeperError, ConfigError, NotifyError
from certkeeper.model import Event
from certkeeper.notifiers import render
from certkeeper.notifiers.http import SecretValue, secret_option
from certkeeper.plugins import PluginContext

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
#: 5xx replies retried anyway (see the module docstring)
RETRYABLE_5XX = frozenset({554})


class EmailOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    host: str = Field(min_length=1)
    #: default 587 for starttls, 465 for tls, 25 for none
    port: int | None = Field(default=None, gt=0, lt=65536)
    #: "none" (no encryption) must be chosen explicitly, e.g. for an internal relay
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    #: a secret reference (secret:NAME, env:VAR, file:PATH); a literal works with a warning
    password: str | None = None
    sender: str = Field(alias="from", min_length=3)
    to: tuple[str, ...] = Field(min_length=1)
    #: PEM bundle of CAs to trust for the relay (default: the system store)
    ca_file: str | None = None
    timeout: float = Field(default=30, gt=0, le=300)

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        return _address(value)

    @field_validator("to")
    @classmethod
    def _recipients(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_address(item) for item in value)

    @model_validator(mode="after")
    def _auth(self) -> EmailOptions:
        if self.username and not self.password:
            raise ValueError("username is set but password is not")
        if self.password and not self.username:
            raise ValueError("password is set but username is not")
        if self.username and self.security == "none":
            raise ValueError(
                'AUTH over an unencrypted connection is refused; use security = "starttls" or "tls"'
            )
        return self


def _address(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("an address cannot contain a line break")
    _display, address = parseaddr(value)
    if "@" not in address:
        raise ValueError(f"{value!r} is not an email address")
    return value


def html_body(event: Event) -> str:
    esc = html.escape
    rows = "".join(
        f'<tr><th align="left" style="padding:2px 12px 2px 0">{esc(label)}</th><td>{esc(value)}</td></tr>'
        for label, value in render.facts(event)
    )
    next_step = render.action(event)
    action = f"<h3>What to do next</h3><p>{esc(next_step)}</p>" if next_step else ""
    return (
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\">"
        f"<h2>{esc(event.title)}</h2><p>{esc(event.message)}</p>"
        f"<table>{rows}</table>{action}"
        f"<p style=\"color:#777;font-size:small\">certkeeper, {esc(render.when(event.occurred_at))}</p>"
        "</body></html>"
    )


def build_message(event: Event, sender: str, recipients: Sequence[str], clock: Clock) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = event.title
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(clock.now())
    domain = parseaddr(sender)[1].rpartition("@")[2] or "certkeeper.invalid"
    message["Message-ID"] = make_msgid("certkeeper", domain=domain)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
    message["X-Certkeeper-Event"] = event.kind.value
    message.set_content(render.plain_text(event))
    message.add_alternative(html_body(event), subtype="html")
    return message


def is_retryable(code: int) -> bool:
    """Whether an SMTP reply code is worth retrying (see the module docstring)."""
    if 400 <= code < 500:
        return True
    if 500 <= code < 600:
        return code in RETRYABLE_5XX
    return True  # -1 and other non-replies: the connection broke


class EmailNotifier:
    """Sends alerts through an SMTP relay."""

    def __init__(
        self,
        name: str,
        options: EmailOptions,
        clock: Clock,
        password: SecretValue | None = None,
    ) -> None:
        self.name = name
        self.options = options
        self.clock = clock
        self.password = password
        self.port = options.port or DEFAULT_PORTS[options.security]

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: PluginContext) -> Self:
        where = f"notifiers.{name}"
        parsed: EmailOptions = validate_options(EmailOptions, options, where=where)
        password = (
            secret_option(parsed.password, context, where=where, key="password") if parsed.password else None
        )
        if parsed.ca_file is not None:
            try:
                ssl.create_default_context(cafile=parsed.ca_file)
            except (OSError, ssl.SSLError):
                raise ConfigError(f"{where}.ca_file: {parsed.ca_file} is not a readable PEM bundle") from None
        return cls(name, parsed, context.clock, password)

    @property
    def what(self) -> str:
        return f"the SMTP server {self.options.host}:{self.port} of notifier {self.name!r}"

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.options.ca_file)

    def notify(self, event: Event) -> None:
        message = build_message(event, self.options.sender, self.options.to, self.clock)
        password: str | None = None
        if self.password is not None:
            try:
                password = self.password.get()
            except CertkeeperError as exc:
                raise NotifyError(f"the password of notifier {self.name!r} cannot be read: {exc}") from None
        try:
            refused = self._send(message, password)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _text in exc.recipients.values()]
            raise NotifyError(
                f"{self.what} refused every recipient ({', '.join(str(code) for code in codes)})",
                retryable=any(is_retryable(code) for code in codes),
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise NotifyError(
                f"{self.what} answered {exc.smtp_code} {self._reply_text(exc.smtp_error, password)}",
                retryable=is_retryable(exc.smtp_code),
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise NotifyError(
                f"{self.what} does not support the requested TLS or AUTH mechanism", retryable=False
            ) from None
        except smtplib.SMTPServerDisconnected:
            raise NotifyError(f"{self.what} closed the connection") from None
        except ssl.SSLError:
            # Retryable: the relay's certificate may be the very one being renewed right now.
            raise NotifyError(f"the TLS handshake with {self.what} failed (untrusted or wrong certificate)") \
                from None
        except smtplib.SMTPException as exc:
            raise NotifyError(f"{self.what} failed: {type(exc).__name__}") from None
        except OSError:
            raise NotifyError(f"could not reach {self.what} (connection failed or timed out)") from None
        if refused:
            log.warning(
                "%s refused %d of %d recipients: %s",
                self.what, len(refused), len(self.options.to),
                ", ".join(f"{address} ({code})" for address, (code, _text) in refused.items()),
                extra={"notifier": self.name},
            )
        log.debug("sent %s by email", event.kind.value, extra={"notifier": self.name})

    def _send(self, message: EmailMessage, password: str | None) -> dict[str, tuple[int, bytes]]:
        options = self.options
        smtp: smtplib.SMTP
        if options.security == "tls":
            context = self._tls_context()
            smtp = smtplib.SMTP_SSL(options.host, self.port, timeout=options.timeout, context=context)
        else:
            smtp = smtplib.SMTP(options.host, self.port, timeout=options.timeout)
        try:
            smtp.ehlo()
            if options.security == "starttls":
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            if options.username and password is not None:
                smtp.login(options.username, password)
            return smtp.send_message(message, from_addr=parseaddr(options.sender)[1],
                                     to_addrs=[parseaddr(address)[1] for address in options.to])
        finally:
            # A failed QUIT after an accepted message must not turn into a retry (a duplicate).
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    @staticmethod
    def _reply_text(reply: bytes | str, password: str | None) -> str:
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        text = " ".join(text.split())[:200]
        if password:
            text = text.replace(password, "***")
        return text
