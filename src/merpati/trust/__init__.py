"""Trust and abuse controls: DKIM keys and signing, inbound SPF/DKIM/DMARC/ARC checks, SRS,
the DNS records a domain publishes, DNSBL lookups, greylisting and rate limits.

Each concern is its own small module; this package imports none of them eagerly.
"""
