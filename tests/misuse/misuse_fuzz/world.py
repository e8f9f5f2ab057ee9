"""One random program: its allocators, the model of their blocks, the checks after every
step, and the run."""

from __future__ import annotations

import collections
import ctypes
import gc
import random

from stats_fields import MALLOC_COUNT_FIELDS, MALLOC_FAIL_FIELDS, POOL_STATE_FIELDS

from stlalloc import AllocatorError, MallocAllocator, PoolAllocator

from .blocks import BlockActions
from .containers import ContainerActions
from .misuse import MisuseActions
from .model import (
    DOCUMENTED,
    Alloc,
    Block,
    Cont,
    Failure,
    GaveUp,
    View,
    check,
    container_kinds,
    stats_tuple,
)


class World(BlockActions, MisuseActions, ContainerActions):
    def __init__(self, seed, steps):
        self.seed, self.steps = seed, steps
        self.rng = random.Random(seed)
        self.counts = collections.Counter()
        self.raised = collections.Counter()
        self.log = collections.deque(maxlen=12)
        self.malloc_live: dict[int, Block] = {}
        self.views: list[View] = []
        self.pins = collections.Counter()
        self.in_flight = None
        self.tags = 0
        rng = self.rng
        m1 = Alloc("m1", MallocAllocator())
        m2 = Alloc("m2", MallocAllocator(limit=48 << 10), limit=48 << 10)
        self.mallocs = [m1, m2]
        self.pools = [self.new_pool(f"p{k}") for k in range(4)]
        # At least one plain and one debug pool over a 4 KiB arena and a limited upstream.
        self.pools.append(self.new_pool("p4", arena=4096, limit=32 << 10, debug=False))
        self.pools.append(self.new_pool("p5", arena=4096, limit=32 << 10, debug=True))
        self.allocs = self.mallocs + self.pools
        self.conts: list[Cont] = []
        self.cont_pools: list[Alloc] = []
        self.cont_mallocs: list[Alloc] = []
        if container_kinds():
            for k in range(3):
                self.cont_pools.append(
                    self.new_pool(f"c{k}", arena=4096, limit=rng.choice([4096, 16 << 10, 64 << 10]))
                )
            # Two equal MallocAllocators: Lists over them splice into each other, so nodes
            # one of them made end up in a list of the other.
            self.cont_mallocs = [
                Alloc("cm0", MallocAllocator(limit=64 << 10), limit=64 << 10),
                Alloc("cm1", MallocAllocator()),
            ]

    # -- construction ------------------------------------------------------------------

    def new_pool(self, name, *, arena=None, limit=-1, debug=None):
        rng = self.rng
        align = rng.choice([8, 8, 8, 16, 32, 64])
        max_bytes = align * rng.choice([1, 2, 4, 8, 16, 16, 16, 32])
        refill = rng.choice([1, 2, 5, 20, 20, 64])
        if arena is None:
            arena = rng.choice([0, 4096, 4096, 8192, 1 << 16, 1 << 20])
        if limit == -1:
            limit = rng.choice([None, None, 0, 8192, 32 << 10, 256 << 10])
        if debug is None:
            debug = rng.random() < 0.35
        up = Alloc(name + ".up", MallocAllocator(limit=limit), limit=limit)
        obj = PoolAllocator(
            align=align,
            max_bytes=max_bytes,
            refill=refill,
            arena_size=arena,
            upstream=up.obj,
            debug=debug,
        )
        return Alloc(name, obj, up=up, debug=debug)

    # -- the model -----------------------------------------------------------------------

    def blocks_of(self, a):
        if a.is_pool:
            return list(a.live.values())
        return list(self.malloc_live.values())

    def live_map(self, a):
        return a.live if a.is_pool else self.malloc_live

    def pinned(self, a, b):
        return self.pins[(a.group(), b.addr)] > 0

    def may_free(self, a, b):
        flying = self.in_flight is not None and self.in_flight[1] is b
        return not self.pinned(a, b) and not flying

    def handler_of(self, a, caller):
        """The handler a call runs on failure: the pool's upstream's, or the caller's."""
        return a.handler if a.is_pool else caller.handler

    def new_tag(self):
        self.tags += 1
        return self.tags % 255 + 1

    def fill(self, b, start=0):
        if b.n > start:
            ctypes.memset(b.addr + start, b.tag, b.n - start)

    def check_contents(self, b, n=None):
        n = b.n if n is None else n
        got = ctypes.string_at(b.addr, n)
        if got != bytes([b.tag]) * n:
            bad = next(i for i, x in enumerate(got) if x != b.tag)
            raise Failure(f"block {b.addr:#x} ({b.n} bytes) changed at offset {bad}")

    # -- calls ---------------------------------------------------------------------------

    def api(self, what, fn, *args, ok=(), exact=None):
        """Calls ``fn(*args)``: returns ``(True, result)`` or ``(False, exception)``.

        ``exact``: the call is a misuse and must raise this (class or tuple);
        ``ok``: exceptions a valid call may raise (out of memory, a handler giving up).
        """
        self.counts["calls"] += 1
        self.log.append(what)
        if exact is not None:
            self.counts["invalid"] += 1
        try:
            result = fn(*args)
        except BaseException as e:  # noqa: BLE001 - classified below
            self.raised[type(e).__name__] += 1
            if exact is not None:
                check(isinstance(e, exact), f"{what}: raised {e!r}, expected {exact}")
                return False, e
            if isinstance(e, ok):
                return False, e
            if isinstance(e, DOCUMENTED) or isinstance(e, GaveUp):
                raise Failure(f"{what}: a valid call raised {e!r}") from e
            raise Failure(f"{what}: undocumented exception {e!r}") from e
        check(exact is None, f"{what}: returned {result!r}, expected {exact}")
        return True, result

    def snapshot(self):
        """Everything a misuse could change: every allocator's statistics and free lists."""
        snap = []
        for a in self.pools + self.cont_pools:
            snap.append(stats_tuple(a.obj.stats(), POOL_STATE_FIELDS))
            snap.append([a.obj.free_list(i) for i in range(a.obj.nfreelists)])
            snap.append(stats_tuple(a.up.obj.stats(), MALLOC_COUNT_FIELDS))
        for a in self.mallocs + self.cont_mallocs:
            snap.append(stats_tuple(a.obj.stats(), MALLOC_COUNT_FIELDS + MALLOC_FAIL_FIELDS))
        return snap

    def misuse(self, what, fn, *args, exc=AllocatorError):
        before = self.snapshot()
        self.api(what, fn, *args, exact=exc)
        after = self.snapshot()
        check(after == before, f"{what} changed an allocator")

    # -- valid block operations (used by actions and by handlers) ------------------------

    def alloc_block(self, a, n, inner=False):
        ok = (MemoryError, GaveUp) if a.limited() else ()
        if inner:
            # Inside a handler: a nested failure may surface as anything documented.
            ok = (*DOCUMENTED, GaveUp)
        done, p = self.api(f"{a.name}.allocate({n})", a.obj.allocate, n, ok=ok)
        if not done:
            return None
        if n == 0:
            check(p == 0, f"allocate(0) returned {p}")
            return None
        check(p > 0 and p % a.alignment == 0, f"{a.name}.allocate({n}) gave {p:#x}")
        live = self.live_map(a)
        check(p not in live, f"{a.name}.allocate({n}) gave live block {p:#x}")
        b = Block(p, n, self.new_tag(), a)
        self.fill(b)
        live[p] = b
        return b

    def free_block(self, a, b, inner=False, n=None):
        self.check_contents(b)
        n = b.n if n is None else n
        ok = (*DOCUMENTED, GaveUp) if inner else ()
        done, _ = self.api(
            f"{a.name}.deallocate({b.addr:#x}, {n})", a.obj.deallocate, b.addr, n, ok=ok
        )
        if done:
            del self.live_map(a)[b.addr]
            a.freed.append((b.addr, b.n))

    # -- invariants ----------------------------------------------------------------------

    def check_invariants(self):
        for a in self.pools + self.cont_pools:
            st = a.obj.stats()
            free = sum(k * (i + 1) * st.align for i, k in enumerate(st.free_list_lengths))
            check(
                st.heap_size == st.live_bytes + free + st.chunk_bytes_left,
                f"{a.name}: conservation broken: {st}",
            )
            check(len(st.free_list_lengths) == st.nfreelists, f"{a.name}: free lists")
            up = a.up.obj.stats()
            check(
                up.live_bytes == st.upstream_chunk_bytes + st.large_live_bytes,
                f"{a.name}: upstream holds {up.live_bytes} bytes, the pool accounts for "
                f"{st.upstream_chunk_bytes} + {st.large_live_bytes}",
            )
            self.counts["upstream_chunk_checks"] += st.upstream_chunk_bytes > 0
            if a in self.pools:
                small = [a.inner(b.n)[1] for b in a.live.values() if a.inner(b.n)[0]]
                large = [a.inner(b.n)[1] for b in a.live.values() if not a.inner(b.n)[0]]
                got = (st.live_blocks, st.live_bytes, st.large_live_blocks, st.large_live_bytes)
                want = (len(small), sum(small), len(large), sum(large))
                check(got == want, f"{a.name}: live {got}, the model says {want}")
        for a in self.mallocs:
            s = a.obj.stats()
            mine = [b.n for b in self.malloc_live.values() if b.owner is a]
            check(
                (s.live_blocks, s.live_bytes) == (len(mine), sum(mine)),
                f"{a.name}: live ({s.live_blocks}, {s.live_bytes}), model ({len(mine)}, "
                f"{sum(mine)})",
            )
            check(s.allocations - s.deallocations == s.live_blocks, f"{a.name}: counters")
            check(a.limit is None or s.live_bytes <= a.limit, f"{a.name}: above its limit")

    # -- choosing ------------------------------------------------------------------------

    def size_for(self, a):
        r = self.rng.random()
        top = a.max_bytes if a.is_pool else 256
        if r < 0.05:
            return 0
        if r < 0.75:
            return self.rng.randint(1, top)
        if r < 0.95:
            return self.rng.randint(top + 1, 4 * top + 8)
        return self.rng.randint(1000, 20000)

    def pick_alloc(self):
        return self.rng.choice(self.allocs)

    def pick_block(self, a):
        blocks = self.live_map(a)
        if not blocks:
            return None
        return self.rng.choice(list(blocks.values()))

    def via(self, a):
        """The object to call for a block of ``a``: any MallocAllocator serves malloc blocks."""
        return self.rng.choice(self.mallocs) if not a.is_pool else a

    # ----------------------------------------------------------------------------------
    # Running
    # ----------------------------------------------------------------------------------

    ACTIONS = (
        ("act_allocate", 22),
        ("act_deallocate", 18),
        ("act_reallocate", 10),
        ("act_view", 6),
        ("act_use_view", 4),
        ("act_release_view", 5),
        ("act_owns", 3),
        ("act_introspect", 2),
        ("act_equality", 1),
        ("act_release", 1),
        ("act_handler", 2),
        ("act_debug_write_after_free", 2),
        ("act_debug_cookie", 1),
        ("act_drop_allocators", 0.3),
        ("act_misuse", 20),
        ("act_constructor_misuse", 1),
        ("act_real_oom", 0.5),
        ("act_container", 14),
        ("act_malloc_view_of_pool_memory", 1),
    )

    def run(self):
        fns = [getattr(self, name) for name, _ in self.ACTIONS]
        weights = [w for _, w in self.ACTIONS]
        for step in range(self.steps):
            self.step = step
            for h in (a.handler for a in self.allocs):
                if h is not None:
                    h.calls = 0
            self.rng.choices(fns, weights)[0]()
            self.check_invariants()
        self.finish()

    def drop_containers(self):
        for c in self.conts:
            check(list(c.obj) == c.model, f"{c.kind} contents at the end")
            if c.export is not None:
                c.export.release()
        self.conts.clear()

    def finish(self):
        # Everything goes back; then nothing may be live anywhere.
        for a in self.pools + self.cont_pools:
            st = a.obj.stats()
            self.counts["refills"] += st.refills
            self.counts["chunk_requests"] += st.chunk_requests
        for v in self.views:
            v.mv.release()
        self.views.clear()
        self.pins.clear()
        for a in self.allocs:
            a.handler = None
            (a.up if a.is_pool else a).obj.set_malloc_handler(None)
        for a in self.pools + [self.mallocs[0]]:
            for b in self.blocks_of(a):
                self.free_block(self.via(a) if not a.is_pool else a, b)
        self.drop_containers()
        # Collected only now: until drop_containers returned, its loop variable kept the
        # last container alive. Containers of objects may hold themselves (a cycle).
        gc.collect()
        self.check_invariants()
        for a in self.pools + self.cont_pools:
            st = a.obj.stats()
            alive = [o for o in gc.get_objects() if type(o).__name__ in ("Vector", "List")]
            check(
                st.live_blocks == st.large_live_blocks == 0,
                f"{a.name}: live at the end: {st}; containers alive: {len(alive)}",
            )
            self.api(f"{a.name}.release()", a.obj.release)
            check(a.up.obj.stats().live_bytes == 0, f"{a.name}: upstream keeps memory")
        for a in self.mallocs + self.cont_mallocs:
            check(a.obj.stats().live_blocks == 0, f"{a.name}: live at the end")
