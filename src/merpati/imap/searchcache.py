"""The process-wide cache of casefolded header values that SEARCH matches against.

rfc9051:6.4.4 header keys (FROM, TO, CC, BCC, SUBJECT, HEADER field string) are substring
matches, case-insensitive, on decoded text. Decoding and casefolding a message's header is the
costly part, and a message's content never changes under its (folder, UIDVALIDITY, UID)
(rfc9051:2.3.1.1), so each value is computed once per process and kept here, by column: for
one folder and one field, UID -> the field's decoded, casefolded values joined by ``SEP``
(None: the message has no such field). A SEARCH of a folder then is one dict lookup and one
``in`` per message.

A needle without ``SEP`` cannot match across two joined values, so matching the joined text
gives exactly the per-value answer; a needle containing ``SEP`` is not answered from here.

Shared by every session of the process; bounded by the number of cached messages summed over
folders (the least recently searched folders are dropped first). Entries for expunged UIDs are
harmless (UIDs are never reused) and are pruned at the next search of the folder; a new
UIDVALIDITY of a folder drops the old one's entries.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container

SEP = "\x00"  # joins the values of one field; never matches inside a needle without it

ColumnId = tuple[str, str]  # ("f", field) from the stored search fields, ("h", field) raw header
Column = dict[int, str | None]
FolderKey = tuple[str, str]  # (account, folder)


def join_values(values: list[str]) -> str | None:
    """A field's values as stored in a column: None when the message has none."""
    if not values:
        return None
    return SEP.join(v.casefold() for v in values)


class FolderFields:
    """The cached columns of one folder under one UIDVALIDITY."""

    __slots__ = ("columns", "uidvalidity")

    def __init__(self, uidvalidity: int) -> None:
        self.uidvalidity = uidvalidity
        self.columns: dict[ColumnId, Column] = {}

    def column(self, cid: ColumnId) -> Column:
        col = self.columns.get(cid)
        if col is None:
            col = self.columns[cid] = {}
        return col

    def size(self) -> int:
        return sum(len(c) for c in self.columns.values())

    def prune(self, keep: Container[int], largest_uid: int) -> None:
        """Drop the UIDs at or below ``largest_uid`` that are not in ``keep`` (expunged)."""
        for col in self.columns.values():
            gone = [u for u in col if u <= largest_uid and u not in keep]
            for u in gone:
                del col[u]


class SearchFieldCache:
    """Per (account, folder): the ``FolderFields`` of its current UIDVALIDITY, least recently
    used out once more than ``max_entries`` values are cached in all."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._folders: OrderedDict[FolderKey, FolderFields] = OrderedDict()

    def folder(self, account: str, folder: str, uidvalidity: int) -> FolderFields:
        key = (account, folder)
        ff = self._folders.get(key)
        if ff is None or ff.uidvalidity != uidvalidity:
            ff = self._folders[key] = FolderFields(uidvalidity)
        self._folders.move_to_end(key)
        return ff

    def trim(self) -> None:
        """Drop least recently used folders while over budget (never the most recent one)."""
        total = sum(f.size() for f in self._folders.values())
        while total > self.max_entries and len(self._folders) > 1:
            _, ff = self._folders.popitem(last=False)
            total -= ff.size()
        if total > self.max_entries and self._folders:
            # One folder alone is over budget: keep what it has, stop it from growing further.
            ff = next(iter(self._folders.values()))
            limit = self.max_entries // max(1, len(ff.columns))
            for col in ff.columns.values():
                if len(col) > limit:
                    keep = list(col.items())[len(col) - limit :]  # the newest entries
                    col.clear()
                    col.update(keep)

    def drop(self, account: str, folder: str) -> None:
        self._folders.pop((account, folder), None)


__all__ = ["SEP", "Column", "ColumnId", "FolderFields", "SearchFieldCache", "join_values"]
