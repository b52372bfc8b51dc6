"""POP3 test helpers: make ``pop3_driver`` and ``pop3_util`` importable by the tests here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
