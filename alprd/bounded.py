"""Bounded containers for state the daemon keeps for months: what it remembers
grows with what it has seen (files dropped, plates read), never without a limit."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class RecentSet(Generic[K]):
    """A set of at most `limit` items: adding one more forgets the oldest (an item
    added again counts as new)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self._items: dict[K, None] = {}

    def add(self, item: K) -> None:
        self._items.pop(item, None)
        self._items[item] = None
        if len(self._items) > self.limit:
            del self._items[next(iter(self._items))]

    def discard(self, item: K) -> None:
        self._items.pop(item, None)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)
