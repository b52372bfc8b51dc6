"""Reading a mailbox back the way a mail client does, for end-to-end tests: every message of
INBOX as raw bytes, over IMAP (STARTTLS, LOGIN, read-only SELECT, BODY.PEEK[]) or POP3 (STLS,
USER/PASS, RETR), from a running ``MerpatiServer``."""

from __future__ import annotations

import contextlib
import imaplib
import poplib

from harness import MerpatiServer


def imap_messages(server: MerpatiServer, user: str, password: str) -> list[bytes]:
    host, port = server.address("imap")
    imap = imaplib.IMAP4(host, port, timeout=20)
    try:
        imap.starttls(MerpatiServer.client_tls_context())
        if not user.isascii():  # a UTF-8 name goes as a quoted string, sent as UTF-8
            imap._mode_utf8()
            user = f'"{user}"'
        imap.login(user, password)
        imap.select("INBOX", readonly=True)
        _, data = imap.search(None, "ALL")
        raws = []
        for num in data[0].split():
            _, parts = imap.fetch(num, "(BODY.PEEK[])")
            raws.append(parts[0][1])  # type: ignore[index]
        imap.logout()
    except BaseException:
        with contextlib.suppress(OSError):
            imap.shutdown()
        raise
    return raws


def pop3_messages(server: MerpatiServer, user: str, password: str) -> list[bytes]:
    host, port = server.address("pop3")
    pop = poplib.POP3(host, port, timeout=20)
    try:
        pop.stls(MerpatiServer.client_tls_context())
        pop.user(user)
        pop.pass_(password)
        count, _ = pop.stat()
        raws = [b"\r\n".join(pop.retr(i)[1]) for i in range(1, count + 1)]
        pop.quit()
    except BaseException:
        pop.close()
        raise
    return raws
