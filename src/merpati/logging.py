"""``key=value`` log lines on stderr: one per connection, per mail transaction, per delivery.

Values with spaces, quotes or ``=`` are quoted; control characters are escaped so a client
cannot forge log lines. Callers never pass passwords (no API takes one).
"""

from __future__ import annotations

import re
import sys
import time
from typing import IO

_SAFE = re.compile(r"[a-zA-Z0-9.\-_:/@+\[\]<>,]+")


def _fmt(value: object) -> str:
    text = str(value)
    if _SAFE.fullmatch(text):
        return text
    esc = text.replace("\\", "\\\\").replace('"', '\\"')
    esc = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in esc)
    return f'"{esc}"'


_stamp: tuple[int, str] = (-1, "")


def _timestamp() -> str:
    """The current second, formatted once per second."""
    global _stamp
    now = int(time.time())
    if _stamp[0] != now:
        _stamp = (now, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)))
    return _stamp[1]


def format_event(name: str, fields: dict[str, object]) -> str:
    ts = _timestamp()
    parts = [f"ts={ts}", f"event={name}"]
    parts += [f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None]
    return " ".join(parts)


class EventLog:
    def __init__(self, stream: IO[str] | None = None, quiet: bool = False) -> None:
        self._stream = stream
        self.quiet = quiet

    def event(self, name: str, **fields: object) -> None:
        if self.quiet:
            return
        stream = self._stream or sys.stderr
        try:
            stream.write(format_event(name, fields) + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass
