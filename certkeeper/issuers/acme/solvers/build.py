"""Which challenge solver a ``[issuers.X]`` table asks for: an explicit registry, typed.

Each entry maps ``"<challenge type>:<mode>"`` to a builder that takes the issuer's options and
plugin context and returns a :class:`ChallengeSolver`. Solver modules are imported only when a
solver of theirs is built (dns-lexicon and the PowerShell runner are heavy). To add a mode, add a
builder and a line to :data:`SOLVERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from certkeeper.errors import ConfigError
from certkeeper.plugins import PluginContext

from ..options import AcmeOptions, Dns01Options, PowerShellOptions
from . import ChallengeSolver

if TYPE_CHECKING:
    from certkeeper.binders.powershell import Runner

#: (the issuer's options, its plugin context, its config path) -> a solver
SolverBuilder = Callable[[AcmeOptions, PluginContext, str], ChallengeSolver]


def _standalone(options: AcmeOptions, context: PluginContext, where: str) -> ChallengeSolver:
    from .http01 import StandaloneHttp01

    http = options.http01
    return StandaloneHttp01(http.address, http.port, http.backlog) if http is not None else StandaloneHttp01()


def _webroot(options: AcmeOptions, context: PluginContext, where: str) -> ChallengeSolver:
    from .http01 import WebrootHttp01

    assert options.http01 is not None and options.http01.webroot is not None  # the options require it
    return WebrootHttp01(options.http01.webroot, options.http01.iis_web_config)


def _dns(options: AcmeOptions) -> Dns01Options:
    assert options.dns01 is not None  # only built when the issuer has a [dns01] table
    return options.dns01


def _rfc2136(options: AcmeOptions, context: PluginContext, where: str) -> ChallengeSolver:
    from .dns01 import Dns, Rfc2136Dns01

    dns = _dns(options)
    if not dns.server:
        raise ConfigError(f"{where}.dns01.server: required when mode = 'rfc2136'")
    secret_ref = dns.tsig_secret
    return Rfc2136Dns01(
        server=dns.server, port=dns.port, zone=dns.zone, tsig_key_name=dns.tsig_key_name,
        tsig_secret=(lambda: context.resolve_secret(secret_ref)) if secret_ref else None,
        tsig_algorithm=dns.tsig_algorithm, ttl=dns.ttl, dns_tools=Dns(dns.resolver),
        cname_delegation=dns.cname_delegation, propagation_timeout=dns.propagation_timeout,
        nameservers=dns.nameservers)


def _exec(options: AcmeOptions, context: PluginContext, where: str) -> ChallengeSolver:
    from .dns01 import Dns, ExecDns01

    dns = _dns(options)
    assert dns.script is not None  # the options require it
    return ExecDns01(
        script=dns.script, timeout=dns.script_timeout, ttl=dns.ttl, dns_tools=Dns(dns.resolver),
        cname_delegation=dns.cname_delegation, propagation_timeout=dns.propagation_timeout,
        nameservers=dns.nameservers)


def _lexicon(options: AcmeOptions, context: PluginContext, where: str) -> ChallengeSolver:
    from .dns01 import Dns
    from .dns_lexicon import LexiconDns01

    dns = _dns(options)
    assert dns.provider is not None  # the options require it
    return LexiconDns01(
        provider=dns.provider, options=dns.provider_options, credentials=dns.credentials,
        resolve_secret=context.resolve_secret, zone=dns.zone, ttl=dns.ttl, dns_tools=Dns(dns.resolver),
        cname_delegation=dns.cname_delegation, propagation_timeout=dns.propagation_timeout,
        nameservers=dns.nameservers, where=f"{where}.dns01")


def _acme_dns(options: AcmeOptions, context: PluginContext, where: str) -> ChallengeSolver:
    from .acme_dns import AcmeDnsDns01
    from .dns01 import Dns

    dns = _dns(options)
    assert dns.acme_dns_url is not None  # the options require it
    return AcmeDnsDns01(
        server=dns.acme_dns_url, state=context.state, allow_from=dns.acme_dns_allow_from,
        ca_bundle=dns.acme_dns_ca_bundle, timeout=options.timeout, dns_tools=Dns(dns.resolver),
        propagation_timeout=dns.propagation_timeout, nameservers=dns.nameservers,
        check_cname=dns.cname_delegation)


def powershell_runner(options: PowerShellOptions, context: PluginContext) -> Callable[[], Runner]:
    """A factory of PowerShell runners for ``mode = "windows"`` (one runner per record change)."""
    from certkeeper.binders.powershell import LocalRunner, RemoteRunner

    if options.runner == "local":
        return lambda: LocalRunner(timeout=options.timeout)
    reference = options.password

    def remote() -> Runner:
        return RemoteRunner(
            options.host, auth=options.auth, username=options.username,
            password=(lambda: context.resolve_secret(reference)) if reference else None,
            port=options.port or (5986 if options.ssl else 5985), path="wsman", ssl=options.ssl,
            configuration_name="Microsoft.PowerShell", cert_validation=options.cert_validation,
            timeout=options.timeout)

    return remote


def _windows(options: AcmeOptions, context: PluginContext, where: str) -> ChallengeSolver:
    from .dns01 import Dns
    from .windows_dns import WindowsDns01

    dns = _dns(options)
    return WindowsDns01(
        runner=powershell_runner(dns.powershell, context), dns_server=dns.dns_server, zone=dns.zone,
        ttl=dns.ttl, dns_tools=Dns(dns.resolver), cname_delegation=dns.cname_delegation,
        propagation_timeout=dns.propagation_timeout, nameservers=dns.nameservers)


#: the built-in solvers: "<challenge type>:<mode>" -> builder
SOLVERS: Mapping[str, SolverBuilder] = {
    "http-01:standalone": _standalone,
    "http-01:webroot": _webroot,
    "dns-01:rfc2136": _rfc2136,
    "dns-01:exec": _exec,
    "dns-01:lexicon": _lexicon,
    "dns-01:acme-dns": _acme_dns,
    "dns-01:windows": _windows,
}


def load_solver(challenge: str, mode: str) -> SolverBuilder:
    """The builder for a challenge type and mode; ConfigError names the known ones."""
    try:
        return SOLVERS[f"{challenge}:{mode}"]
    except KeyError:
        known = ", ".join(sorted(SOLVERS))
        raise ConfigError(f"no {challenge} solver with mode {mode!r} (known: {known})") from None


def build_solvers(
    options: AcmeOptions, context: PluginContext, where: str = "issuers.acme"
) -> dict[str, ChallengeSolver]:
    """The solvers the options call for, keyed by challenge type."""
    wanted = {options.challenge_for(rule_name) for rule in options.solvers for rule_name in rule.names}
    wanted.add(options.challenge_for("default.invalid"))
    solvers: dict[str, ChallengeSolver] = {}
    if "http-01" in wanted:
        mode = options.http01.mode if options.http01 is not None else "standalone"
        solvers["http-01"] = load_solver("http-01", mode)(options, context, where)
    if "dns-01" in wanted and options.dns01 is not None:
        solvers["dns-01"] = load_solver("dns-01", options.dns01.mode)(options, context, where)
    return solvers
