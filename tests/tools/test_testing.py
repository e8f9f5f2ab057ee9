"""stlalloc.testing.check_allocator: the C++ allocator requirements, runnable."""

import pytest

import stlalloc
from stlalloc import testing
from stlalloc.testing import check_allocator


class Delegating:
    """A correct user allocator: every block from a pool."""

    def __init__(self):
        self.pool = stlalloc.PoolAllocator()

    def allocate(self, n):
        return self.pool.allocate(n)

    def deallocate(self, p, n):
        self.pool.deallocate(p, n)


class WithReallocate(Delegating):
    def reallocate(self, p, old, new):
        return self.pool.reallocate(p, old, new)


BUILT_INS = {
    "pool": stlalloc.PoolAllocator,
    "debug pool": lambda: stlalloc.PoolAllocator(debug=True),
    "default pool": stlalloc.default_pool,
    "malloc": stlalloc.MallocAllocator,
    "monotonic": lambda: stlalloc.MonotonicAllocator(arena_size=4096),
    "tracing": lambda: stlalloc.TracingAllocator(stlalloc.PoolAllocator()),
}


@pytest.mark.parametrize("make", BUILT_INS.values(), ids=BUILT_INS.keys())
def test_every_built_in_allocator_passes_every_requirement(make):
    alloc = make()
    report = check_allocator(alloc)
    assert report.checked == testing.REQUIREMENTS and report.skipped == ()
    assert report.allocations == 30 and report.deallocations == 30 - 3 + 3
    assert report.reallocations == 3 and report.peak_live_blocks > 10
    assert report.alignment == 8


def test_user_allocators_pass_misuse_being_optional_for_them():
    report = check_allocator(Delegating())
    assert testing.MISUSE in report.skipped and testing.REALLOCATE in report.skipped
    assert report.reallocations == 0
    report = check_allocator(WithReallocate(), misuse=True, sizes=(8, 200), rounds=5)
    assert report.checked == testing.REQUIREMENTS and report.allocations == 10
    # Through the adaptor a container would use.
    check_allocator(stlalloc.TracingAllocator(Delegating()))


class Overlapping(Delegating):
    """Carves blocks from one big block but advances by half the size."""

    def __init__(self):
        super().__init__()
        self.next = self.base = self.pool.allocate(1 << 16)

    def allocate(self, n):
        p = self.next
        self.next += (n // 2 + 7) & ~7
        return p

    def deallocate(self, p, n):
        pass


class Misaligned(Delegating):
    def allocate(self, n):
        return self.pool.allocate(n + 8) + 1

    def deallocate(self, p, n):
        self.pool.deallocate(p - 1, n + 8)


class Scribbling(Delegating):
    """Zero-fills the previous block on each allocate (a calloc over the wrong block)."""

    def __init__(self):
        super().__init__()
        self.last = None

    def allocate(self, n):
        if self.last is not None:
            p, m = self.last
            if self.pool.owns(p):
                self.pool.view(p, m)[:] = bytes(m)
        p = self.pool.allocate(n)
        self.last = (p, n)
        return p


class FreesEarly(Delegating):
    """Frees the previous block when the next one is asked for."""

    def __init__(self):
        super().__init__()
        self.last = None

    def allocate(self, n):
        if self.last is not None:
            self.pool.deallocate(*self.last)
        p = self.pool.allocate(n)
        self.last = (p, n)
        return p

    def deallocate(self, p, n):
        if self.last == (p, n):
            self.last = None
            self.pool.deallocate(p, n)


class Wild(Delegating):
    def allocate(self, n):
        return id(object()) & ~7


class NotAnInt(Delegating):
    def allocate(self, n):
        return float(self.pool.allocate(n))


class RaisingFree(Delegating):
    def deallocate(self, p, n):
        if n > 100:
            raise RuntimeError("too big to free")
        super().deallocate(p, n)


class LosingRealloc(WithReallocate):
    def reallocate(self, p, old, new):
        q = self.pool.allocate(new)
        self.pool.deallocate(p, old)
        return q


class Unequal(Delegating):
    def __eq__(self, other):
        return False

    __hash__ = object.__hash__


class ToleratesDoubleFree(Delegating):
    def deallocate(self, p, n):
        if self.pool.owns(p):
            super().deallocate(p, n)


BROKEN = {
    "overlapping": (Overlapping, testing.DISJOINT),
    "misaligned": (Misaligned, testing.ALIGNED),
    "scribbling": (Scribbling, testing.CONTENTS),
    "frees early": (FreesEarly, testing.CONTENTS),
    "wild": (Wild, testing.SIZE),
    "not an int": (NotAnInt, testing.ADDRESS),
    "raising free": (RaisingFree, testing.DEALLOCATE),
    "losing realloc": (LosingRealloc, testing.REALLOCATE),
    "unequal": (Unequal, testing.EQUALITY),
    "tolerates double free": (ToleratesDoubleFree, testing.MISUSE),
}


@pytest.mark.parametrize("make, requirement", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_allocator_fails_with_the_requirement_it_broke(make, requirement):
    with pytest.raises(AssertionError) as failure:
        check_allocator(make(), misuse=True)
    assert str(failure.value).startswith(requirement + ": "), failure.value


def test_the_messages_say_what_happened():
    with pytest.raises(AssertionError, match=r"overlaps the live block \[0x"):
        check_allocator(Overlapping())
    with pytest.raises(AssertionError, match="not 8-byte aligned"):
        check_allocator(Misaligned())
    with pytest.raises(AssertionError, match="changed at offset 0 after allocate"):
        check_allocator(Scribbling())
    with pytest.raises(AssertionError, match="is gone after allocate"):
        check_allocator(FreesEarly())
    with pytest.raises(ValueError):
        check_allocator(Delegating(), sizes=(0,))
