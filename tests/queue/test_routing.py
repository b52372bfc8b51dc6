"""Routing: MX order and randomisation, implicit MX, null MX, DNS errors, relay host."""

from __future__ import annotations

import random

from qhelpers import run

from merpati.config import Config, DeliveryConfig
from merpati.dns.fake import FakeResolver
from merpati.queue.routing import route_domain

CFG = Config(hostname="mx.a.test", delivery=DeliveryConfig(port=2525))


def names(route: object) -> list[str]:
    return [h.name for h in route.hosts]  # type: ignore[attr-defined]


def test_mx_sorted_by_preference_and_random_among_equals() -> None:
    r = FakeResolver(
        mx_records={
            "b.test": [(20, "c.b.test"), (10, "a.b.test"), (10, "b.b.test"), (5, "z.b.test")]
        }
    )
    seen: set[tuple[str, ...]] = set()

    async def body() -> None:
        for seed in range(30):
            route = await route_domain("b.test", resolver=r, config=CFG, rng=random.Random(seed))
            hosts = names(route)
            assert hosts[0] == "z.b.test" and hosts[-1] == "c.b.test"
            assert set(hosts[1:3]) == {"a.b.test", "b.b.test"}
            assert all(h.port == 2525 for h in route.hosts)
            seen.add(tuple(hosts))

    run(body())
    assert len(seen) == 2  # both orders of the equal pair occur


def test_implicit_mx_when_no_mx_records() -> None:
    r = FakeResolver(a_records={"b.test": ["127.0.0.1"]})

    async def body() -> None:
        route = await route_domain("b.test", resolver=r, config=CFG)
        assert names(route) == ["b.test"] and route.hosts[0].implicit_mx

    run(body())


def test_null_mx_nxdomain_and_temporary_failure() -> None:
    r = FakeResolver(mx_records={"null.test": [(0, "")]}, failing={"down.test"})

    async def body() -> None:
        null = await route_domain("null.test", resolver=r, config=CFG)
        assert null.error is not None and null.error.permanent and null.error.status == "5.1.10"
        nx = await route_domain("none.test", resolver=r, config=CFG)
        assert nx.error is not None and nx.error.permanent and nx.error.status == "5.1.2"
        down = await route_domain("down.test", resolver=r, config=CFG)
        assert down.error is not None and not down.error.permanent

    run(body())


def test_we_are_an_mx_only_better_hosts_are_used() -> None:
    r = FakeResolver(
        mx_records={
            "b.test": [(10, "primary.b.test"), (20, "mx.a.test"), (30, "worse.b.test")],
            "loop.test": [(10, "mx.a.test")],
        }
    )

    async def body() -> None:
        assert names(await route_domain("b.test", resolver=r, config=CFG)) == ["primary.b.test"]
        loop = await route_domain("loop.test", resolver=r, config=CFG)
        assert loop.error is not None and loop.error.status == "5.4.6"

    run(body())


def test_relay_host_and_address_literals() -> None:
    r = FakeResolver()

    async def body() -> None:
        for relay, port, implicit in (
            ("smtp.example.net", 587, False),
            ("smtp.example.net:465", 465, True),
            ("[::1]:2525", 2525, False),
        ):
            cfg = Config(delivery=DeliveryConfig(relay_host=relay))
            route = await route_domain("b.test", resolver=r, config=cfg)
            (host,) = route.hosts
            assert host.relay and host.port == port and host.implicit_tls == implicit
        lit = await route_domain("[127.0.0.1]", resolver=r, config=CFG)
        assert names(lit) == ["127.0.0.1"]
        bad = await route_domain("[nonsense]", resolver=r, config=CFG)
        assert bad.error is not None and bad.error.permanent
        assert sum(r.lookups.values()) == 0

    run(body())
