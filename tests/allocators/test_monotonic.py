"""MonotonicAllocator: std::pmr::monotonic_buffer_resource over an arena, a pure break."""

import mmap
import threading

import pytest

import stlalloc
from stlalloc import AllocatorError, MonotonicAllocator

PAGE = mmap.PAGESIZE


def test_the_break_moves_by_each_request_rounded_to_8():
    m = MonotonicAllocator()
    a = m.allocate(8)
    b = m.allocate(20)
    c = m.allocate(1)
    assert (b - a, c - b) == (8, 24)
    assert m.allocate(0) == 0
    s = m.stats()
    assert (s.bytes_used, s.arena_used, s.live_blocks, s.live_bytes) == (40, 40, 3, 40)
    assert s.arena_reserved == stlalloc.DEFAULT_ARENA_SIZE
    assert s.syscalls["mmap"] == 1 and s.upstream_buffers == 0
    assert m.owns(b + 19) and not m.owns(c + 8)


def test_alignment_pads_the_break():
    m = MonotonicAllocator(align=64)
    a, b = m.allocate(8), m.allocate(8)
    assert a % 64 == 0 and b - a == 64
    assert m.align == m.alignment == 64
    with pytest.raises(ValueError, match="power of two"):
        MonotonicAllocator(align=12)


def test_deallocate_gives_nothing_back_and_rejects_misuse_unchanged():
    m = MonotonicAllocator()
    a, b = m.allocate(24), m.allocate(8)
    before = m.stats()
    for p, n in [(a, 32), (a + 8, 16), (a + 3, 8), (0x10, 8)]:
        with pytest.raises(AllocatorError):
            m.deallocate(p, n)
    assert m.stats() == before
    m.deallocate(a, 24)
    with pytest.raises(AllocatorError, match="no live block"):
        m.deallocate(a, 24)
    s = m.stats()
    assert (s.live_blocks, s.deallocations, s.bytes_used) == (1, 1, 32)
    assert m.allocate(8) == b + 8, "retired memory is never reused"
    with pytest.raises(ValueError):
        m.allocate(-1)
    with pytest.raises(TypeError):
        m.allocate("8")


def test_exhausted_arena_takes_doubling_buffers_from_upstream():
    up = stlalloc.MallocAllocator()
    m = MonotonicAllocator(arena_size=PAGE, upstream=up)
    assert m.upstream is up and m.stats().next_buffer_size == 2 * PAGE
    m.allocate(PAGE)
    p = m.allocate(8)
    assert up.owns(p)
    sizes = []
    for _ in range(3):
        left = m.stats().next_buffer_size
        m.allocate(left // 2 + 8)  # does not fit the current buffer: a new one
        sizes.append(m.stats().upstream_bytes)
    s = m.stats()
    assert s.upstream_buffers == 4
    assert [b - a for a, b in zip([2 * PAGE, *sizes], sizes, strict=False)] == [
        4 * PAGE,
        8 * PAGE,
        16 * PAGE,
    ]
    assert up.stats().live_blocks == 4
    m.release()
    assert up.stats().live_blocks == 0 and m.stats().upstream_bytes == 0


def test_release_frees_every_block_nobody_holds_and_restarts_the_break():
    m = MonotonicAllocator()
    a = m.allocate(100)
    m.view(a, 100)[:] = b"x" * 100
    m.allocate(8)
    m.release()
    s = m.stats()
    assert (s.live_blocks, s.bytes_used, s.released_blocks, s.releases) == (0, 0, 2, 1)
    assert s.syscalls["madvise"] == 1 and s.arena_resident == 0
    with pytest.raises(AllocatorError):
        m.deallocate(a, 100)
    assert m.allocate(8) == a, "the break starts over"


def test_release_is_refused_while_a_view_is_alive():
    m = MonotonicAllocator()
    a = m.allocate(16)
    view = m.view(a, 16)
    with pytest.raises(AllocatorError, match="still live"):
        m.release()
    with pytest.raises(BufferError):
        m.deallocate(a, 16)
    view.release()
    m.release()


def test_release_is_refused_while_a_block_is_lent_to_a_container():
    m = MonotonicAllocator()

    class Borrower:
        def allocate(self, n):
            return m.allocate(n)

        def deallocate(self, p, n):
            m.deallocate(p, n)

    t = stlalloc.TracingAllocator(Borrower())
    p = t.allocate(32)  # through the protocol adaptor: its block is lent (claimed)
    with pytest.raises(AllocatorError, match="still live"):
        m.release()
    t.deallocate(p, 32)
    m.release()


def test_reallocate_in_place_at_the_break_else_moves_with_contents():
    m = MonotonicAllocator()
    a = m.allocate(16)
    m.view(a, 16)[:] = bytes(range(16))
    assert m.reallocate(a, 16, 40) == a
    assert m.reallocate(a, 40, 8) == a
    b = m.allocate(8)
    c = m.reallocate(a, 8, 64)
    assert c > b and bytes(m.view(c, 8)) == bytes(range(8))
    assert m.stats().live_blocks == 2


def test_equal_only_to_itself_and_its_tracers():
    m, other = MonotonicAllocator(), MonotonicAllocator()
    t = stlalloc.TracingAllocator(m)
    assert m == m and m != other and m == t and t == m
    assert hash(m) == hash(t)
    assert m != stlalloc.MallocAllocator()


def test_threads_get_disjoint_blocks():
    m = MonotonicAllocator(arena_size=16 * PAGE)
    got = [[] for _ in range(4)]

    def work(mine):
        for i in range(2000):
            p = m.allocate(8 + i % 24)
            mine.append((p, 8 + i % 24))

    threads = [threading.Thread(target=work, args=(g,)) for g in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    blocks = sorted(b for g in got for b in g)
    assert all(p + n <= q for (p, n), (q, _) in zip(blocks, blocks[1:], strict=False))
    assert m.stats().live_blocks == 8000
