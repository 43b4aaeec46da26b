"""Caches shared by all tables of a DB: the block cache and the table cache.

``BlockCache``: a byte-bounded LRU map from a key tuple (for data blocks
``(cache_id, block_offset)``; ``cache_id`` is the table's file number) to a
decoded block.  It is split into ``shards`` independent LRU lists, each an
``OrderedDict`` (most recently used last) under its own lock and bounded by
``capacity / shards`` bytes of *charge* (the caller's estimate of the
value's memory).  Lookups take no lock (hit/miss counters may then
undercount slightly under threads); inserts and erases lock their shard.
Keys must hash and compare in C (tuples of ints, bytes, str).  A key
always maps to the same shard (``hash(key) % shards``), so threads
touching different blocks rarely contend.  Values are immutable by
convention: callers must not mutate what they get back.

``TableCache``: a bounded LRU of open ``TableReader`` objects keyed by file
number (``max_open_files``).  A hit takes no lock (single C-level
``OrderedDict`` operations on int keys are atomic under the GIL; the hit
counter may then undercount slightly under threads).  A miss calls
``opener(number)`` outside the lock (a slow open never blocks other
lookups); if two threads race to open the same table, one reader wins and
the other is closed.  Eviction drops the
cache's reference without closing the reader: a holder (an iterator, a
``get`` in flight) keeps using it, and the reader closes its file when the
last reference goes away (``TableReader.__del__``).  ``close()`` closes every
cached reader.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable

from blockdev.errors import ArgumentTypeError, ClosedError, InvalidArgumentError

__all__ = ["BlockCache", "TableCache"]

_DOOR_BYTES_PER_KEY = 4096      # doorkeeper window: about one key per block the cache holds


class _Shard:
    __slots__ = ("lock", "map", "usage", "capacity", "hits", "misses")

    def __init__(self, capacity: int) -> None:
        self.lock = threading.Lock()
        self.map: OrderedDict[tuple, tuple[object, int]] = OrderedDict()
        self.usage = 0
        self.capacity = capacity
        self.hits = 0
        self.misses = 0


class BlockCache:
    """Sharded LRU bounded by total charge in bytes; thread-safe.

    ``get``/``insert``/``erase`` are O(1) (one hash, one shard lock, an
    ``OrderedDict`` operation); ``insert`` evicts least-recently-used entries
    of the shard until the shard is within its capacity.

    Requires: ``capacity >= 0`` (0 disables caching: ``insert`` keeps
    nothing), ``1 <= shards <= 1024``.
    """

    def __init__(self, capacity: int, shards: int = 16) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool):
            raise ArgumentTypeError("capacity must be an int")
        if not isinstance(shards, int) or isinstance(shards, bool):
            raise ArgumentTypeError("shards must be an int")
        if capacity < 0:
            raise InvalidArgumentError(f"capacity must be >= 0, got {capacity}")
        if not 1 <= shards <= 1024:
            raise InvalidArgumentError(f"shards must be in 1..1024, got {shards}")
        self.capacity = capacity
        self._n = shards
        per = -(-capacity // shards)
        self._shards = tuple(_Shard(per) for _ in range(shards))
        # admission doorkeeper of ``offer``: keys offered once recently, in
        # two generations of at most ``_door_cap`` keys each
        self._door_cap = max(64, capacity // _DOOR_BYTES_PER_KEY)
        self._door: set = set()
        self._door_old: set = set()
        self.rejected = 0

    def get(self, key: tuple) -> object | None:
        """The value cached under ``key`` (now most recently used), or None."""
        if type(key) is not tuple:
            raise ArgumentTypeError("key must be a tuple")
        sh = self._shards[hash(key) % self._n]
        # no lock: ``OrderedDict.get`` and ``move_to_end`` on keys hashed and
        # compared in C (tuples of ints/bytes) are single steps under the GIL;
        # ``insert``/``erase`` keep the charges consistent under the lock
        m = sh.map
        ent = m.get(key)
        if ent is None:
            sh.misses += 1
            return None
        try:
            m.move_to_end(key)
        except KeyError:            # evicted meanwhile: still a valid value
            pass
        sh.hits += 1
        return ent[0]

    def offer(self, key: tuple, value: object, charge: int) -> bool:
        """``insert`` on the second offer of ``key`` within the doorkeeper's
        window; the first offer only remembers the key.  Returns True when
        ``value`` was inserted.  O(1).

        The point-lookup path offers the blocks it reads (scans insert):
        when the blocks read at random far outnumber what the cache holds,
        almost every insert would evict a block that is never read again,
        and the insert/evict churn costs more than the few hits it buys.
        A block read twice within the window (about as many blocks as the
        cache holds, in two generations) is admitted, so a working set that
        fits the cache still ends up cached after its second pass."""
        if type(key) is not tuple:
            raise ArgumentTypeError("key must be a tuple")
        door = self._door
        if key in door or key in self._door_old:
            self.insert(key, value, charge)
            return True
        door.add(key)
        if len(door) > self._door_cap:       # a race here only forgets keys early
            self._door_old = door
            self._door = set()
        self.rejected += 1
        return False

    def insert(self, key: tuple, value: object, charge: int) -> None:
        """Cache ``value`` under ``key`` with ``charge`` bytes, replacing any
        previous value; evict LRU entries to fit.  A value whose charge exceeds
        a shard's capacity is not cached."""
        if type(key) is not tuple:
            raise ArgumentTypeError("key must be a tuple")
        if not isinstance(charge, int) or charge < 0:
            raise InvalidArgumentError("charge must be an int >= 0")
        sh = self._shards[hash(key) % self._n]
        with sh.lock:
            old = sh.map.pop(key, None)
            if old is not None:
                sh.usage -= old[1]
            if charge > sh.capacity:
                return
            sh.map[key] = (value, charge)
            sh.usage += charge
            m = sh.map
            while sh.usage > sh.capacity:
                _, (_, c) = m.popitem(last=False)
                sh.usage -= c

    def erase(self, key: tuple) -> None:
        """Drop ``key`` if cached.  O(1)."""
        if type(key) is not tuple:
            raise ArgumentTypeError("key must be a tuple")
        sh = self._shards[hash(key) % self._n]
        with sh.lock:
            old = sh.map.pop(key, None)
            if old is not None:
                sh.usage -= old[1]

    def clear(self) -> None:
        """Drop every entry (counters are kept).  O(n)."""
        for sh in self._shards:
            with sh.lock:
                sh.map.clear()
                sh.usage = 0
        self._door = set()
        self._door_old = set()

    @property
    def hits(self) -> int:
        return sum(sh.hits for sh in self._shards)

    @property
    def misses(self) -> int:
        return sum(sh.misses for sh in self._shards)

    @property
    def usage(self) -> int:
        return sum(sh.usage for sh in self._shards)

    def __len__(self) -> int:
        return sum(len(sh.map) for sh in self._shards)

    def _check(self) -> None:
        """Assert invariants: per-shard usage equals the sum of charges and is
        within capacity; every key lives in its own shard."""
        for i, sh in enumerate(self._shards):
            with sh.lock:
                assert sh.usage == sum(c for _, c in sh.map.values())
                assert sh.usage <= sh.capacity
                for k in sh.map:
                    assert hash(k) % self._n == i


class TableCache:
    """A bounded LRU of open table readers, keyed by file number; thread-safe.

    ``get`` is O(1) on a hit; a miss costs one ``opener`` call (outside the
    lock).  At most ``max_open`` readers are held; the least recently used
    one is dropped (not closed: see the module docstring) to make room.

    Requires: ``opener(number)`` returns a reader with a ``close()`` method
    or raises; ``max_open >= 1``.
    """

    def __init__(self, opener: Callable[[int], Any], max_open: int) -> None:
        if not callable(opener):
            raise ArgumentTypeError("opener must be callable")
        if not isinstance(max_open, int) or isinstance(max_open, bool):
            raise ArgumentTypeError("max_open must be an int")
        if max_open < 1:
            raise InvalidArgumentError(f"max_open must be >= 1, got {max_open}")
        self._opener = opener
        self.max_open = max_open
        self._lock = threading.Lock()
        self._map: OrderedDict[int, Any] = OrderedDict()
        self._closed = False
        self.hits = 0
        self.misses = 0

    def get(self, number: int) -> Any:
        """The open reader of table ``number`` (opened on a miss)."""
        if type(number) is not int:
            raise ArgumentTypeError("number must be an int")
        # hit path without the lock (every get of every table passes here):
        # OrderedDict.get and move_to_end on int keys are single C calls that
        # cannot interleave with another thread's (the GIL is not released
        # inside them); a reader evicted in between is still a valid reader
        m = self._map
        r = m.get(number)
        if r is not None and not self._closed:
            try:
                m.move_to_end(number)
            except KeyError:        # evicted meanwhile: the LRU touch is moot
                pass
            self.hits += 1
            return r
        with self._lock:
            if self._closed:
                raise ClosedError("table cache is closed")
            r = self._map.get(number)
            if r is not None:
                self._map.move_to_end(number)
                self.hits += 1
                return r
            self.misses += 1
        reader = self._opener(number)
        loser = None
        with self._lock:
            if self._closed:
                loser = reader
            else:
                r = self._map.get(number)
                if r is not None:           # another thread opened it first
                    loser, reader = reader, r
                    self._map.move_to_end(number)
                else:
                    self._map[number] = reader
                    while len(self._map) > self.max_open:
                        self._map.popitem(last=False)
        if loser is not None:
            loser.close()
            if loser is reader:
                raise ClosedError("table cache is closed")
        return reader

    def evict(self, number: int) -> None:
        """Forget table ``number`` (e.g. its file is being deleted).  Holders
        of the reader keep using it."""
        with self._lock:
            self._map.pop(number, None)

    def __contains__(self, number: int) -> bool:
        with self._lock:
            return number in self._map

    def __len__(self) -> int:
        with self._lock:
            return len(self._map)

    def close(self) -> None:
        """Close every cached reader; later ``get`` raises ClosedError."""
        with self._lock:
            self._closed = True
            readers = list(self._map.values())
            self._map.clear()
        err: BaseException | None = None
        for r in readers:
            try:
                r.close()
            except BaseException as exc:   # close the rest, then surface the first
                err = err or exc
        if err is not None:
            raise err

    def _check(self) -> None:
        with self._lock:
            assert len(self._map) <= self.max_open
