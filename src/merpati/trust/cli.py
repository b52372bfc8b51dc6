"""``merpati dns DOMAIN [--json] [--check]``: print the records to publish, or compare them
with what DNS answers (exit 1 when anything is missing, different or unanswerable); it reads
the DKIM keys and changes nothing.

``merpati dkim list DOMAIN`` / ``merpati dkim remove DOMAIN SELECTOR``: the DKIM selectors
and which set signs now; removing the set that signs is refused (rotate first).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from merpati.config import Config
from merpati.errors import OperationalError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "dns",
        help="the DNS records to publish for a domain",
        description="Print the DNS records (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, SRV) "
        "to publish for DOMAIN; --check compares them with what DNS answers.",
    )
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("--json", action="store_true", help="print JSON instead of zone-file lines")
    p.add_argument("--check", action="store_true", help="ask DNS and list what differs")
    p.set_defaults(func=dns_command)

    k = subparsers.add_parser("dkim", help="list or remove a domain's DKIM selectors")
    ksub = k.add_subparsers(dest="dkim_command", metavar="ACTION", required=True)
    klist = ksub.add_parser("list", help="the selectors of DOMAIN and which one signs")
    klist.add_argument("domain", metavar="DOMAIN")
    klist.set_defaults(func=dkim_list)
    krm = ksub.add_parser("remove", help="delete one selector's key (after rotate-dkim)")
    krm.add_argument("domain", metavar="DOMAIN")
    krm.add_argument("selector", metavar="SELECTOR")
    krm.set_defaults(func=dkim_remove)


def dns_command(args: argparse.Namespace, config: Config) -> int:
    # Imported here: every merpati command builds the parser, only this one needs them.
    from merpati.trust.dkim_keys import DkimKeyError, canonical_domain, list_selectors
    from merpati.trust.records import check, mta_sts_policy, records_for, zone_lines

    try:
        domain = canonical_domain(args.domain)
    except DkimKeyError as exc:
        raise OperationalError(str(exc)) from None
    records = records_for(config, domain)
    if not list_selectors(config.data_dir, domain):
        print(
            f"merpati: note: {domain} has no DKIM keys in {config.data_dir / 'dkim'} "
            f"(`merpati domain add {domain}` creates them)",
            file=sys.stderr,
        )
    if not args.check:
        if args.json:
            listing: dict[str, object] = {
                "domain": domain,
                "records": [r.as_json() for r in records],
                "mta_sts_policy": {
                    "url": f"https://mta-sts.{domain}/.well-known/mta-sts.txt",
                    "text": mta_sts_policy(config),
                },
            }
            print(json.dumps(listing, indent=2))
        else:
            print("\n".join(zone_lines(config, domain, records)))
        return 0
    results = check(records, config.dns.nameservers, config.dns.timeout)
    bad = [r for r in results if r.status != "ok"]
    if args.json:
        doc: dict[str, object] = {
            "domain": domain,
            "ok": not bad,
            "results": [
                {**r.record.as_json(), "status": r.status, "found": list(r.found)}
                | ({"detail": r.detail} if r.detail else {})
                for r in results
            ],
        }
        print(json.dumps(doc, indent=2))
    else:
        for r in results:
            where = f"{r.record.name} {r.record.type}"
            if r.status == "ok":
                print(f"ok        {where}")
            elif r.status == "missing":
                print(f"missing   {r.record.zone_line()}")
            elif r.status == "different":
                print(f"different {where}: found {' | '.join(r.found)}")
                print(f"          expected {r.record.rdata()}")
            else:
                print(f"error     {where}: DNS did not answer ({r.detail})")
        print(f"{len(results) - len(bad)} of {len(results)} records as expected")
    return 1 if bad else 0


def dkim_list(args: argparse.Namespace, config: Config) -> int:
    import time

    from merpati.trust.dkim_keys import DkimKeyError, list_selectors, signing_keys

    try:
        keys = list_selectors(config.data_dir, args.domain)
        signing = {k.selector for k in signing_keys(config.data_dir, args.domain)}
    except DkimKeyError as exc:
        raise OperationalError(str(exc)) from None
    for k in keys:
        made = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(k.created))
        state = "signing" if k.selector in signing else "published"
        print(f"{k.selector}\t{k.algorithm}\t{made}\t{state}")
    return 0


def dkim_remove(args: argparse.Namespace, config: Config) -> int:
    from merpati.trust.dkim_keys import DkimKeyError, remove_selector, signing_keys

    try:
        if args.selector.lower() in {
            k.selector for k in signing_keys(config.data_dir, args.domain)
        }:
            raise OperationalError(
                f"{args.selector} still signs mail for {args.domain}; rotate first and wait"
            )
        remove_selector(config.data_dir, args.domain, args.selector)
    except DkimKeyError as exc:
        raise OperationalError(str(exc)) from None
    print(f"removed DKIM selector {args.selector}; delete its DNS record after a few days")
    return 0
