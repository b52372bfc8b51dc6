"""The trust tests' DNS server: the shared one (tests/dnsserver.py), started at once and
authoritative for every name (an unknown name is NXDOMAIN, never REFUSED)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dnsserver import DNSServer, txt_rdata

__all__ = ["DnsServer", "txt_rdata"]


class DnsServer(DNSServer):
    def __init__(self) -> None:
        super().__init__(everything=True)
        self.start()
