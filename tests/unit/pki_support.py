"""Test helpers for the pki and internal CA tests: a real CA in memory, files on disk."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from certkeeper.clock import FrozenClock
from certkeeper.issuers.internal_ca import InternalCA
from certkeeper.model import IssueRequest, KeyType
from certkeeper.pki.csr import build_csr
from certkeeper.pki.keys import PrivateKey, generate_private_key, private_key_pem
from certkeeper.pki.parse import load_certificates
from certkeeper.plugins import MemoryState, PluginContext

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def make_ca(
    options: Mapping[str, Any] | None = None,
    *,
    state: MemoryState | None = None,
    clock: FrozenClock | None = None,
) -> InternalCA:
    context = PluginContext(clock=clock or FrozenClock(NOW), state=state or MemoryState(), data_dir=Path("."))
    # ECDSA P-256 CA keys by default: RSA 3072 generation is slow and is covered where it matters
    return InternalCA.from_options("internal", {"ca_key_type": "ecdsa-p256", **(options or {})}, context)


@dataclass(frozen=True)
class Issued:
    key: PrivateKey
    cert: x509.Certificate
    cert_pem: bytes
    chain_pem: bytes
    root_pem: bytes

    @property
    def key_pem(self) -> bytes:
        return private_key_pem(self.key)

    @property
    def intermediate(self) -> x509.Certificate:
        return load_certificates(self.chain_pem, what="chain")[0]

    @property
    def root(self) -> x509.Certificate:
        return load_certificates(self.root_pem, what="root")[0]


def issue(
    ca: InternalCA,
    names: Sequence[str],
    key_type: KeyType = KeyType.ECDSA_P256,
    key: PrivateKey | None = None,
) -> Issued:
    key = key or generate_private_key(key_type)
    request = IssueRequest(certificate_id="test", names=tuple(names), csr_pem=build_csr(key, names))
    result = ca.issue(request)
    return Issued(
        key=key,
        cert=load_certificates(result.cert_pem, what="leaf")[0],
        cert_pem=result.cert_pem,
        chain_pem=result.chain_pem,
        root_pem=ca.root_pem(),
    )
