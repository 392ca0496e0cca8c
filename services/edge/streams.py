"""How many streams one client key may hold open on this edge process at once.

A stream holds an upstream connection and a slot in the edge's connection pool
(``GATEWAY_UPSTREAM_MAX_CONNECTIONS``) for as long as it flows: without a cap, one key could
take all of them and starve every other key on the process. The cap is per process, below the
pool's size; ``max_parallel`` (docs/limits.md) is the limit across every edge an operator sets
per key, user or project.
"""

from __future__ import annotations

import weakref

from shared.errors import TOO_MANY_STREAMS, GatewayError


class StreamSlots:
    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._open: dict[str, int] = {}

    def open(self, key_id: str) -> int:
        return self._open.get(key_id, 0)

    def take(self, key_id: str, owner: object) -> Slot:
        """A slot for one stream of ``key_id``, given back by :meth:`Slot.release` or, at the
        latest, when ``owner`` (the request's record) is collected: a response whose body was
        never iterated (the client left before it began) cannot keep a slot."""
        held = self._open.get(key_id, 0)
        if held >= self.per_key:
            raise GatewayError(
                TOO_MANY_STREAMS,
                f"This API key already has {held} streams open on this gateway process, the most it may "
                "(GATEWAY_MAX_STREAMS_PER_KEY); wait for one to finish.",
            )
        self._open[key_id] = held + 1
        slot = Slot(self, key_id)
        weakref.finalize(owner, slot.release)
        return slot

    def _give_back(self, key_id: str) -> None:
        left = self._open.get(key_id, 0) - 1
        if left > 0:
            self._open[key_id] = left
        else:
            self._open.pop(key_id, None)


class Slot:
    __slots__ = ("_slots", "key_id", "released")

    def __init__(self, slots: StreamSlots, key_id: str) -> None:
        self._slots = slots
        self.key_id = key_id
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._slots._give_back(self.key_id)
