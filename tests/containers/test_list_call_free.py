"""An object List's pushes and pops served without a call (issue #14): the positional
calls of `push_back`, `append`, `push_front`, `appendleft`, `pop`, `pop_back`, `pop_front`
and `popleft` on a List of a plain pool take its call-free path. They must do exactly what
the full path does: the same reference counts, the same blocks of the pool, the same
contents; a keyword call (`push_back(x=...)`) or a `del` always takes the full path.
"""

import sys

import pytest

from stlalloc import List, MallocAllocator, PoolAllocator

PUSHES = ["push_back", "append", "push_front", "appendleft"]
POPS = ["pop", "pop_back", "pop_front", "popleft"]
ALLOCATORS = [PoolAllocator, MallocAllocator, lambda: PoolAllocator(debug=True)]


@pytest.mark.parametrize("make", ALLOCATORS)
@pytest.mark.parametrize("push", PUSHES)
@pytest.mark.parametrize("pop", POPS)
def test_a_push_takes_one_reference_and_a_pop_hands_it_back(make, push, pop):
    lst = List(allocator=make())
    x = object()
    before = sys.getrefcount(x)
    for _ in range(50):  # past a refill of the pool's free list
        getattr(lst, push)(x)
    assert sys.getrefcount(x) == before + 50
    for _ in range(50):
        assert getattr(lst, pop)() is x
    assert sys.getrefcount(x) == before
    with pytest.raises(IndexError):
        getattr(lst, pop)()


def offsets(lst):
    addresses = lst.node_addresses()
    return [a - addresses[0] for a in addresses]


@pytest.mark.parametrize("push", PUSHES)
def test_pushes_take_the_blocks_the_full_path_takes(push):
    fast_pool, full_pool = PoolAllocator(), PoolAllocator()
    fast, full = List(allocator=fast_pool), List(allocator=full_pool)
    for i in range(100):
        getattr(fast, push)(i)
        getattr(full, push)(x=i)  # a keyword call: the full path
        assert fast_pool.stats() == full_pool.stats()
    assert list(fast) == list(full)
    assert offsets(fast) == offsets(full)


@pytest.mark.parametrize("pop", POPS)
def test_pops_free_as_the_full_path_frees(pop):
    fast_pool, full_pool = PoolAllocator(), PoolAllocator()
    fast = List(range(60), allocator=fast_pool)
    full = List(range(60), allocator=full_pool)
    front = pop in ("pop_front", "popleft")
    for _ in range(60):
        value = getattr(fast, pop)()
        expected = full[0] if front else full[-1]
        del full[0 if front else -1]  # the full path's unlink and free
        assert value == expected
        assert fast_pool.stats() == full_pool.stats()
    i = fast_pool.size_class(fast.node_size())
    base_fast, base_full = min(fast_pool.free_list(i)), min(full_pool.free_list(i))
    assert [a - base_fast for a in fast_pool.free_list(i)] == [
        a - base_full for a in full_pool.free_list(i)
    ]


def test_a_list_at_its_maxlen_still_evicts():
    lst = List(maxlen=3)
    for i in range(10):
        lst.append(i)
    lst.appendleft(-1)
    assert list(lst) == [-1, 7, 8]
