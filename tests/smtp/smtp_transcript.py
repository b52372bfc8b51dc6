"""Drive the sans-I/O SMTP session with byte strings and a scripted decision maker."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from merpati.smtp import replies
from merpati.smtp.events import (
    CLOSE,
    NEED_DATA,
    AuthRequest,
    Event,
    MailRequest,
    MessageRequest,
    RcptRequest,
    StartTLSRequest,
)
from merpati.smtp.session import Session, Settings

SETTINGS = Settings(
    hostname="mx.example.org",
    role="mx",
    client_ip="192.0.2.1",
    max_size=10_000,
    max_recipients=5,
    max_errors=10,
    starttls_offered=True,
)


def settings(**changes: object) -> Settings:
    return dataclasses.replace(SETTINGS, **changes)  # type: ignore[arg-type]


def decide(session: Session, event: Event) -> None:
    """Accept everything but recipients at bad.example; password "pw" is right."""
    if isinstance(event, MailRequest):
        session.respond(replies.MAIL_OK)
    elif isinstance(event, RcptRequest):
        if event.command.address.endswith("@bad.example"):
            session.respond(replies.NO_SUCH_USER)
        else:
            session.respond(replies.RCPT_OK)
    elif isinstance(event, AuthRequest):
        session.auth_result(event.username if event.password == "pw" else None)
    elif isinstance(event, MessageRequest):
        session.respond(replies.reply(250, "2.0.0", "queued"))
    elif isinstance(event, StartTLSRequest):
        session.tls_started("TLSv1.3", "TLS_AES_128_GCM_SHA256")


@dataclass
class Result:
    output: bytes
    events: list[Event] = field(default_factory=list)
    closed: bool = False
    session: Session | None = None

    @property
    def lines(self) -> list[str]:
        return self.output.decode("utf-8", "replace").split("\r\n")[:-1]

    @property
    def codes(self) -> list[str]:
        """Reply codes of final reply lines (one per reply), greeting included."""
        return [line[:3] for line in self.lines if line[3:4] == " "]

    @property
    def messages(self) -> list[MessageRequest]:
        return [e for e in self.events if isinstance(e, MessageRequest)]


def run(
    data: bytes,
    chunk: int | None = None,
    cfg: Settings = SETTINGS,
    decider: Callable[[Session, Event], None] = decide,
    eof: bool = True,
) -> Result:
    """Feed ``data`` (whole, or ``chunk`` bytes at a time) then EOF; collect the output."""
    session = Session(cfg)
    result = Result(session.data_to_send(), session=session)
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    if eof:
        pieces.append(b"")
    out = [result.output]
    for piece in pieces:
        session.receive_data(piece)
        while True:
            event = session.next_event()
            if event is NEED_DATA:
                break
            if event is CLOSE:
                result.closed = True
                break
            result.events.append(event)
            decider(session, event)
        out.append(session.data_to_send())
        if result.closed:
            break
    result.output = b"".join(out)
    return result


EHLO = b"EHLO client.example\r\n"


def transaction(body: bytes, rcpts: tuple[str, ...] = ("a@example.org",)) -> bytes:
    cmds = b"MAIL FROM:<s@example.net>\r\n"
    for r in rcpts:
        cmds += b"RCPT TO:<" + r.encode() + b">\r\n"
    return cmds + b"DATA\r\n" + body


def feed(session: Session, data: bytes, decider: Callable[[Session, Event], None] = decide) -> str:
    """Feed more bytes to a running session; return its output as text."""
    session.receive_data(data)
    while (event := session.next_event()) is not NEED_DATA and event is not CLOSE:
        decider(session, event)
    return session.data_to_send().decode()
