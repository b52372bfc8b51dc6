"""Merpati's SMTP server (RFC 5321 with ESMTP extensions) for the MX and submission listeners.

The protocol core is sans-I/O: ``commands`` parses command lines, ``data`` frames DATA and BDAT
bodies, ``session`` is the state machine (states and the commands each allows are a table),
``replies`` holds every reply we send. ``policy`` and ``trace`` decide acceptance and build
trace headers; ``server`` is the asyncio transport and the listener factories. Nothing in the
core imports asyncio, opens a socket or file, or reads the clock.
"""
