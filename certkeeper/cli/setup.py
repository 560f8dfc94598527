"""`certkeeper init`: example config, data dir (0700), secret key (0600), migrated store."""

from __future__ import annotations

import click

from certkeeper.cli.common import console

EXAMPLE_CONFIG = '''\
# certkeeper.toml - an Outlook Anywhere gateway. Every setting has a default; delete what you
# do not need. Secrets are references: "env:VAR", "file:/path", or "secret:NAME" (certkeeper secret set).

[store]
# SQLite in the data folder by default; PostgreSQL when several CAS nodes share one store:
# url = "postgresql+psycopg://certkeeper@db01.corp.contoso.com/certkeeper"
# secret_key_file = "{data_dir}/secret.key"   # or set CERTKEEPER_SECRET_KEY
# revision_retention_days = 90   # expired and failed revisions older than this are deleted

[issuers.internal]                    # the built-in CA; exists even if this table is removed
type = "internal-ca"
validity_days = 397

# [issuers.letsencrypt]
# type = "acme"
# directory = "letsencrypt"
# contact = ["mailto:exchange-admins@contoso.com"]
# agree_tos = true

[outlook_anywhere]                    # `certkeeper issue` with no names takes them from here
external_host = "mail.contoso.com"
domains = ["contoso.com"]             # autodiscover.<domain> for each accepted domain
# legacy_host = "legacy.contoso.com"  # Exchange 2010 coexistence

[[certificates]]
id = "outlook"
names = ["mail.contoso.com", "autodiscover.contoso.com"]
issuer = "internal"
key_type = "rsa2048"                  # works on every Exchange; ECDSA needs 2016 CU23+/2019 CU13+
# renew_before_days = 30              # default: 1/3 of the lifetime (ARI first for ACME)

# [[certificates.bindings]]
# type = "files"
# cert = "/etc/nginx/tls/outlook.crt"
# key = "/etc/nginx/tls/outlook.key"
# reload = ["nginx", "-s", "reload"]
# verify = ["127.0.0.1:443"]

# [notifiers.ops]
# type = "email"
# host = "smtp.contoso.com"
# to = ["exchange-admins@contoso.com"]

[daemon]
reconcile_minutes = 5
metrics_address = "127.0.0.1:9464"
'''


@click.command()
@click.option("--force", is_flag=True, help="Overwrite an existing config file.")
@click.pass_context
def init(ctx: click.Context, force: bool) -> None:
    """Write a commented example config, create the data dir and secret key, migrate the store."""
    from certkeeper import config as config_module
    from certkeeper.atomicfile import atomic_write
    from certkeeper.platform import locations
    from certkeeper.platform.protection import make_private_dir
    from certkeeper.service import Service

    obj = ctx.find_root().obj or {}
    found = locations.current(obj.get("config_path") or None)
    path, data_dir = found.config_file, found.data_dir
    out = console()
    # the data folder first: on Windows the config lives in it and inherits its protection
    make_private_dir(data_dir)
    if path.exists() and not force:
        out.print(f"Config {path} exists; keeping it (--force overwrites).")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, EXAMPLE_CONFIG.format(data_dir=data_dir).encode(), mode=0o640)
        out.print(f"Wrote example config {path}")
    loaded = config_module.load(str(path))
    service = Service.open(loaded, create=True)
    out.print(f"Data folder {loaded.data_dir} (0700), secret key {loaded.secret_key_file} (0600)")
    from certkeeper.store.db import redact_url

    out.print(f"Store {redact_url(loaded.store_url)} migrated to the latest schema")
    out.print("Back up the secret key file: without it the stored private keys cannot be opened.")
    del service
