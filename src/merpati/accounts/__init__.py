"""Domains, accounts, aliases and quotas: the account database (SQLite in the data dir)."""
