"""One outbound destination (a domain's MX hosts, or the relay host) and its connection.

``Destination.send`` delivers one message to some recipients of one domain in one transaction
and returns one ``Outcome`` per recipient: delivered, deferred (retry later) or bounced. It
tries every address of every host in route order until one accepts a session (rfc5321:5.1: on
a connection failure or a 4xx/5xx greeting, try the next), offers STARTTLS opportunistically
(no certificate check yet; a failed handshake is retried once in the clear, as rfc3207:4.1
allows for opportunistic use), authenticates to a relay (never without TLS), and keeps the
connection for the next message (connection reuse). It does not retry or schedule: the
runner does.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from merpati.delivery.api import Recipient
from merpati.dns.resolver import DNSNotFound, DNSTemporaryError, Resolver
from merpati.queue.client import SMTPClient, SMTPClientError, SMTPReplyError, Timeouts
from merpati.queue.routing import Host, Route
from merpati.queue.smtpproto import Reply, data_payload, mail_command, rcpt_command

__all__ = ["Destination", "OutboundMessage", "Outcome", "TransportSettings"]

# Addresses tried per destination and attempt (all hosts together), a bound against MX lists
# that would keep one attempt busy for hours.
MAX_ADDRESSES_PER_ATTEMPT = 20
# How long a failure to connect answers for the next messages to the same destination before
# connecting is tried again.
FAILURE_MEMORY = 30.0

Result = Literal["delivered", "deferred", "bounced"]


@dataclass(frozen=True, slots=True)
class TransportSettings:
    hostname: str  # our EHLO name
    timeouts: Timeouts
    source_address: str = ""
    tls_context: Callable[[], ssl.SSLContext] | None = None
    relay_username: str = ""
    relay_password: str = ""


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    mail_from: str
    recipients: tuple[Recipient, ...]
    data: bytes
    eight_bit: bool = False
    binary: bool = False  # BODY=BINARYMIME (rfc3030): only BDAT can carry it
    smtputf8: bool = False  # the sender asked for SMTPUTF8
    needs_smtputf8: bool = False  # and the message cannot go without it (rfc6531:3.4)
    ret: str | None = None
    envid: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    code: int  # the SMTP reply code, or one we chose for a local decision
    status: str  # rfc3463 enhanced status
    text: str
    remote: bool = False  # code and text came from the peer (a Diagnostic-Code)
    mx: str | None = None
    ip: str | None = None
    tls: str | None = None
    peer_dsn: bool = False  # the peer took over DSN duties (rfc3461)


def _from_reply(reply: Reply, mx: str | None, ip: str | None, tls: str | None) -> Outcome:
    if reply.positive:
        result: Result = "delivered"
    elif reply.transient:
        result = "deferred"
    else:
        result = "bounced"
    return Outcome(result, reply.code, reply.status, reply.text, True, mx, ip, tls)


class Destination:
    def __init__(self, route: Route, settings: TransportSettings, resolver: Resolver) -> None:
        self.route = route
        self._settings = settings
        self._resolver = resolver
        self._client: SMTPClient | None = None
        self._host: Host | None = None
        self._ip: str | None = None
        self._failure: Outcome | None = None  # connecting failed: answer the rest at once
        self._failed_at = 0.0

    @property
    def connected(self) -> bool:
        return self._client is not None and not self._client.broken

    async def close(self) -> None:
        if self._client is not None:
            await self._client.quit()
            self._client = None

    async def send(self, msg: OutboundMessage) -> list[Outcome]:
        n = len(msg.recipients)
        if self.route.error is not None:
            err = self.route.error
            result: Result = "bounced" if err.permanent else "deferred"
            return [Outcome(result, 550 if err.permanent else 451, err.status, err.text)] * n
        if self._client is not None and self._client.broken:
            await self._client.close()
            self._client = None
        if self._client is None:
            if self._failure is not None and time.monotonic() - self._failed_at < FAILURE_MEMORY:
                return [self._failure] * n
            failure = await self._connect()
            if failure is not None:
                self._failure, self._failed_at = failure, time.monotonic()
                return [failure] * n
            self._failure = None
        assert self._client is not None and self._host is not None
        client, mx, ip = self._client, self._host.name, self._ip
        tls = client.tls_version
        ext = client.ext
        size = len(msg.data)
        if ext.size and size > ext.size:  # rfc1870:6.1 do not send what the peer refuses
            text = f"message of {size} bytes exceeds the {ext.size} bytes {mx} accepts"
            return [Outcome("bounced", 552, "5.3.4", text, False, mx, ip, tls)] * n
        if msg.needs_smtputf8 and not ext.has("SMTPUTF8"):
            # rfc6531:3.4 a message that needs SMTPUTF8 cannot go to a server without it.
            text = f"{mx} does not support SMTPUTF8, which this message needs"
            return [Outcome("bounced", 553, "5.6.7", text, False, mx, ip, tls)] * n
        if msg.binary and not (ext.has("BINARYMIME") and ext.has("CHUNKING")):
            # rfc3030:3 binary content cannot go to a server without BINARYMIME; we do not
            # convert it (rfc3463 X.6.3 conversion required and not supported).
            text = f"{mx} does not accept BINARYMIME, which this message needs"
            return [Outcome("bounced", 554, "5.6.3", text, False, mx, ip, tls)] * n
        mail = mail_command(
            msg.mail_from,
            ext,
            size=size,
            eight_bit=msg.eight_bit,
            smtputf8=msg.smtputf8 or msg.needs_smtputf8,
            ret=msg.ret,
            envid=msg.envid,
            binary=msg.binary,
        )
        rcpts = [
            rcpt_command(r.address, ext, notify=r.notify, orcpt=r.orcpt) for r in msg.recipients
        ]
        try:
            if msg.binary:
                replies = await client.transaction(mail, rcpts, msg.data, chunked=True)
            else:
                replies = await client.transaction(mail, rcpts, data_payload(msg.data))
        except SMTPClientError as exc:
            await self.close()
            return [Outcome("deferred", 451, "4.4.2", f"{mx}: {exc}", False, mx, ip, tls)] * n
        if not replies.completed:
            await client.rset()
        if any(
            r is not None and r.code == 421 for r in (replies.mail, replies.data, *replies.rcpts)
        ):
            await self.close()  # rfc5321:3.8 the peer is closing the channel
        peer_dsn = ext.has("DSN")
        if not replies.mail.positive:
            return [_from_reply(replies.mail, mx, ip, tls)] * n
        out: list[Outcome] = []
        for r in replies.rcpts:
            if r is None or not r.positive:
                out.append(_from_reply(r or replies.mail, mx, ip, tls))
            elif replies.data is None:
                out.append(
                    Outcome("deferred", 451, "4.4.2", "no reply to DATA", False, mx, ip, tls)
                )
            else:
                o = _from_reply(replies.data, mx, ip, tls)
                if o.result == "delivered":
                    o = Outcome("delivered", o.code, o.status, o.text, True, mx, ip, tls, peer_dsn)
                out.append(o)
        return out

    async def _addresses(self, host: Host) -> tuple[list[str], Outcome | None]:
        literal = host.ip_literal
        if literal:
            return [literal], None
        try:
            ips = await self._resolver.addresses(host.name)
        except DNSTemporaryError as exc:
            return [], Outcome("deferred", 451, "4.4.3", f"DNS lookup failed: {exc}")
        except DNSNotFound:
            ips = []
        if not ips:
            if host.implicit_mx:  # rfc5321:5.1 no MX and no address: no mail for this domain
                text = f"{host.name} has no MX and no address"
                return [], Outcome("bounced", 550, "5.1.2", text)
            return [], Outcome("deferred", 451, "4.4.4", f"MX host {host.name} has no address")
        return ips, None

    async def _connect(self) -> Outcome | None:
        """Open a session with the first host and address that accepts one; return the
        failure to report when none does."""
        last: Outcome | None = None
        tried = 0
        for host in self.route.hosts:
            ips, failure = await self._addresses(host)
            if failure is not None:
                if failure.result == "bounced":
                    return failure
                last = failure
            for ip in ips:
                if tried >= MAX_ADDRESSES_PER_ATTEMPT:
                    break
                tried += 1
                outcome = await self._open(host, ip, allow_tls=True)
                if outcome is None:
                    return None
                last = outcome
        return last or Outcome("deferred", 451, "4.4.4", "no host to deliver to")

    async def _open(self, host: Host, ip: str, *, allow_tls: bool) -> Outcome | None:
        s = self._settings
        implicit = s.tls_context() if (host.implicit_tls and s.tls_context) else None
        server_name = "" if host.ip_literal else host.name
        try:
            client = await SMTPClient.connect(
                ip,
                host.port,
                timeouts=s.timeouts,
                source_address=s.source_address,
                tls_context=implicit,
                server_hostname=server_name,
            )
        except SMTPReplyError as exc:
            return replace(_from_reply(exc.reply, host.name, ip, None), result="deferred")
        except SMTPClientError as exc:
            return Outcome(
                "deferred", 451, "4.4.1", f"{host.name} [{ip}]: {exc}", False, host.name, ip
            )
        try:
            await client.ehlo(s.hostname)
            if (
                allow_tls
                and client.tls_version is None
                and client.ext.has("STARTTLS")
                and s.tls_context is not None
            ):
                try:
                    await client.starttls(s.tls_context(), server_name, s.hostname)
                except SMTPReplyError:
                    pass  # 454: carry on in the clear (opportunistic)
                except SMTPClientError:
                    await client.close()
                    if host.relay and s.relay_username:
                        raise
                    return await self._open(host, ip, allow_tls=False)
            if host.relay and s.relay_username:
                if client.tls_version is None:
                    await client.close()
                    text = f"relay {host.name} offers no TLS; not sending the password in clear"
                    return Outcome("deferred", 451, "4.7.10", text, False, host.name, ip)
                await client.authenticate(s.relay_username, s.relay_password)
        except SMTPReplyError as exc:
            await client.close()
            outcome = _from_reply(exc.reply, host.name, ip, client.tls_version)
            return replace(outcome, result="deferred")
        except SMTPClientError as exc:
            await client.close()
            return Outcome(
                "deferred", 451, "4.4.2", f"{host.name} [{ip}]: {exc}", False, host.name, ip
            )
        self._client, self._host, self._ip = client, host, ip
        return None
