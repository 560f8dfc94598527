"""The certificate store: schema, migrations and the repository."""
