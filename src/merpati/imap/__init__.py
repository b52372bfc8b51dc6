"""IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) server.

Layout: ``parse/`` (one module per grammar rule) turns a complete command (line plus inline
literals, as ``framing`` delivers it) into a frozen ``commands`` object; ``session`` is the
sans-I/O core that runs commands against an injected ``merpati.mailstore.api.Mailbox``;
``handlers/`` holds one module per command group; ``view`` owns the per-session sequence-number
map; ``server`` is the thin asyncio transport. Only ``server`` imports asyncio.
"""
