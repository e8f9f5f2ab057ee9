"""The allocator protocol: a Python object with allocate(n) and deallocate(p, n) backs a
container through an adaptor that validates every address it returns.

Here the adaptor is driven the way a container drives it, with no container in between:
``_native._protocol_roundtrip`` (allocate, write, read, deallocate, as a container would) and
``TracingAllocator(obj)``, whose blocks come through the same adaptor
(``test_framework_containers.py`` backs real containers with such objects).
"""

import gc
import sys
import weakref

import pytest

import stlalloc
from stlalloc import AllocatorError, PoolAllocator, TracingAllocator
from stlalloc._native import _protocol_roundtrip


class Delegating:
    """A user allocator on top of a pool, logging its calls."""

    def __init__(self, pool=None):
        self.pool = pool or PoolAllocator()
        self.calls = []

    def allocate(self, n):
        p = self.pool.allocate(n)
        self.calls.append(("allocate", p, n))
        return p

    def deallocate(self, p, n):
        self.calls.append(("deallocate", p, n))
        self.pool.deallocate(p, n)


class Returns:
    """allocate() returns whatever ``make(n)`` gives; deallocate() records."""

    def __init__(self, make):
        self.make = make
        self.freed = []

    def allocate(self, n):
        return self.make(n)

    def deallocate(self, p, n):
        self.freed.append((p, n))


def test_a_python_allocator_serves_blocks_a_container_can_use():
    a = Delegating()
    p = _protocol_roundtrip(a, 24)
    assert a.calls == [("allocate", p, 24), ("deallocate", p, 24)]
    assert a.pool.stats().live_blocks == 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda n: 0x1234_5678, "not a block address|does not lie inside"),
        (lambda n: 0, "returned 0"),
        (lambda n: "0x1000", "returned '0x1000', not an address"),
        (lambda n: -8, "not an address"),
        (lambda n: POOL.allocate(8), "does not lie inside"),  # too small for n=64
        (lambda n: POOL.allocate(n + 8) + 4, "8-byte aligned"),
        (lambda n: POOL.allocate(n) + 8, "does not lie inside"),
    ],
)
def test_bad_addresses_are_refused_and_never_used(make, message):
    bad = Returns(make)
    with pytest.raises(AllocatorError, match=message):
        _protocol_roundtrip(bad, 64)
    assert bad.freed == [], "a refused block was never the container's"


POOL = PoolAllocator()


def test_a_freed_block_is_refused():
    pool = PoolAllocator()
    p = pool.allocate(32)
    pool.deallocate(p, 32)
    with pytest.raises(AllocatorError, match="does not lie inside"):
        _protocol_roundtrip(Returns(lambda n: p), 32)


def test_a_block_python_code_views_is_refused():
    pool = PoolAllocator()
    p = pool.allocate(32)
    view = pool.view(p, 32)
    with pytest.raises(AllocatorError, match="view"):
        _protocol_roundtrip(Returns(lambda n: p), 32)
    view.release()
    _protocol_roundtrip(Returns(lambda n: p), 32)


def test_a_lent_block_is_out_of_python_hands_until_given_back():
    a = Delegating()
    t = TracingAllocator(a)
    p = t.allocate(48)  # lent through the adaptor, as a container would hold it
    with pytest.raises(AllocatorError, match="belongs to a container"):
        a.pool.deallocate(p, 48)
    with pytest.raises(AllocatorError):
        a.pool.reallocate(p, 48, 96)
    with pytest.raises(AllocatorError):
        a.pool.view(p, 48)
    # The same address from another Python allocator overlaps the lent block.
    with pytest.raises(AllocatorError, match="overlaps a block already handed"):
        _protocol_roundtrip(Returns(lambda n: p), 16)
    t.deallocate(p, 48)
    assert a.calls[-1] == ("deallocate", p, 48) and a.pool.stats().live_blocks == 0


def test_pieces_of_one_block_are_lent_separately():
    pool = PoolAllocator()

    class Carving:
        """Hands out 16-byte pieces of one 128-byte pool block."""

        def __init__(self):
            self.base = pool.allocate(128)
            self.next = self.base

        def allocate(self, n):
            p, self.next = self.next, self.next + 16
            return p

        def deallocate(self, p, n):
            pass

    c = Carving()
    t = TracingAllocator(c)
    pieces = [t.allocate(16) for _ in range(4)]
    assert pieces == [c.base + 16 * i for i in range(4)]
    c.next = c.base + 8
    with pytest.raises(AllocatorError, match="overlaps"):
        t.allocate(16)
    c.next = c.base + 120
    with pytest.raises(AllocatorError, match="does not lie inside"):
        t.allocate(16)  # runs past the end of the backing block
    for p in pieces[:3]:
        t.deallocate(p, 16)
        with pytest.raises(AllocatorError, match="belongs to a container"):
            pool.deallocate(c.base, 128)
    t.deallocate(pieces[3], 16)
    pool.deallocate(c.base, 128)


def test_the_loan_keeps_the_backing_allocator_alive():
    class Forgetful(Delegating):
        def deallocate(self, p, n):
            raise RuntimeError("my pool is gone")

    f = Forgetful()
    t = TracingAllocator(f)
    p = t.allocate(64)
    f.pool = None  # the last Python reference to the pool
    gc.collect()
    t.view(p, 64)[:] = b"z" * 64  # still mapped: the loan holds the pool's core
    assert bytes(t.view(p, 64)) == b"z" * 64
    seen = []
    old, sys.unraisablehook = sys.unraisablehook, seen.append
    try:
        t.deallocate(p, 64)  # C++ deallocate does not throw: reported, not raised
    finally:
        sys.unraisablehook = old
    assert isinstance(seen[0].exc_value, RuntimeError)


def test_a_block_of_a_dead_allocator_is_refused():
    with pytest.raises(AllocatorError, match="does not lie inside"):
        _protocol_roundtrip(Returns(lambda n: PoolAllocator().allocate(n)), 64)


def test_exceptions_of_allocate_pass_through_unchanged():
    def refuse(n):
        raise KeyError("no room")

    with pytest.raises(KeyError, match="no room"):
        _protocol_roundtrip(Returns(refuse), 8)


class Wide(Delegating):
    alignment = 64


def test_the_promised_alignment_is_enforced():
    fresh = TracingAllocator(Wide())
    assert fresh.alignment == 64
    assert fresh.allocate(64) % 64 == 0  # the first chunk starts the page-aligned arena
    pool = PoolAllocator()
    pool.allocate(8)  # SPEC §3: a 320-byte chunk, 160 bytes left in it
    t = TracingAllocator(Wide(pool))
    with pytest.raises(AllocatorError, match="64-byte aligned"):
        t.allocate(64)  # carved at arena + 160


def test_objects_without_the_protocol_are_type_errors():
    class Half:
        def allocate(self, n):
            return 0

    for bad in (Half(), object(), 42):
        with pytest.raises(TypeError, match="allocate"):
            _protocol_roundtrip(bad, 8)


def test_python_code_cannot_free_or_view_a_pool_s_own_upstream_blocks():
    pool = PoolAllocator(arena_size=0)  # every chunk comes from the upstream allocator
    pool.allocate(8)
    (chunk,) = [r for r in pool.layout() if r["kind"] == "upstream"]
    with pytest.raises(BufferError):
        pool.upstream.deallocate(chunk["base"], chunk["len"])
    # A view would let Python overwrite the free-list links inside the chunk.
    with pytest.raises(AllocatorError, match="belongs to"):
        stlalloc.MallocAllocator().view(chunk["base"] + 8, 8)
    with pytest.raises(AllocatorError, match="pinned"):
        _protocol_roundtrip(Returns(lambda n: chunk["base"] + 8), 8)
    assert pool.allocate(8) == chunk["base"] + 8


def test_an_allocator_that_refers_to_its_tracer_is_collected():
    a = Delegating()
    a.tracer = TracingAllocator(a)
    p = a.tracer.allocate(16)
    a.tracer.deallocate(p, 16)
    gone = weakref.ref(a)
    del a
    gc.collect()
    assert gone() is None
