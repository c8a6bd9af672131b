"""xapi's events over the simulated store: event.register / next / unregister, event.from, event.inject.

xapi bumps a generation on every database write and remembers, per row, the generation that created
and last modified it (xen-api ocaml/xapi/xapi_event.ml). The simulator changes its records in place,
so it finds what changed by comparing each record with what it last saw, when a client asks for
events (and while it waits for some): every change found gets a new generation. A record changed
and changed back between two looks shows no event; xapi coalesces changes between two calls too.

Wire shapes, read in xapi_event.ml: a token ``"%020d,%020d"`` (:34-50; ``""`` is the start); an
event ``{id, timestamp, class (lower case), operation (add|mod|del), ref, snapshot}`` (:660-668);
event.from answers ``{events, valid_ref_counts, token}`` (:720-734), a del carrying no snapshot
(:701), a record created since the token an add, else a mod (:700-703), and it waits up to
``timeout`` seconds while nothing matches (:736-776).
"""

import time
from typing import Any, Dict, List, Optional, Tuple

from .store import ApiError, Store

POLL = 0.1  # seconds between two looks at the store while a caller waits for events


class Events:
    """The event generations of one store (the pool's lock held around every look)."""

    def __init__(self, store: Store, lock: Any) -> None:
        self.store = store
        self.lock = lock
        self.generation = 0
        self.seen: Dict[Tuple[str, str], str] = {}  # (class, ref) -> the record as last seen
        self.created: Dict[Tuple[str, str], int] = {}
        self.modified: Dict[Tuple[str, str], int] = {}
        self.deleted: List[Tuple[int, str, str]] = []  # (generation, class, ref)
        self.registered: Dict[str, Tuple[List[str], int]] = {}  # session -> (classes, last generation)

    def look(self) -> int:
        """Give every change since the last look a generation; returns the current one."""
        with self.lock:
            present = set()
            for cls, table in self.store.tables.items():
                for ref, record in table.items():
                    key = (cls, ref)
                    present.add(key)
                    text = repr(sorted(record.items()))
                    if self.seen.get(key) == text:
                        continue
                    self.generation += 1
                    if key not in self.seen:
                        self.created[key] = self.generation
                    self.modified[key] = self.generation
                    self.seen[key] = text
            for key in [k for k in self.seen if k not in present]:
                self.generation += 1
                self.deleted.append((self.generation, key[0], key[1]))
                del self.seen[key], self.created[key], self.modified[key]
            return self.generation

    def _events(self, classes: List[str], since: int) -> List[Dict[str, Any]]:
        wanted = {c.lower() for c in classes}

        def matches(cls: str) -> bool:
            return "*" in wanted or cls.lower() in wanted

        events: List[Tuple[int, Dict[str, Any]]] = []
        with self.lock:
            for gen, cls, ref in self.deleted:
                if gen > since and matches(cls):
                    events.append((gen, _event(gen, cls, "del", ref, None)))
            for key, gen in self.modified.items():
                cls, ref = key
                if gen > since and matches(cls):
                    operation = "add" if self.created[key] > since else "mod"
                    events.append((gen, _event(gen, cls, operation, ref, self.store.snapshot(cls, ref))))
        return [e for _, e in sorted(events, key=lambda pair: pair[0])]

    def from_(self, classes: List[str], token: str, timeout: float, sleep: Any = time.sleep,
              clock: Any = time.monotonic) -> Dict[str, Any]:
        """event.from: what changed in ``classes`` since ``token``, waiting up to ``timeout`` for something."""
        since = parse_token(token)
        deadline = clock() + max(float(timeout), 0.0)
        while True:
            last = self.look()
            events = self._events(classes, since)
            if events or clock() >= deadline:
                break
            sleep(POLL)
        with self.lock:
            counts = {cls.lower(): len(table) for cls, table in self.store.tables.items()}
        return {"events": events, "valid_ref_counts": counts, "token": "%020d,%020d" % (last, 0)}

    def inject(self, cls: str, ref: str) -> str:
        """event.inject: touch the row, answer the token just before it (xapi_event.ml:779-805)."""
        self.look()
        with self.lock:
            if ref not in self.store.tables.get(cls, {}):
                raise ApiError("HANDLE_INVALID", cls, ref)
            self.generation += 1
            self.modified[(cls, ref)] = self.generation
            return "%020d,%020d" % (self.generation - 1, 0)

    def register(self, session: str, classes: List[str]) -> None:
        """event.register: the legacy interface's classes for this session (xapi_event.ml:470-475)."""
        now = self.look()
        with self.lock:
            old, last = self.registered.get(session, ([], now))
            self.registered[session] = (list(classes) + old, last)

    def unregister(self, session: str, classes: List[str]) -> None:
        with self.lock:
            if session in self.registered:
                old, last = self.registered[session]
                self.registered[session] = ([c for c in old if c not in classes], last)

    def next(self, session: str, sleep: Any = time.sleep) -> List[Dict[str, Any]]:
        """event.next: blocks until something this session registered for changed (xapi_event.ml:486-...)."""
        with self.lock:
            if session not in self.registered:
                raise ApiError("SESSION_NOT_REGISTERED", session)
        while True:
            now = self.look()
            with self.lock:
                classes, last = self.registered[session]
                self.registered[session] = (classes, now)
            events = self._events(classes, last)
            if events:
                return events
            sleep(POLL)


def parse_token(token: str) -> int:
    """A token's generation; ``""`` is 0; anything else is EVENT_FROM_TOKEN_PARSE_FAILURE (:736-759)."""
    if token == "":
        return 0
    parts = token.split(",")
    try:
        if len(parts) != 2:
            raise ValueError(token)
        int(parts[1])
        return int(parts[0])
    except ValueError:
        raise ApiError("EVENT_FROM_TOKEN_PARSE_FAILURE", token)


def _event(gen: int, cls: str, operation: str, ref: str, snapshot: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    event: Dict[str, Any] = {"id": str(gen), "timestamp": "%.1f" % time.time(), "class": cls.lower(),
                             "operation": operation, "ref": ref}
    if snapshot is not None:
        event["snapshot"] = snapshot
    return event
