"""Eight threads share one PoolAllocator and the containers on it (issue 12).

Every thread runs random operations at once on: raw blocks of the pool (its own, and blocks
another thread allocated, handed over through a queue: cross-thread frees), two Vectors and
three Lists on the pool (int64 and object), splices between the Lists, containers of its own
made and dropped on the pool, and stats() while the others run. Written for free-threaded
CPython with the GIL off (scripts/free-threaded), where the calls really overlap; under the
GIL it runs the same, interleaved.

What must hold at the end, and what it checks:
- no crash, no hang (a watchdog dumps the threads and exits; joins time out), no exception
  but the documented ones: IndexError (pop on empty), RuntimeError("List mutated during
  iteration"), ValueError("... modified ...") from a sort whose key runs Python;
- no block lost, none freed twice: every raw block keeps the bytes its owner wrote;
  pushed == popped + left, as multisets, for each Vector and for the Lists together;
  once the containers are gone, live_blocks, live_bytes and the large ones are back to the
  baseline, and the upstream holds exactly the pool's chunks;
- SPEC §3 conservation, heap_size == live_bytes + Σ free_list_lengths[i]*(i+1)*align +
  chunk_bytes_left, in every stats() taken during the run and at the end.

STLALLOC_STRESS_STEPS sets the operations per thread (default 4000); each thread also stops
after STLALLOC_STRESS_SECONDS (default 30), so the test is bounded on a loaded machine.
"""

import collections
import faulthandler
import gc
import os
import random
import sys
import threading
import time

import pytest
from stats_fields import conserved

from stlalloc import List, MallocAllocator, PoolAllocator, Vector

THREADS = 8
STEPS = int(os.environ.get("STLALLOC_STRESS_STEPS", "4000"))
SECONDS = float(os.environ.get("STLALLOC_STRESS_SECONDS", "30"))


def live(st):
    return (st.live_blocks, st.live_bytes, st.large_live_blocks, st.large_live_bytes)


@pytest.fixture(autouse=True)
def watchdog():
    # A hang (a lock never released, a lost wakeup) fails with every thread's traceback.
    faulthandler.dump_traceback_later(SECONDS * 4 + 60, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def fast_switching():
    # Under the GIL: a switch between almost every bytecode, so the threads interleave.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


class Shared:
    """What the threads share, and what each recorded (one list per thread: no lost +=)."""

    def __init__(self, pool):
        self.pool = pool
        self.vectors = {
            "v64": Vector(dtype="int64", allocator=pool),
            "vobj": Vector(dtype="object", allocator=pool),
        }
        self.lists = [
            List(dtype="int64", allocator=pool),
            List(dtype="int64", allocator=pool),
            List(dtype="object", allocator=pool),
        ]
        self.handoff = collections.deque()  # raw blocks for another thread to free
        # Made up front: a defaultdict's factory is Python code, so two threads meeting a
        # missing key at once would each make a record and one would be lost.
        names = [*self.vectors, "lists"]
        self.pushed = {name: [[] for _ in range(THREADS)] for name in names}
        self.popped = {name: [[] for _ in range(THREADS)] for name in names}
        self.ops = [collections.Counter() for _ in range(THREADS)]


def raw_block_op(s, k, rnd, mine, step):
    pool, ops = s.pool, s.ops[k]
    r = rnd.random()
    if r < 0.4 or not mine:
        n = rnd.choice([rnd.randint(1, 128), rnd.randint(129, 600)])
        p = pool.allocate(n)
        tag = (k * 37 + step) % 255 + 1
        with pool.view(p, n) as mv:
            mv[:] = bytes([tag]) * n
        mine.append((p, n, tag))
        ops["allocate"] += 1
        return
    if r < 0.6:
        p, n, tag = mine.pop(rnd.randrange(len(mine)))
        with pool.view(p, n) as mv:
            assert mv.tobytes() == bytes([tag]) * n, "another thread wrote into a live block"
        pool.deallocate(p, n)
        ops["deallocate"] += 1
    elif r < 0.7:
        i = rnd.randrange(len(mine))
        p, n, tag = mine[i]
        new = rnd.randint(1, 400)
        q = pool.reallocate(p, n, new)
        with pool.view(q, new) as mv:
            assert mv.tobytes()[: min(n, new)] == bytes([tag]) * min(n, new), "realloc lost bytes"
            mv[:] = bytes([tag]) * new
        mine[i] = (q, new, tag)
        ops["reallocate"] += 1
    elif r < 0.85:
        s.handoff.append(mine.pop())  # deque.append/popleft are atomic, GIL or not
        ops["hand over"] += 1
    else:
        try:
            p, n, tag = s.handoff.popleft()
        except IndexError:
            return
        with pool.view(p, n) as mv:
            assert mv.tobytes() == bytes([tag]) * n, "a handed-over block changed"
        pool.deallocate(p, n)  # freed by a thread that did not allocate it
        ops["cross-thread free"] += 1


def vector_op(s, k, rnd, step):
    name = rnd.choice(list(s.vectors))
    v, ops = s.vectors[name], s.ops[k]
    pushed, popped = s.pushed[name][k], s.popped[name][k]
    x = (k * 10**6 + step) * 10
    r = rnd.random()
    if len(v) > 400:
        r = 0.5  # a pop: keeps searches and copies short
    try:
        if r < 0.3:
            v.append(x)
            pushed.append(x)
        elif r < 0.4:
            xs = [x + j for j in range(1, rnd.randint(2, 9))]
            v.extend(xs)
            pushed.extend(xs)
        elif r < 0.7:
            popped.append(v.pop())
        elif r < 0.8:
            assert all(isinstance(e, int) for e in v)  # a Vector reads afresh, as list
        elif r < 0.9:
            n = len(v)
            if n:
                v[rnd.randrange(n)]
        else:
            _ = x in v, len(repr(v))
        ops[name] += 1
    except IndexError:
        ops["index error (it shrank)"] += 1


def list_op(s, k, rnd, step):
    lst, ops = rnd.choice(s.lists), s.ops[k]
    pushed, popped = s.pushed["lists"][k], s.popped["lists"][k]
    x = (k * 10**6 + step) * 10 + 5
    r = rnd.random()
    if len(lst) > 400:
        r = 0.45  # a pop
    try:
        if r < 0.2:
            lst.push_back(x)
            pushed.append(x)
        elif r < 0.3:
            lst.push_front(x)
            pushed.append(x)
        elif r < 0.4:
            popped.append(lst.pop_front())
        elif r < 0.55:
            popped.append(lst.pop())
        elif r < 0.7:
            try:
                for e in lst:
                    assert isinstance(e, int)
                ops["iterated"] += 1
            except RuntimeError as e:
                assert "mutated during iteration" in str(e), e
                ops["iteration stopped"] += 1
        elif r < 0.8:
            a, b = rnd.sample(s.lists[:2], 2)  # the int64 ones: same dtype, same pool
            a.splice(b)
            ops["splice"] += 1
        elif r < 0.9:
            try:
                lst.sort(key=lambda e: -e)
            except ValueError as e:
                assert "modified" in str(e), e
            ops["sort"] += 1
        else:
            try:
                _ = lst.count(x), len(lst)
            except RuntimeError as e:
                # As deque does: comparing stops if another thread changed the structure.
                assert "mutated during iteration" in str(e), e
                ops["count stopped"] += 1
        ops["list"] += 1
    except IndexError:
        ops["pop on empty"] += 1


def own_container_op(s, k, rnd):
    # Containers born and dropped in this thread, on the shared pool.
    n = rnd.randint(1, 40)
    if rnd.random() < 0.5:
        c = Vector(range(n), dtype=rnd.choice(["int64", "object"]), allocator=s.pool)
    else:
        c = List(range(n), dtype=rnd.choice(["int64", "object"]), allocator=s.pool)
    assert list(c) == list(range(n))
    del c
    s.ops[k]["own container"] += 1


def stats_op(s, k):
    st = s.pool.stats()
    assert conserved(st), st
    s.ops[k]["stats"] += 1


def test_eight_threads_share_a_pool_and_containers():
    up = MallocAllocator()
    pool = PoolAllocator(arena_size=1 << 15, upstream=up)
    baseline = live(pool.stats())
    s = Shared(pool)
    barrier = threading.Barrier(THREADS)
    errors = []
    leftovers = [[] for _ in range(THREADS)]

    def worker(k):
        rnd = random.Random(k)
        mine = leftovers[k]
        try:
            barrier.wait()
            stop = time.monotonic() + SECONDS
            for step in range(STEPS):
                if time.monotonic() > stop:
                    break
                r = rnd.random()
                if r < 0.4:
                    raw_block_op(s, k, rnd, mine, step)
                elif r < 0.65:
                    vector_op(s, k, rnd, step)
                elif r < 0.93:
                    list_op(s, k, rnd, step)
                elif r < 0.98:
                    own_container_op(s, k, rnd)
                else:
                    stats_op(s, k)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append((k, e))
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=SECONDS * 3 + 30)
    assert not any(t.is_alive() for t in threads), "a thread hangs"
    if errors:
        k, e = errors[0]
        raise AssertionError(f"thread {k}: {e!r}") from e

    # Nothing lost or duplicated in the containers.
    def flat(per_thread):
        return [x for xs in per_thread for x in xs]

    for name in s.vectors:
        left = list(s.vectors[name])
        assert sorted(flat(s.popped[name]) + left) == sorted(flat(s.pushed[name])), name
    left = [x for lst in s.lists for x in lst]
    assert sorted(flat(s.popped["lists"]) + left) == sorted(flat(s.pushed["lists"]))

    # Every raw block still holds its owner's bytes; free them all.
    for p, n, tag in [b for bs in leftovers for b in bs] + list(s.handoff):
        with pool.view(p, n) as mv:
            assert mv.tobytes() == bytes([tag]) * n
        pool.deallocate(p, n)
    st = pool.stats()
    assert conserved(st), st

    ops = sum(s.ops, collections.Counter())
    assert ops["cross-thread free"] > 0 and ops["splice"] > 0 and ops["stats"] > 0, ops
    s.vectors.clear()
    s.lists.clear()
    gc.collect()
    st = pool.stats()
    assert live(st) == baseline, st
    assert conserved(st), st
    assert up.stats().live_bytes == st.upstream_chunk_bytes
    pool.release()
    assert up.stats().live_bytes == 0
    gil = "on" if getattr(sys, "_is_gil_enabled", lambda: True)() else "off"
    print(f"\n8 threads on one pool and its containers, GIL {gil}: {dict(ops)}")
