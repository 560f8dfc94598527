"""Which names an Outlook Anywhere certificate needs, which ``msstd:`` principal, and what to watch.

Pure: no network, no store. The facts, with their public sources:

* the OA / OWA / EWS namespace (``--external-host``) is the Subject CN and the first SAN - Outlook
  on Windows XP compares the ``msstd:`` principal with the CN only ("Certificate planning in
  Exchange 2013", https://techcommunity.microsoft.com/t5/exchange-team-blog/certificate-planning-in-exchange-2013/ba-p/587150);
* ``autodiscover.<domain>`` for every SMTP domain that uses the autodiscover A/CNAME record (same);
* the legacy name during coexistence with older Exchange (same);
* the principal defaults to ``msstd:<external host>`` (Autodiscover fills it from the OA external
  host name when ``CertPrincipalName`` is $null: "All about Set-OutlookProvider",
  https://learn.microsoft.com/es-es/archive/blogs/umutg/all-about-set-outlookprovider).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from certkeeper.errors import InvalidName
from certkeeper.hostnames import NamePolicy, covers, is_internal, normalize_name
from certkeeper.hostnames import fold as normalize
from certkeeper.model import DEFAULT_KEY_TYPE, KeyType

Severity = Literal["error", "warning", "info"]

MAX_CN_LENGTH = 64  # X.520 ub-common-name, CA/B BR §7.1.4.2
LETS_ENCRYPT_MAX_NAMES = 100


@dataclass(frozen=True)
class PlanNote:
    """One thing the operator should know; ``code`` is stable for scripts."""

    code: str
    severity: Severity
    message: str


@dataclass(frozen=True)
class Plan:
    """The certificate Outlook Anywhere needs: names (CN first) and the principal."""

    common_name: str
    names: tuple[str, ...]
    principal: str
    notes: tuple[PlanNote, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not any(note.severity == "error" for note in self.notes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "common_name": self.common_name,
            "names": list(self.names),
            "principal": self.principal,
            "set_outlook_provider": f'Set-OutlookProvider EXPR -CertPrincipalName "{self.principal}"',
            "ok": self.ok,
            "notes": [{"code": n.code, "severity": n.severity, "message": n.message} for n in self.notes],
        }


def _check_syntax(name: str) -> str:
    value = normalize(name)
    labels = value.split(".")
    for index, label in enumerate(labels):
        if label == "*" and index == 0 and len(labels) > 2:
            continue
        if (
            not label
            or len(label) > 63
            or label.startswith("-")
            or label.endswith("-")
            or not all(ch.isalnum() or ch == "-" for ch in label)
        ):
            raise InvalidName(
                name, "syntax", "not a valid DNS name (letters, digits, hyphens; wildcard only as *.)"
            )
    return value


def _public_refusal(name: str) -> InvalidName | None:
    """Why a public CA would refuse ``name`` (the issuers' own PUBLIC check), or None."""
    try:
        normalize_name(name, policy=NamePolicy.PUBLIC)
    except InvalidName as exc:
        return exc
    return None


def principal_host(principal: str) -> str:
    """``msstd:mail.contoso.com`` -> ``mail.contoso.com`` (the prefix is optional on input)."""
    value = principal.strip()
    if value.lower().startswith("msstd:"):
        value = value[len("msstd:") :]
    return normalize(value)


def plan(
    external_host: str,
    domains: tuple[str, ...] | list[str] = (),
    *,
    legacy_host: str | None = None,
    principal: str | None = None,
    public_ca: bool = True,
    key_type: KeyType = DEFAULT_KEY_TYPE,
    extra_names: tuple[str, ...] | list[str] = (),
) -> Plan:
    """Plan the names, principal and warnings for an Outlook Anywhere certificate.

    Raises:
        InvalidName: a name is not a DNS name.
    """
    external = _check_syntax(external_host)
    names: list[str] = [external]

    def add(name: str) -> None:
        value = _check_syntax(name)
        if value not in names:
            names.append(value)

    for domain in domains:
        add(f"autodiscover.{normalize(domain).removeprefix('autodiscover.')}")
    if legacy_host:
        add(legacy_host)
    for name in extra_names:
        add(name)
    principal_value = principal_host(principal) if principal else external
    notes: list[PlanNote] = []

    internal = [name for name in names if is_internal(name)]
    if internal and public_ca:
        notes.append(
            PlanNote(
                "internal-name-public-ca",
                "error",
                f"a public CA will refuse {', '.join(internal)} (CA/B Forum BR §4.2.2: no internal names "
                "since 2015). Use split DNS: point InternalUrl/InternalHostname/the Autodiscover SCP at "
                "the public name instead.",
            )
        )
    elif internal:
        notes.append(
            PlanNote(
                "internal-name",
                "info",
                f"{', '.join(internal)} can only come from an internal CA (AD CS); devices that do not "
                "trust it (phones, home PCs) will warn.",
            )
        )

    if public_ca:
        for name in names:
            if name in internal:
                continue  # already named above, with the split-DNS advice
            refusal = _public_refusal(name)
            if refusal is not None and refusal.rule == "special-use":
                notes.append(PlanNote("special-use-public-ca", "error", refusal.detail))

    wildcards = [name for name in names if name.startswith("*.")]
    if wildcards:
        notes.append(
            PlanNote(
                "wildcard-msstd",
                "warning",
                f"wildcard {', '.join(wildcards)}: Outlook on Windows XP matches the principal against the "
                "Subject CN, so with a wildcard CN the principal must be msstd:" + wildcards[0] + " "
                f'(Set-OutlookProvider EXPR -CertPrincipalName "msstd:{wildcards[0]}"); do not enable a '
                "wildcard certificate for IMAP/POP; autodiscover for several domains still needs "
                "SAN entries.",
            )
        )
    if principal_value != external and not principal_value.startswith("*."):
        notes.append(
            PlanNote(
                "principal-not-cn",
                "warning",
                f"the principal msstd:{principal_value} differs from the Subject CN {external}: Outlook on "
                "Windows XP compares the principal with the CN only and keeps asking for credentials.",
            )
        )
    if not any(covers(name, principal_value) or name == principal_value for name in names):
        notes.append(
            PlanNote(
                "principal-not-covered",
                "error",
                f"no certificate name matches the principal msstd:{principal_value}; Outlook Anywhere's "
                "mutual authentication fails.",
            )
        )
    if not key_type.is_rsa:
        notes.append(
            PlanNote(
                "ecdsa-exchange",
                "warning",
                f"{key_type.value}: Exchange accepts ECDSA only on 2016 CU23 / 2019 CU13+ with the "
                "April 2024 hotfix and EnableEccCertificateSupport set; never on 2010/2013. "
                "RSA 2048 works everywhere.",
            )
        )
    if len(external) > MAX_CN_LENGTH:
        notes.append(
            PlanNote(
                "cn-too-long",
                "error",
                f"{external} is longer than {MAX_CN_LENGTH} characters and cannot be the Subject CN, which "
                "old Outlook clients need.",
            )
        )
    if len(names) > LETS_ENCRYPT_MAX_NAMES:
        notes.append(
            PlanNote(
                "too-many-names",
                "warning",
                f"{len(names)} names: Let's Encrypt allows at most {LETS_ENCRYPT_MAX_NAMES}.",
            )
        )
    if not domains:
        notes.append(
            PlanNote(
                "no-autodiscover",
                "info",
                "no --domain given: Outlook finds Autodiscover only through an SRV record "
                "(_autodiscover._tcp.<domain> -> " + external + ") or a domain's own autodiscover name.",
            )
        )
    return Plan(
        common_name=external, names=tuple(names), principal=f"msstd:{principal_value}", notes=tuple(notes)
    )


def plan_from_settings(
    settings: Any, *, public_ca: bool = True, key_type: KeyType = DEFAULT_KEY_TYPE
) -> Plan:
    """The plan for an ``[outlook_anywhere]`` table (``config.OutlookAnywhereSettings``); what
    ``certkeeper issue`` uses when no names are given."""
    return plan(
        settings.external_host,
        tuple(settings.domains),
        legacy_host=settings.legacy_host,
        principal=settings.principal,
        public_ca=public_ca,
        key_type=key_type,
        extra_names=tuple(settings.extra_names),
    )
