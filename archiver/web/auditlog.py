"""The access log as one reader may see it: journal events passed through the reader's scope.

A reader to whom no wall applies (``Scope.whole_archive``) reads every event as stored.  For
a walled reader the log still lists every event: its number, time, type and actor (the
journal's sequence numbers have no gaps, so dropping rows would only show that something was
dropped).  Its details are shown only as far as they are about mail the reader may see;
whatever is not is left out and named in the event's ``withheld`` list:

* searches: the ids the reader may not see; the query, filters and total when any id shown
  was hidden or the query names a walled client or matter or a hidden message's id; the
  total when the ids shown were not the whole result (it would count hidden messages);
* views, downloads and disposals of a hidden message: everything but the part;
* exports: everything but the bundle's name and manifest hash and the visible ids, unless
  every exported id is visible;
* holds, releases, matter closures: everything, when the hold or matter is one the reader
  may not see (the rules of ``archiver.web.policy.hold_visible``);
* archive-wide numbers (imports, syncs, retags, verifications), source events, retention
  rules and disposition certificates naming hidden ids;
* any event type not known here, entirely.

The text filter (``contains``) is matched against what the reader is shown, never against
what is withheld, so it cannot be used to test hidden data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from archiver.web import policy
from archiver.web.access import Scope

Data = dict[str, Any]
#: what may be (the start of) a message id in a typed query: ``id:`` takes 8 hex digits or more.
_HEX_RUN = re.compile(r"(?<![0-9a-f])[0-9a-f]{8,64}")
#: what a handler returns: the data shown and the keys withheld.
Shown = tuple[Data, list[str]]


@dataclass
class Visibility:
    """What the reader may see, asked lazily and remembered for one request."""

    scope: Scope
    #: the subset of ids (stored messages) the scope may see.
    visible_ids: Callable[[Sequence[str]], set[str]]
    #: whether a hold (kind/value dict) may be shown; and the hold dict of a case, if any.
    hold_shown: Callable[[Data], bool]
    hold_of_case: Callable[[str], Data | None]
    #: lower-cased names of the sources that have a message the scope may see.
    sources: Callable[[], set[str]]
    #: whether a stored message whose id starts with this hex prefix is hidden from the scope.
    prefix_hidden: Callable[[str], bool]
    _ids: dict[str, bool] = field(default_factory=dict)
    _sources: set[str] | None = None

    def learn(self, ids: Iterable[str]) -> None:
        """Look up many ids at once (one catalog query per page of events)."""
        todo = sorted({i for i in ids if isinstance(i, str) and i not in self._ids})
        if todo:
            seen = self.visible_ids(todo)
            self._ids.update({i: i in seen for i in todo})

    def sees(self, oid: object) -> bool:
        if not isinstance(oid, str):
            return False
        if oid not in self._ids:
            self.learn([oid])
        return self._ids[oid]

    def names_hidden(self, text: str) -> bool:
        """Whether ``text`` (a search as typed) names a walled label or (a prefix of) a hidden message's id."""
        if policy.names_hidden(self.scope, text):
            return True
        return any(self.prefix_hidden(run) for run in set(_HEX_RUN.findall(text.lower())))

    def source(self, name: object) -> bool:
        if self._sources is None:
            self._sources = self.sources()
        return isinstance(name, str) and name.lower() in self._sources


def _keep(data: Data, keys: Iterable[str]) -> Shown:
    wanted = set(keys)
    return {k: v for k, v in data.items() if k in wanted}, sorted(k for k in data if k not in wanted)


def _ids_in(data: Data) -> list[str]:
    """Every message id an event names (for one batched visibility lookup)."""
    out: list[str] = []
    if isinstance(data.get("id"), str):
        out.append(data["id"])
    if isinstance(data.get("ids"), list):
        out.extend(i for i in data["ids"] if isinstance(i, str))
    cert = data.get("certificate")
    if isinstance(cert, dict):
        for key in ("disposed", "withheld"):
            out.extend(r["id"] for r in cert.get(key) or () if isinstance(r, dict) and isinstance(r.get("id"), str))
    return out


def _search(v: Visibility, data: Data) -> Shown:
    ids = [i for i in data.get("ids") or () if isinstance(i, str)]
    shown_ids = [i for i in ids if v.sees(i)]
    words = " ".join(str(data.get(k, "")) for k in ("query", "typed")) + " " + json.dumps(data.get("filters", {}))
    withheld = ["ids"] if len(shown_ids) < len(ids) else []
    out = {**data, "ids": shown_ids}
    if withheld or v.names_hidden(words):
        withheld += [k for k in ("query", "typed", "filters", "total") if k in data]
    elif not (data.get("offset") == 0 and data.get("total") == len(ids)) and "total" in data:
        withheld.append("total")
    return {k: val for k, val in out.items() if k not in withheld or k == "ids"}, sorted(set(withheld))


def _about_message(v: Visibility, data: Data) -> Shown:
    if "id" not in data or v.sees(data["id"]):
        return dict(data), []
    return _keep(data, ("part",))


def _export(v: Visibility, data: Data) -> Shown:
    ids = data.get("ids")
    if isinstance(ids, list) and all(v.sees(i) for i in ids):
        return dict(data), []
    shown, withheld = _keep(data, ("bundle", "manifest_sha256", "reason"))
    if isinstance(ids, list):
        shown["ids"] = [i for i in ids if v.sees(i)]
    return shown, withheld


def _hold(v: Visibility, data: Data) -> Shown:
    return (dict(data), []) if v.hold_shown(data) else _keep(data, ())


def _hold_release(v: Visibility, data: Data) -> Shown:
    hold = v.hold_of_case(str(data.get("case", "")))
    return (dict(data), []) if hold is not None and v.hold_shown(hold) else _keep(data, ())


def _matter(v: Visibility, data: Data) -> Shown:
    if v.scope.sees(str(data.get("client", "")), (str(data.get("matter", "")),)):
        return dict(data), []
    return _keep(data, ())


def _disposition(v: Visibility, data: Data) -> Shown:
    if all(v.sees(i) for i in _ids_in(data)):
        return dict(data), []
    return _keep(data, ("file", "sha256"))


def _ingest_run(v: Visibility, data: Data) -> Shown:
    """import/sync: the counts include walled mail; the source only when it feeds visible mail."""
    return _keep(data, ("source",) if v.source(data.get("source")) else ())


def _fixed(*keys: str) -> Callable[[Visibility, Data], Shown]:
    return lambda _v, data: _keep(data, keys)


def _everything(_v: Visibility, data: Data) -> Shown:
    return dict(data), []


HANDLERS: dict[str, Callable[[Visibility, Data], Shown]] = {
    "init": _everything,
    "login": _everything,
    "search": _search,
    "view": _about_message,
    "download": _about_message,
    "dispose": _about_message,
    "export": _export,
    "hold": _hold,
    "hold_release": _hold_release,
    "matter_close": _matter,
    "matter_reopen": _matter,
    "disposition": _disposition,
    "import": _ingest_run,
    "sync": _ingest_run,
    "retag": _fixed("rules"),
    "verify": _fixed("full", "ok", "problems"),
    "retention_rules": _fixed("fingerprint", "file"),
    "dictionary": _fixed("number", "sha256", "bytes"),
    "source_event": _fixed("kind"),
}


def shown_data(v: Visibility, type_: str, data: Data) -> Data:
    """``data`` of one event as the reader of ``v`` may see it (see the module docstring)."""
    if v.scope.whole_archive:
        return data
    handler = HANDLERS.get(type_)
    shown, withheld = handler(v, data) if handler is not None else _keep(data, ())
    if withheld:
        shown["withheld"] = withheld
    return shown


def event_text(data: Data) -> str:
    """An event's data as the catalog stores it (what ``contains`` is matched against)."""
    return json.dumps(data, sort_keys=True, ensure_ascii=False)


def parse_data(text: str) -> Data:
    try:
        parsed = json.loads(text)
    except ValueError:
        return {"raw": text}
    return parsed if isinstance(parsed, dict) else {"raw": parsed}


def show_rows(v: Visibility, rows: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """(seq, type, time, actor, data text) rows -> events as the reader may see them."""
    parsed = [(seq, type_, time_, who, parse_data(data)) for seq, type_, time_, who, data in rows]
    if not v.scope.whole_archive:
        v.learn(i for *_rest, data in parsed for i in _ids_in(data))
    return [
        {"seq": seq, "type": type_, "time": time_, "actor": who, "data": shown_data(v, type_, data)}
        for seq, type_, time_, who, data in parsed
    ]
