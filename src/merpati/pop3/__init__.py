"""POP3 (rfc1939) with CAPA (rfc2449), STLS (rfc2595), SASL (rfc5034) and UTF8 (rfc6856).

``framing``, ``commands``, ``replies``, ``maildrop`` and ``session`` are the sans-I/O core
(bytes in, actions out; no asyncio, sockets, clock or files). ``lock`` holds the per-account
maildrop locks and ``server`` is the asyncio transport with the listener factories.
"""
