"""Where things live on disk: account directories, Maildir++ folder directories, message file
names with their ``:2,FLAGS`` info, and the fsync helpers every writer uses.

Layout under ``<data_dir>/mail/``::

    <domain>/<localpart>/            the account's Maildir++ root = INBOX (cur/ new/ tmp/)
    <domain>/<localpart>/.Sent/      folder "Sent"
    <domain>/<localpart>/.A.B/       folder "A/B" (our "/" separator is Maildir++'s ".")
    <domain>/<localpart>/merpati-index.sqlite   the index (a cache of the Maildir)

Folder levels are encoded as Dovecot does by default: modified UTF-7 (rfc3501:5.1.3) for
non-ASCII, plus Dovecot's listescape form ``\\2e`` for a "." inside a level (and ``\\5c`` for a
backslash) so it is not read as a hierarchy separator. Domain and local part directory names
are escaped (``%XX``) wherever a character could be unsafe in a path.

File names follow the Maildir spec: ``<secs>.M<usecs>P<pid>Q<n>R<rand>.<host>,S=<size>`` plus
``:2,<flags>`` once the message is in ``cur/``. The part before the first "," or ":" is the
message's permanent unique id (POP3 UIDL). No database access happens here.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ctypes.util
import itertools
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from merpati.durable import fsync_dir

INDEX_NAME = "merpati-index.sqlite"
UIDVALIDITY_FILE = "merpati-uidvalidity"
SUBDIRS = ("cur", "new", "tmp")

# Maildir info letters for system flags, in the ASCII order the spec asks for.
FLAG_LETTERS = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
LETTER_FLAGS = {v: k for k, v in FLAG_LETTERS.items()}

_HOST = re.sub(r"[/:,\\]", "_", socket.gethostname() or "localhost")
_counter = itertools.count()
_SAFE = re.compile(r"[A-Za-z0-9_+=\-]")


def _escape_segment(text: str) -> str:
    out = []
    for i, ch in enumerate(text):
        if _SAFE.fullmatch(ch) or (ch == "." and i > 0) or (ord(ch) > 127 and ch.isalnum()):
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out) or "%00"


def account_dir(mail_root: Path, account: str) -> Path:
    """``alice@example.org`` -> ``<mail_root>/example.org/alice``."""
    local, _, domain = account.rpartition("@")
    if not local:
        local, domain = domain, "_nodomain"
    return mail_root / _escape_segment(domain.lower()) / _escape_segment(local)


# -- modified UTF-7 (rfc3501:5.1.3) --------------------------------------------------------
def _mutf7_encode(text: str) -> str:
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append(
                "&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-"
            )
            pending.clear()

    for ch in text:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def _mutf7_decode(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        body = m.group(1)
        if not body:
            return "&"
        b64 = body.replace(",", "/")
        b64 += "=" * (-len(b64) % 4)
        try:
            return base64.b64decode(b64).decode("utf-16-be")
        except ValueError:
            return m.group(0)

    return re.sub(r"&([A-Za-z0-9+,]*)-", repl, text)


def folder_dirname(name: str) -> str:
    """Folder name -> its Maildir++ directory name ("" for INBOX)."""
    if name == "INBOX":
        return ""
    levels = []
    for level in name.split("/"):
        enc = _mutf7_encode(level.replace("\\", "\\5c").replace(".", "\\2e"))
        levels.append(enc)
    return "." + ".".join(levels)


def folder_name(dirname: str) -> str | None:
    """Maildir++ directory name -> folder name, or None if it is not a folder directory."""
    if dirname == "":
        return "INBOX"
    if not dirname.startswith(".") or dirname in (".", ".."):
        return None
    levels = [
        _mutf7_decode(level).replace("\\2e", ".").replace("\\5c", "\\")
        for level in dirname[1:].split(".")
    ]
    if any(not level for level in levels):
        return None
    return "/".join(levels)


# -- file names -------------------------------------------------------------------------------
_random: tuple[int, str] = (-1, "")  # (pid, random part) of this process


def new_basename() -> str:
    """A Maildir unique name: time, pid, a per-process counter and a random part drawn once
    per process (the pid may be reused by a later process; the counter never repeats)."""
    global _random
    now = time.time()
    secs = int(now)
    usecs = int((now - secs) * 1_000_000)
    pid = os.getpid()
    if _random[0] != pid:
        _random = (pid, secrets.token_hex(4))
    return f"{secs}.M{usecs}P{pid}Q{next(_counter)}R{_random[1]}.{_HOST}"


KEYWORDS_FILE = "dovecot-keywords"
KEYWORD_LETTERS = "abcdefghijklmnopqrstuvwxyz"  # Dovecot's 26 keyword slots per folder


def filename(
    base: str, size: int, flags: frozenset[str] | None, letters: dict[str, str] | None = None
) -> str:
    """Name of the file: without info (in new/) when ``flags`` is None. ``letters`` maps
    keywords to their Dovecot letter in this folder (keywords without one are index-only)."""
    name = f"{base},S={size}"
    if flags is None:
        return name
    system = "".join(sorted(FLAG_LETTERS[f] for f in flags if f in FLAG_LETTERS))
    keywords = "".join(sorted(letters[f] for f in flags if f in letters)) if letters else ""
    return name + ":2," + system + keywords


def parse_filename(name: str, keywords: dict[str, str] | None = None) -> tuple[str, frozenset[str]]:
    """-> (unique base, flags from the ``:2,`` info). ``keywords`` maps Dovecot letters to
    keyword names; letters it does not know are ignored."""
    base = re.split(r"[,:]", name, maxsplit=1)[0]
    info = name.rpartition(":2,")
    if not info[1]:
        return base, frozenset()
    flags = {LETTER_FLAGS[c] for c in info[2] if c in LETTER_FLAGS}
    if keywords:
        flags.update(keywords[c] for c in info[2] if c in keywords)
    return base, frozenset(flags)


def read_keywords_file(folder_dir: Path) -> dict[int, str]:
    """Dovecot's ``dovecot-keywords``: lines of ``<index> <keyword>``."""
    out: dict[int, str] = {}
    try:
        text = (folder_dir / KEYWORDS_FILE).read_text("utf-8", "replace")
    except (FileNotFoundError, NotADirectoryError):
        return out
    for line in text.splitlines():
        idx, _, word = line.partition(" ")
        if idx.isdigit() and int(idx) < len(KEYWORD_LETTERS) and word.strip():
            out[int(idx)] = word.strip()
    return out


def write_keywords_file(folder_dir: Path, keywords: dict[int, str]) -> None:
    tmp = folder_dir / (KEYWORDS_FILE + ".tmp")
    tmp.write_text("".join(f"{i} {kw}\n" for i, kw in sorted(keywords.items())), "utf-8")
    os.replace(tmp, folder_dir / KEYWORDS_FILE)


def tmp_owner_dead(name: str) -> bool:
    """Whether a tmp/ file was left by a process of this host that no longer runs."""
    m = re.match(r"\d+\.M\d+P(\d+)Q\d+R[0-9a-f]+\.([^,:]+)", name)
    if not m or m.group(2) != _HOST:
        return False
    pid = int(m.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# -- durability helpers -------------------------------------------------------------------------
# With this many files (or directories) to make durable at once, one syncfs(2) of the file
# system is cheaper than one fsync each (measured: ~2 ms per fsync, ~30 ms per syncfs of 200).
SYNCFS_MIN = 4
_syncfs: Callable[[int], int] | None = None
_syncfs_checked = False


def _load_syncfs() -> Callable[[int], int] | None:
    global _syncfs, _syncfs_checked
    if not _syncfs_checked:
        _syncfs_checked = True
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _syncfs = libc.syncfs
        except (OSError, AttributeError):
            _syncfs = None
    return _syncfs


def sync_many(fds: list[int]) -> None:
    """Make the data of every open file in ``fds`` durable (same file system): fsync each, or
    one syncfs(2) when there are many. Raises OSError on failure."""
    syncfs = _load_syncfs() if len(fds) >= SYNCFS_MIN else None
    if syncfs is not None and syncfs(fds[0]) == 0:
        return
    for fd in fds:
        os.fsync(fd)


def sync_filesystem(path: Path) -> None:
    """Make everything written on ``path``'s file system durable (syncfs, else sync)."""
    syncfs = _load_syncfs()
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if syncfs is not None and syncfs(fd) == 0:
            return
    finally:
        os.close(fd)
    os.sync()


def sync_dirs(dirs: Sequence[str | Path]) -> None:
    """Make renames/links in ``dirs`` durable: fsync each directory, or one syncfs(2)."""
    syncfs = _load_syncfs() if len(dirs) >= SYNCFS_MIN else None
    if syncfs is not None:
        fd = os.open(dirs[0], os.O_RDONLY | os.O_DIRECTORY)
        try:
            if syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    for d in dirs:
        fsync_dir(d)


def make_maildir(path: Path) -> None:
    for sub in SUBDIRS:
        (path / sub).mkdir(parents=True, exist_ok=True)


def unlink_if_there(path: str | Path) -> None:
    """Remove a file; already gone is fine."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def write_file(path: str | Path, data: bytes, mtime: float | None) -> int:
    """Write ``data`` to a new file (not yet fsynced); return the open descriptor."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if mtime is not None:
            os.utime(fd, (mtime, mtime))
    except BaseException:
        os.close(fd)
        unlink_if_there(path)
        raise
    return fd
