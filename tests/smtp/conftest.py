"""SMTP tests import their helpers (smtp_transcript, smtp_inproc) from this directory.

Appended, not prepended, to sys.path: other areas' ``from conftest import ...`` must keep
finding tests/conftest.py first.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)
