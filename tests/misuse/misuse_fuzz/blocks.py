"""Actions: valid calls on blocks, views, handlers, release and the debug pools' faults."""

from __future__ import annotations

import ctypes
import gc

from stlalloc import AllocatorError, MallocAllocator, PoolAllocator

from .model import (
    HUGE,
    Block,
    GaveUp,
    Handler,
    View,
    check,
    round_up,
)


class BlockActions:
    """Valid calls: each keeps the model in step with the allocators."""

    def act_allocate(self):
        a = self.pick_alloc()
        self.alloc_block(a, self.size_for(a))

    def act_deallocate(self):
        a = self.pick_alloc()
        b = self.pick_block(a)
        if b is None:
            return self.act_allocate()
        caller = self.via(a)
        n = b.n
        if a.is_pool and not a.debug and n <= a.max_bytes and self.rng.random() < 0.3:
            # Any size of the block's class frees it (SGI): the pool is told only the class.
            lo = round_up(n, a.align) - a.align + 1
            n = self.rng.randint(lo, round_up(n, a.align))
        if self.pinned(a, b):
            return self.misuse(
                f"{caller.name}.deallocate(exported)",
                caller.obj.deallocate,
                b.addr,
                n,
                exc=BufferError,
            )
        self.check_contents(b)
        self.api(f"{caller.name}.deallocate({b.addr:#x}, {n})", caller.obj.deallocate, b.addr, n)
        del self.live_map(a)[b.addr]
        a.freed.append((b.addr, b.n))

    def act_reallocate(self):
        a = self.pick_alloc()
        b = self.pick_block(a)
        caller = self.via(a)
        new = self.size_for(a)
        if b is None:
            # reallocate(0, 0, n) is allocate(n), by the allocator called.
            ok = (MemoryError, GaveUp) if caller.limited() else ()
            done, p = self.api(
                f"{caller.name}.reallocate(0, 0, {new})", caller.obj.reallocate, 0, 0, new, ok=ok
            )
            if done and p:
                nb = Block(p, new, self.new_tag(), caller if not a.is_pool else a)
                self.fill(nb)
                self.live_map(a)[p] = nb
            return None
        if self.pinned(a, b):
            return self.misuse(
                f"{caller.name}.reallocate(exported)",
                caller.obj.reallocate,
                b.addr,
                b.n,
                new,
                exc=BufferError,
            )
        self.check_contents(b)
        # A malloc block stays with its owner, whose limit applies.
        ok = (MemoryError, GaveUp) if (a if a.is_pool else b.owner).limited() else ()
        self.in_flight = (a, b)
        try:
            done, q = self.api(
                f"{caller.name}.reallocate({b.addr:#x}, {b.n}, {new})",
                caller.obj.reallocate,
                b.addr,
                b.n,
                new,
                ok=(*ok, BufferError, AllocatorError) if self.handler_of(a, caller) else ok,
            )
        finally:
            self.in_flight = None
        live = self.live_map(a)
        if not done:
            # Out of memory, or a handler's own error: it gave up, or it tried to export
            # the block being moved (BufferError: the move is undone; AllocatorError: a
            # large block is out of the record while realloc moves it). The handler never
            # frees the block in flight, so it must still be live and unchanged.
            check(b.addr in live, "the block in flight vanished")
            self.check_contents(b)
            return None
        del live[b.addr]
        a.freed.append((b.addr, b.n))
        if new == 0:
            check(q == 0, f"reallocate to 0 returned {q}")
            return None
        check(q % a.alignment == 0 and q not in live, f"reallocate gave {q:#x}")
        nb = Block(q, new, b.tag, b.owner)
        self.check_contents(nb, min(b.n, new))
        self.fill(nb, min(b.n, new))
        live[q] = nb
        return None

    def act_view(self):
        a = self.pick_alloc()
        b = self.pick_block(a)
        if b is None or len(self.views) > 40:
            return self.act_release_view()
        ext = a.extent(b.n)
        off = self.rng.randrange(ext)
        length = self.rng.randint(0, ext - off)
        caller = self.via(a)
        done, mv = self.api(
            f"{caller.name}.view({b.addr:#x}+{off}, {length})",
            caller.obj.view,
            b.addr + off,
            length,
        )
        check(len(mv) == length and not mv.readonly, "view size")
        inside = max(0, min(b.n, off + length) - off)
        check(mv[:inside].tobytes() == bytes([b.tag]) * inside, "view shows other bytes")
        self.views.append(View(a, mv, b, off, length))
        self.pins[(a.group(), b.addr)] += 1
        return None

    def act_use_view(self):
        if not self.views:
            return self.act_view()
        v = self.rng.choice(self.views)
        inside = max(0, min(v.block.n, v.off + v.length) - v.off)
        # The block is pinned, so it is live and ours: its bytes are the tag.
        check(v.mv[:inside].tobytes() == bytes([v.block.tag]) * inside, "exported block changed")
        if inside:
            v.mv[:inside] = bytes([v.block.tag]) * inside
        return None

    def act_release_view(self):
        if not self.views:
            return None
        v = self.views.pop(self.rng.randrange(len(self.views)))
        if self.rng.random() < 0.5:
            v.mv.release()
            with_released = v.mv
            self.api("view.release() twice", with_released.release)
        self.pins[(v.alloc.group(), v.block.addr)] -= 1
        v.mv = None  # dropping the last reference unexports the block
        return None

    def act_owns(self):
        a = self.pick_alloc()
        b = self.pick_block(a)
        if b is not None:
            ext = a.extent(b.n)
            for addr in (b.addr, b.addr + ext - 1):
                done, r = self.api(f"{a.name}.owns", a.obj.owns, addr)
                check(r is True, f"{a.name}.owns({addr:#x}) of a live block is {r}")
        for addr in (0, HUGE - 1, HUGE - 8):
            done, r = self.api(f"{a.name}.owns({addr:#x})", a.obj.owns, addr)
            check(r is False, f"{a.name}.owns({addr:#x}) is {r}")
        if a.is_pool and a.freed:
            addr, _ = self.rng.choice(a.freed)
            inside = any(
                x.addr <= addr < x.addr + max(a.extent(x.n), 1) or x.addr - a.align <= addr < x.addr
                for x in a.live.values()
            )
            if not inside:
                done, r = self.api(f"{a.name}.owns(freed)", a.obj.owns, addr)
                check(r is False, f"{a.name}.owns({addr:#x}) of a freed block is {r}")

    def act_introspect(self):
        a = self.rng.choice(self.pools)
        pool = a.obj
        i = self.rng.randrange(pool.nfreelists)
        _, fl = self.api("free_list", pool.free_list, i)
        check(len(fl) == pool.stats().free_list_lengths[i], "free_list length")
        check(all(p % a.align == 0 for p in fl), "free_list alignment")
        if a.live:
            live = set(a.live)
            # A free block is never a live user block (debug: user = block + align).
            shift = a.align if a.debug else 0
            check(not any(p + shift in live for p in fl), "a live block is on a free list")
        n = self.rng.randint(1, a.max_bytes)
        _, r = self.api("round_up", pool.round_up, n)
        check(r == round_up(n, a.align), "round_up")
        _, c = self.api("size_class", pool.size_class, n)
        check(c == (n + a.align - 1) // a.align - 1, "size_class")
        if self.rng.random() < 0.1:
            _, regions = self.api("layout", pool.layout)
            for r in regions:
                pos = r["base"]
                for start, size, _kind, _cls in r["spans"]:
                    check(start == pos, "layout spans must tile the region")
                    pos += size
                check(pos == r["base"] + r["used"], "layout covers the used part")

    def act_equality(self):
        p, q = self.rng.sample(self.pools, 2)
        m1, m2 = self.mallocs
        for what, got, want in (
            ("pool == itself", p.obj == p.obj, True),
            ("pools differ", p.obj == q.obj, False),
            ("pool != other", p.obj != q.obj, True),
            ("malloc equal", m1.obj == m2.obj, True),
            ("upstream equal", p.up.obj == m1.obj, True),
            ("pool vs malloc", p.obj == m1.obj, False),
            ("malloc hash", hash(m1.obj) == hash(p.up.obj), True),
        ):
            self.counts["calls"] += 1
            check(got is want, f"equality: {what}")

    def act_release(self):
        a = self.rng.choice(self.pools)
        if self.rng.random() < 0.5:
            # Drain first, so release can succeed: free every block not exported.
            for b in list(a.live.values()):
                if not self.pinned(a, b):
                    self.free_block(a, b)
        if a.live:
            return self.misuse(f"{a.name}.release() with live blocks", a.obj.release)
        self.api(f"{a.name}.release()", a.obj.release)
        st = a.obj.stats()
        check(
            (st.heap_size, st.chunk_bytes_left, st.arena_used, st.upstream_chunk_bytes)
            == (0, 0, 0, 0),
            f"after release: {st}",
        )
        check(sum(st.free_list_lengths) == 0, "free lists after release")
        check(a.up.obj.stats().live_bytes == 0, "upstream after release")
        a.freed.clear()  # the pages are gone: those addresses are nobody's
        return None

    def act_handler(self):
        limited = [a for a in self.allocs if a.limited()]
        if not limited:
            return
        a = self.rng.choice(limited)
        target_malloc = a.up if a.is_pool else a
        modes = ["free", "free", "alloc", "raise", "view", None, None]
        mode = self.rng.choice(modes)
        h = Handler(self, a, mode) if mode else None
        self.api(f"{a.name}: set_malloc_handler({mode})", target_malloc.obj.set_malloc_handler, h)
        a.handler = h

    def act_debug_write_after_free(self):
        debug = [a for a in self.pools if a.debug]
        if not debug:
            return
        a = self.rng.choice(debug)
        small = a.max_bytes - a.align
        if small < 1:
            return
        b = self.alloc_block(a, self.rng.randint(1, small))
        if b is None:
            return
        self.free_block(a, b)
        ext = a.extent(b.n)
        off = self.rng.randrange(ext)
        # The bug a debug pool exists to catch: a write through a dangling pointer. Safe
        # here: the block is the head of its free list, and the link lives in its header.
        ctypes.memset(b.addr + off, 0x5A, 1)
        before = self.snapshot()
        done, e = self.api(
            f"{a.name}.allocate after a write-after-free", a.obj.allocate, b.n, exact=AllocatorError
        )
        check(f"{b.addr:#x}" in str(e), f"the fault does not name the block: {e}")
        check(self.snapshot() == before, "a detected fault changed the pool")
        again = self.alloc_block(a, b.n)
        check(again is not None and again.addr == b.addr, "the repaired block comes first")

    def act_debug_cookie(self):
        debug = [a for a in self.pools if a.debug and a.live]
        if not debug:
            return
        a = self.rng.choice(debug)
        b = self.rng.choice(list(a.live.values()))
        if self.pinned(a, b):
            return
        cookie = ctypes.c_size_t.from_address(b.addr - a.align)
        saved = cookie.value
        check(saved == b.n, f"cookie {saved} of a {b.n}-byte block")
        cookie.value = saved ^ 0x10  # an underrun from the block before
        self.misuse(f"{a.name}.deallocate with a smashed cookie", a.obj.deallocate, b.addr, b.n)
        cookie.value = saved

    def act_drop_allocators(self):
        # A pool dropped while a view exports one of its blocks lives on for the view; a
        # MallocAllocator dropped frees its own blocks (no view of them through another).
        up = MallocAllocator(limit=self.rng.choice([None, 4096]))
        pool = PoolAllocator(
            arena_size=self.rng.choice([0, 4096]), upstream=up, debug=self.rng.random() < 0.5
        )
        blocks = []
        for _ in range(self.rng.randint(1, 12)):
            n = self.rng.randint(1, 300)
            done, p = self.api("tmp.allocate", pool.allocate, n, ok=(MemoryError,))
            if done:
                ctypes.memset(p, 0x33, n)
                blocks.append((p, n))
        view = pool.view(*blocks[0]) if blocks else None
        del pool, up
        gc.collect()
        if view is not None:
            check(view.tobytes() == b"\x33" * len(view), "a dropped pool's exported block")
            view[:] = b"\x44" * len(view)
            view.release()
        m = MallocAllocator()
        for _ in range(self.rng.randint(0, 5)):
            self.api("tmp malloc", m.allocate, self.rng.randint(1, 5000))
        del m
        self.counts["calls"] += 2
