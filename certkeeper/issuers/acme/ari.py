"""ACME Renewal Information (RFC 9773): the certificate identifier and the window parser."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509

from certkeeper.model import RenewalWindow

#: RFC 9773 §4.3: without a Retry-After, poll again in six hours
DEFAULT_RETRY = timedelta(hours=6)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def cert_id(cert: x509.Certificate) -> str:
    """base64url(AKI keyIdentifier) "." base64url(DER serial content octets), no padding (§4.1).

    Raises ValueError when the certificate has no Authority Key Identifier.
    """
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        raise ValueError("the certificate has no Authority Key Identifier") from None
    if aki.key_identifier is None:
        raise ValueError("the certificate's Authority Key Identifier has no key identifier")
    serial = cert.serial_number
    # DER INTEGER content: big-endian two's complement, with room for the sign bit
    serial_der = serial.to_bytes((serial.bit_length() + 8) // 8, "big", signed=True)
    return f"{_b64(aki.key_identifier)}.{_b64(serial_der)}"


def cert_id_from_pem(cert_pem: bytes) -> str:
    return cert_id(x509.load_pem_x509_certificate(cert_pem))


def _when(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("not a timestamp")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("timestamp without a time zone")
    return parsed.astimezone(UTC)


def parse_window(document: Any, retry_after: datetime) -> RenewalWindow:
    """The RenewalWindow of a renewalInfo response; ValueError for anything malformed."""
    if not isinstance(document, dict) or not isinstance(document.get("suggestedWindow"), dict):
        raise ValueError("no suggestedWindow object")
    window = document["suggestedWindow"]
    start, end = _when(window.get("start")), _when(window.get("end"))
    if end < start:
        raise ValueError("suggestedWindow ends before it starts")
    explanation = document.get("explanationURL")
    return RenewalWindow(start=start, end=end, retry_after=retry_after,
                         explanation_url=explanation if isinstance(explanation, str) else None)
