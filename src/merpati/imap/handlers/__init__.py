"""Command handlers, one module per group, and the dispatch table from command name to handler.

A handler is ``async def h(session, command) -> Result | None``: it writes untagged responses
with ``session.write`` and returns the tagged result (None when the command continues later,
as IDLE and AUTHENTICATE do). It raises ``Refused`` for NO/BAD; store errors propagate and are
mapped in ``Session._run``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from merpati.imap.handlers import append, auth, fetch, folders, general, search, select, store

if TYPE_CHECKING:
    from merpati.imap.responses import Result

Handler = Callable[[Any, Any], Awaitable["Result | None"]]

HANDLERS: dict[str, Handler] = {
    "CAPABILITY": general.capability,
    "NOOP": general.noop,
    "CHECK": general.noop,
    "LOGOUT": general.logout,
    "ID": general.id_,
    "ENABLE": general.enable,
    "NAMESPACE": general.namespace,
    "IDLE": general.idle,
    "STARTTLS": auth.starttls,
    "LOGIN": auth.login,
    "AUTHENTICATE": auth.authenticate,
    "CREATE": folders.create,
    "DELETE": folders.delete,
    "RENAME": folders.rename,
    "SUBSCRIBE": folders.subscribe,
    "UNSUBSCRIBE": folders.subscribe,
    "LIST": folders.list_,
    "LSUB": folders.list_,
    "STATUS": folders.status,
    "GETQUOTA": folders.getquota,
    "GETQUOTAROOT": folders.getquotaroot,
    "SELECT": select.select,
    "EXAMINE": select.select,
    "CLOSE": select.close,
    "UNSELECT": select.close,
    "EXPUNGE": select.expunge,
    "UID EXPUNGE": select.expunge,
    "APPEND": append.append,
    "FETCH": fetch.fetch,
    "STORE": store.store,
    "COPY": store.copy_move,
    "MOVE": store.copy_move,
    "SEARCH": search.search,
}
