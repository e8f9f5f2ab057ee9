"""Actions: misuse, each of which must raise its documented exception and change nothing."""

from __future__ import annotations

from stlalloc import AllocatorError, MallocAllocator, PoolAllocator

from .model import (
    HUGE,
    NON_INTS,
    check,
    round_up,
)


class MisuseActions:
    """Invalid calls, and the real out-of-memory paths."""

    def act_misuse(self):
        a = self.pick_alloc()
        obj = a.obj
        b = self.pick_block(a)
        rng = self.rng
        cases = [
            ("allocate(-1)", obj.allocate, (-1,), ValueError),
            ("allocate(2**64)", obj.allocate, (HUGE,), MemoryError),
            ("allocate(2**63)", obj.allocate, (2**63,), MemoryError),
            ("allocate(non-int)", obj.allocate, (rng.choice(NON_INTS),), TypeError),
            ("deallocate(0, n)", obj.deallocate, (0, rng.randint(1, 64)), AllocatorError),
            ("deallocate(12345)", obj.deallocate, (12345, 8), AllocatorError),
            ("deallocate(2**64-8)", obj.deallocate, (HUGE - 8, 8), AllocatorError),
            ("deallocate(2**64)", obj.deallocate, (HUGE, 8), AllocatorError),
            ("deallocate(-p)", obj.deallocate, (-8, 8), ValueError),
            ("deallocate(non-int)", obj.deallocate, (rng.choice(NON_INTS), 8), TypeError),
            ("reallocate(0, n, m)", obj.reallocate, (0, 8, 16), AllocatorError),
            ("view(12345)", obj.view, (12345, 1), AllocatorError),
            ("owns(-1)", obj.owns, (-1,), ValueError),
            ("owns(non-int)", obj.owns, (rng.choice(NON_INTS),), TypeError),
            (
                "set_malloc_handler(42)",
                (obj if not a.is_pool else a.up.obj).set_malloc_handler,
                (42,),
                TypeError,
            ),
        ]
        if a.is_pool:
            nf = obj.nfreelists
            cases += [
                ("free_list(-1)", obj.free_list, (-1,), IndexError),
                ("free_list(nfreelists)", obj.free_list, (nf,), IndexError),
                ("free_list(non-int)", obj.free_list, ("0",), TypeError),
                ("size_class(0)", obj.size_class, (0,), ValueError),
                ("size_class(max+1)", obj.size_class, (a.max_bytes + 1,), ValueError),
                ("round_up(-1)", obj.round_up, (-1,), ValueError),
            ]
        first_b = len(cases)
        if b is not None:
            p, n, ext = b.addr, b.n, a.extent(b.n)
            cases += [
                ("deallocate(p+1)", obj.deallocate, (p + 1, n), AllocatorError),
                ("deallocate(p+4)", obj.deallocate, (p + 4, n), AllocatorError),
                ("deallocate(p, -1)", obj.deallocate, (p, -1), ValueError),
                ("deallocate(p, 2**64)", obj.deallocate, (p, HUGE), MemoryError),
                ("deallocate(p, non-int)", obj.deallocate, (p, rng.choice(NON_INTS)), TypeError),
                ("reallocate(p, -1, n)", obj.reallocate, (p, -1, 8), ValueError),
                ("reallocate(p, n, -1)", obj.reallocate, (p, n, -1), ValueError),
                ("reallocate(p, n, 2**64)", obj.reallocate, (p, n, HUGE), MemoryError),
                ("reallocate(p, n, 2**63)", obj.reallocate, (p, n, 2**63), MemoryError),
                ("reallocate(p+1)", obj.reallocate, (p + 1, n, n + 1), AllocatorError),
                ("view(p, ext+1)", obj.view, (p, ext + 1), AllocatorError),
                ("view(p+ext, 1)", obj.view, (p + ext, 1), AllocatorError)
                if not self.adjacent_live(a, p + ext)
                else ("view(p, -1)", obj.view, (p, -1), ValueError),
                ("view(p, -1)", obj.view, (p, -1), ValueError),
                ("view(p, 2**64)", obj.view, (p, HUGE), MemoryError),
                ("view(p, non-int)", obj.view, (p, rng.choice(NON_INTS)), TypeError),
            ]
            cases.append(("deallocate(p, 0)", obj.deallocate, (p, 0), AllocatorError))
            cases += self.edge_cases(a, b)
            if ext > a.alignment and (p + a.alignment) not in self.live_map(a):
                cases.append(
                    ("deallocate(interior)", obj.deallocate, (p + a.alignment, n), AllocatorError)
                )
            wrong = self.wrong_size(a, n)
            if wrong is not None:
                cases.append(
                    (
                        f"deallocate(p, {wrong}) of a {n}-byte block",
                        obj.deallocate,
                        (p, wrong),
                        AllocatorError,
                    )
                )
                cases.append(
                    (
                        f"reallocate(p, {wrong}, ..)",
                        obj.reallocate,
                        (p, wrong, wrong + 8),
                        AllocatorError,
                    )
                )
            if a.is_pool:
                # A block of another pool, and a malloc block: foreign to this pool.
                other = rng.choice([x for x in self.pools if x is not a])
                ob = self.pick_block(other)
                if ob is not None:
                    cases.append(
                        (
                            "deallocate(other pool's)",
                            obj.deallocate,
                            (ob.addr, ob.n),
                            AllocatorError,
                        )
                    )
                    cases.append(("view(other pool's)", obj.view, (ob.addr, 1), AllocatorError))
                mb = self.pick_block(self.mallocs[0])
                if mb is not None:
                    cases.append(
                        (
                            "deallocate(malloc block)",
                            obj.deallocate,
                            (mb.addr, mb.n),
                            AllocatorError,
                        )
                    )
                cases.append(("release() with live blocks", obj.release, (), AllocatorError))
            else:
                # Pool memory handed to a MallocAllocator: pool blocks in the arena are not
                # malloc blocks; blocks in upstream chunks or sent upstream are held by
                # their pool (BufferError).
                pa = rng.choice(self.pools)
                pb = self.pick_block(pa)
                if pb is not None:
                    cases.append(
                        (
                            "malloc.deallocate(pool block)",
                            obj.deallocate,
                            (pb.addr, pb.n),
                            (AllocatorError, BufferError),
                        )
                    )
            if self.pinned(a, b):
                # An exported block: refusing to touch it may come before any other check.
                cases[first_b:] = [
                    (w, f, x, (e if isinstance(e, tuple) else (e,)) + (BufferError,))
                    for w, f, x, e in cases[first_b:]
                ]
        cases += self.top_cases(a)
        # Double frees: an address freed and not live again in this allocator.
        stale = [(p, n) for p, n in a.freed if p not in self.live_map(a)]
        if stale:
            p, n = rng.choice(stale)
            exc = AllocatorError if a.is_pool else (AllocatorError, BufferError)
            cases.append(("double free", obj.deallocate, (p, n), exc))
            cases.append(("reallocate(freed)", obj.reallocate, (p, n, n + 16), exc))
            if a.is_pool:
                cases.append(
                    ("view(freed)", obj.view, (p, 1), AllocatorError)
                    if not self.inside_live(a, p)
                    else cases[0]
                )
        what, fn, args, exc = rng.choice(cases)
        self.misuse(f"{a.name}.{what}", fn, *args, exc=exc)

    def edge_cases(self, a, b):
        """Issue 11: interior addresses with size 0 and with huge sizes, and ranges that run
        past the end of the address space. A size that fits no block may be refused as
        too large before the address is looked at (MemoryError)."""
        obj, p, n, ext = a.obj, b.addr, b.n, a.extent(b.n)
        rng = self.rng
        big = (AllocatorError, MemoryError)
        top = HUGE - 1
        cases = [
            ("deallocate(p+1, 0)", obj.deallocate, (p + 1, 0), AllocatorError),
            ("deallocate(p, 2**64-1)", obj.deallocate, (p, top), big),
            ("reallocate(p, 0, n)", obj.reallocate, (p, 0, n), AllocatorError),
            ("reallocate(p, 2**64-1, n)", obj.reallocate, (p, top, n), big),
            ("view(p, 2**64-1)", obj.view, (p, top), AllocatorError),
            ("view(p, 2**64-p)", obj.view, (p, HUGE - p), AllocatorError),
        ]
        granules = ext // a.alignment
        if granules > 1:
            q = p + a.alignment * rng.randrange(1, granules)
            cases += [
                ("deallocate(interior, 0)", obj.deallocate, (q, 0), AllocatorError),
                ("deallocate(interior, n)", obj.deallocate, (q, n), AllocatorError),
                ("deallocate(interior, 2**64-1)", obj.deallocate, (q, top), big),
                ("reallocate(interior, 0, n)", obj.reallocate, (q, 0, n), AllocatorError),
                ("reallocate(interior, 0, 0)", obj.reallocate, (q, 0, 0), AllocatorError),
                ("reallocate(interior, n, 2**63)", obj.reallocate, (q, n, 2**63), big),
            ]
        return cases

    def top_cases(self, a):
        """Addresses at the top of the address space, where ``p + n`` wraps."""
        obj = a.obj
        top = HUGE - 1
        return [
            ("deallocate(2**64-1, 0)", obj.deallocate, (top, 0), AllocatorError),
            ("deallocate(2**64-8, 8)", obj.deallocate, (HUGE - 8, 8), AllocatorError),
            (
                "deallocate(2**64-8, 2**64-1)",
                obj.deallocate,
                (HUGE - 8, top),
                (AllocatorError, MemoryError),
            ),
            ("deallocate(8, 0)", obj.deallocate, (8, 0), AllocatorError),
            ("reallocate(2**64-8, 8, 16)", obj.reallocate, (HUGE - 8, 8, 16), AllocatorError),
            ("reallocate(2**64-8, 0, 0)", obj.reallocate, (HUGE - 8, 0, 0), AllocatorError),
            ("view(2**64-8, 8)", obj.view, (HUGE - 8, 8), AllocatorError),
            ("view(2**64-1, 2**64-1)", obj.view, (top, top), AllocatorError),
            ("view(2**64-1, 0)", obj.view, (top, 0), AllocatorError),
        ]

    def adjacent_live(self, a, addr):
        return self.inside_live(a, addr)

    def inside_live(self, a, addr):
        for x in self.live_map(a).values():
            lo = x.addr - (a.align if a.is_pool and a.debug else 0)
            if lo <= addr < x.addr + max(a.extent(x.n), 1):
                return True
        return False

    def wrong_size(self, a, n):
        """A size that does not describe the block of ``n`` bytes (None if none fits)."""
        rng = self.rng
        if not a.is_pool or a.debug:
            # Exact sizes only: malloc records them, a debug pool's cookie holds them.
            w = n + rng.choice([-1, 1, 8, 100])
            return w if w > 0 else None
        small = n <= a.max_bytes
        if small:
            # Another class, or claiming to be large.
            choices = [round_up(n, a.align) + a.align, a.max_bytes + 8]
            if round_up(n, a.align) > a.align:
                choices.append(round_up(n, a.align) - a.align)
            w = rng.choice(choices)
            other_class = w > a.max_bytes or round_up(w, a.align) != round_up(n, a.align)
            return w if w > 0 and other_class else None
        return rng.choice([n - 1, n + 1, max(1, a.max_bytes // 2)])

    def act_constructor_misuse(self):
        rng = self.rng
        cases = [
            (lambda: PoolAllocator(align=12), ValueError),
            (lambda: PoolAllocator(align=4), ValueError),
            (lambda: PoolAllocator(max_bytes=100), ValueError),
            (lambda: PoolAllocator(max_bytes=0), ValueError),
            (lambda: PoolAllocator(refill=0), ValueError),
            (lambda: PoolAllocator(arena_size=-1), ValueError),
            (lambda: PoolAllocator(arena_size=HUGE), MemoryError),
            (lambda: PoolAllocator(align="8"), TypeError),
            (lambda: PoolAllocator(upstream=self.pools[0].obj), TypeError),
            (lambda: PoolAllocator(8), TypeError),
            (lambda: MallocAllocator(limit=-1), ValueError),
            (lambda: MallocAllocator(limit="x"), TypeError),
        ]
        fn, exc = rng.choice(cases)
        self.misuse("constructor", fn, exc=exc)

    def act_real_oom(self):
        # malloc really returns NULL: counted as a failure, nothing else changes. Only
        # without a handler, which would run (and may free blocks) on the failure.
        a = self.pick_alloc()
        target = a.up if a.is_pool else a
        if target.handler is not None or a.handler is not None:
            return
        before = self.snapshot()
        self.api(f"{a.name}.allocate(2**62)", a.obj.allocate, 2**62, exact=MemoryError)
        after = self.snapshot()
        check(len(before) == len(after), "snapshot shape")
        self.check_invariants()

    def act_malloc_view_of_pool_memory(self):
        # Every MallocAllocator is equal, but memory a pool holds is not a user's block: a
        # MallocAllocator must refuse to export it (or to free it).
        pools = [a for a in self.pools if a.live]
        if not pools:
            return
        a = self.rng.choice(pools)
        b = self.rng.choice(list(a.live.values()))
        m = self.rng.choice(self.mallocs)
        if m.obj.owns(b.addr):
            self.misuse("malloc.view(pool-held memory)", m.obj.view, b.addr, 1)
