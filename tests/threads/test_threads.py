"""Eight threads on one allocator, one Vector, one List (issue 6, SPEC §4 "safe to share
between Python threads, free-threaded CPython included").

Each test hammers a shared object from 8 threads with a tiny switch interval, so that
threads interleave between almost every bytecode, then checks that nothing was lost: SPEC
§3's conservation equation, 0 live blocks once every thread freed its own, every element
pushed accounted for. Misuse across threads (double frees, freeing an exported block)
must raise, never corrupt. No exception outside the documented ones may reach a thread;
in particular no RuntimeError ("Already borrowed": a pyo3 borrow conflict).

On a free-threaded interpreter (3.13t/3.14t) the same tests run without a GIL, where the
pools take a real spin lock (rust/python/src/gil_lock.rs).

STLALLOC_THREAD_STEPS scales the work per thread (default 10000).
"""

import collections
import contextlib
import faulthandler
import gc
import os
import random
import sys
import threading

import pytest
from stats_fields import conserved

import stlalloc
from stlalloc import AllocatorError, MallocAllocator, PoolAllocator

THREADS = 8
STEPS = int(os.environ.get("STLALLOC_THREAD_STEPS", "10000"))
DOCUMENTED = (AllocatorError, ValueError, TypeError, MemoryError, BufferError, IndexError)

OPS = collections.Counter()  # operations run, per test, for the report


class GaveUp(Exception):
    """An out-of-memory handler's way to give up: it must reach the caller."""


@pytest.fixture(autouse=True)
def watchdog():
    # A lock held across a handler, or a lost wakeup, would hang: fail with tracebacks.
    faulthandler.dump_traceback_later(max(120, STEPS // 25), exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def fast_switching():
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def run_threads(worker, n=THREADS):
    """Runs ``worker(k, barrier)`` in n threads; re-raises the first error of any."""
    barrier = threading.Barrier(n)
    errors = []

    def body(k):
        try:
            worker(k, barrier)
        except BaseException as e:  # noqa: BLE001 - every error is reported below
            errors.append((k, e))
            barrier.abort()

    threads = [threading.Thread(target=body, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(110, STEPS // 25 - 10))
    assert not any(t.is_alive() for t in threads), "a thread hangs"
    if errors:
        k, e = errors[0]
        raise AssertionError(f"thread {k}: {e!r}") from e


@contextlib.contextmanager
def comparisons_may_stop(kind):
    # As collections.deque does, a List refuses to go on comparing its values after another
    # thread changed its structure (`in`, `count`, `index`): by design, unlike a borrow
    # conflict. With the GIL, comparing ints runs no Python code, so it shows without it.
    try:
        yield
    except RuntimeError as e:
        assert kind == "List" and "mutated during iteration" in str(e), e


def no_runtime_error(e):
    # RuntimeError covers pyo3's "Already borrowed" and a panic turned exception; neither
    # may ever reach a user. PanicException derives from BaseException, so the caller's
    # `except DOCUMENTED` lets it through anyway.
    assert not isinstance(e, RuntimeError), f"{e!r} reached a user"


# --------------------------------------------------------------------------------------
# Allocators
# --------------------------------------------------------------------------------------


def test_eight_threads_share_one_pool_and_one_malloc_allocator():
    # A 16 KiB arena: the threads exhaust it, so refills scan the free lists and take
    # upstream chunks while others allocate and free.
    m = MallocAllocator()
    pool = PoolAllocator(arena_size=1 << 14, upstream=MallocAllocator())
    other = PoolAllocator(arena_size=1 << 12)
    # Blocks published for the others to attack: (alloc, p, n) -> a lock held while the
    # publisher may free the block, so an attacker never hits a reused address.
    exported = {}
    exported_lock = threading.Lock()
    per_thread = [collections.Counter() for _ in range(THREADS)]

    def worker(k, barrier):
        rnd = random.Random(k)
        ops = per_thread[k]  # one per thread: `+=` on a shared Counter loses updates
        mine = []  # (alloc, p, n, tag)
        foreign = other.allocate(8)
        barrier.wait()
        for step in range(STEPS):
            r = rnd.random()
            alloc = pool if rnd.random() < 0.7 else m
            if r < 0.35 or not mine:
                n = rnd.choice([rnd.randint(1, 128), rnd.randint(129, 3000)])
                p = alloc.allocate(n)
                tag = (k * 31 + step) % 255 + 1
                with alloc.view(p, n) as mv:
                    mv[:] = bytes([tag]) * n
                mine.append((alloc, p, n, tag))
                ops["allocate"] += 1
            elif r < 0.6:
                a, p, n, tag = mine.pop(rnd.randrange(len(mine)))
                with a.view(p, n) as mv:
                    assert mv.tobytes() == bytes([tag]) * n, "another thread wrote here"
                a.deallocate(p, n)
                ops["deallocate"] += 1
                if rnd.random() < 0.3:
                    # Freeing it again could free another thread's block if the address
                    # was reused meanwhile (double frees across threads are raced in
                    # test_threads_race_to_free_the_same_blocks); a misaligned pointer
                    # is never a block, whatever the others do.
                    with pytest.raises(AllocatorError):
                        a.deallocate(p + 1, n)
                    ops["misuse"] += 1
            elif r < 0.75:
                i = rnd.randrange(len(mine))
                a, p, n, tag = mine[i]
                new = rnd.choice([rnd.randint(1, 128), rnd.randint(129, 3000)])
                q = a.reallocate(p, n, new)
                with a.view(q, min(n, new)) as mv:
                    assert mv.tobytes() == bytes([tag]) * min(n, new), "realloc lost bytes"
                with a.view(q, new) as mv:
                    mv[:] = bytes([tag]) * new
                mine[i] = (a, q, new, tag)
                ops["reallocate"] += 1
            elif r < 0.85:
                # Misuse of our own blocks, and of foreign memory: always wrong, whatever
                # the others do meanwhile.
                a, p, n, tag = rnd.choice(mine)
                # (Not p+8: that may start another thread's live block of the same class.)
                bad = [
                    (a.deallocate, p + 1, n),  # misaligned
                    (a.deallocate, p, n + 1000),  # size of another class
                    (pool.deallocate, foreign, 8),  # another pool's block
                    (a.view, p, n + 4096),
                ]
                fn, *args = rnd.choice(bad)
                with pytest.raises(AllocatorError):
                    fn(*args)
                ops["misuse"] += 1
            elif r < 0.93:
                # Export a block and let the others try to free it (BufferError), while
                # we hold the view; then withdraw it.
                a, p, n, tag = rnd.choice(mine)
                key = (id(a), p)
                lock = threading.Lock()
                with a.view(p, n) as mv:
                    with exported_lock:
                        exported[key] = (a, p, n, lock)
                    mv[0] = tag
                    for _ in range(3):
                        attack_one(rnd, exported, exported_lock, ops)
                    with exported_lock:
                        del exported[key]
                    with lock:  # wait out an attacker still at work on it
                        pass
                ops["view"] += 1
            else:
                attack_one(rnd, exported, exported_lock, ops)
                if rnd.random() < 0.2:
                    st = pool.stats()
                    assert len(st.free_list_lengths) == st.nfreelists
                    pool.free_list(rnd.randrange(st.nfreelists))
                    ops["stats"] += 1
        for a, p, n, tag in mine:
            with a.view(p, n) as mv:
                assert mv.tobytes() == bytes([tag]) * n
            a.deallocate(p, n)
            ops["deallocate"] += 1
        other.deallocate(foreign, 8)

    run_threads(worker)
    st = pool.stats()
    assert conserved(st), st
    assert (st.live_blocks, st.live_bytes, st.large_live_blocks, st.large_live_bytes) == (0,) * 4
    assert st.upstream_chunk_bytes > 0, "the threads should have exhausted the arena"
    assert pool.upstream.stats().live_bytes == st.upstream_chunk_bytes
    assert m.stats().live_blocks == 0
    ops = sum(per_thread, collections.Counter())
    assert ops["attack"] > 0, "no thread ever attacked an exported block"
    pool.release()
    assert pool.upstream.stats().live_bytes == 0
    OPS["allocators"] = sum(ops.values())
    print(f"\n8 threads, one pool and one MallocAllocator: {dict(ops)}")


def attack_one(rnd, exported, exported_lock, ops):
    """Tries to free (or move) a block another thread exports: BufferError, nothing else."""
    with exported_lock:
        if not exported:
            return
        a, p, n, lock = rnd.choice(list(exported.values()))
        if not lock.acquire(blocking=False):
            return
    try:
        with exported_lock:
            still = any(v[3] is lock for v in exported.values())
        if still:
            # The owner holds its view until it has removed the entry and taken `lock`.
            with pytest.raises(BufferError):
                if rnd.random() < 0.5:
                    a.deallocate(p, n)
                else:
                    a.reallocate(p, n, n + 200)
            ops["attack"] += 1
    finally:
        lock.release()


def test_threads_race_to_free_the_same_blocks():
    # Every round the main thread allocates blocks, then all 8 threads try to free all of
    # them at once: each block must be freed exactly once, every other attempt is an
    # AllocatorError, and nobody allocates from this pool meanwhile (so a freed address
    # cannot come back to life during the round).
    pool = PoolAllocator(arena_size=1 << 14)
    m = MallocAllocator()
    rounds = max(10, STEPS // 100)
    # One counter per thread: `counter[key] += 1` from several threads loses updates.
    freed = [collections.Counter() for _ in range(THREADS)]
    refused = [collections.Counter() for _ in range(THREADS)]
    blocks = []
    errors = []
    ready = threading.Barrier(THREADS + 1)
    done = threading.Barrier(THREADS + 1)

    def worker(k):
        rnd = random.Random(k)
        try:
            for _ in range(rounds):
                ready.wait()
                order = blocks[:]
                rnd.shuffle(order)
                for a, p, n in order:
                    try:
                        a.deallocate(p, n)
                        freed[k][(id(a), p)] += 1
                    except AllocatorError:
                        refused[k][(id(a), p)] += 1
                done.wait()
        except threading.BrokenBarrierError:
            pass
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
            ready.abort()
            done.abort()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    rnd = random.Random(99)
    total = 0
    try:
        for _ in range(rounds):
            blocks[:] = [
                (a, a.allocate(n), n)
                for a, n in ((rnd.choice([pool, pool, m]), rnd.randint(1, 400)) for _ in range(40))
            ]
            for c in freed + refused:
                c.clear()
            ready.wait()
            done.wait()
            for a, p, _ in blocks:
                key = (id(a), p)
                assert sum(c[key] for c in freed) == 1, "a block was freed twice, or never"
                assert sum(c[key] for c in refused) == THREADS - 1
            total += len(blocks) * THREADS
            st = pool.stats()
            assert conserved(st) and st.live_blocks == st.large_live_blocks == 0, st
    except threading.BrokenBarrierError:
        pass
    finally:
        ready.abort()
        done.abort()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors[0]
    assert m.stats().live_blocks == 0
    OPS["double frees"] = total


def test_oom_handler_of_one_thread_reenters_the_pool_while_others_use_it():
    # The upstream refuses more than 64 KiB; its handler frees blocks of the pool from a
    # reserve (re-entering the pool from inside a failing call), sometimes allocates from
    # it too, and gives up when the reserve is empty. Meanwhile the other threads use the
    # pool. Nothing may hang, leak or break the conservation equation.
    limit = 64 << 10
    up = MallocAllocator(limit=limit)
    pool = PoolAllocator(arena_size=1 << 13, upstream=up)
    reserve = []
    reserve_lock = threading.Lock()
    calls = collections.Counter()

    def handler():
        with reserve_lock:
            calls["handler"] += 1
            victim = reserve.pop() if reserve else None
        if victim is None:
            raise GaveUp
        pool.deallocate(*victim)  # re-entrant: this pool is inside a call that failed
        if calls["handler"] % 3 == 0:
            p = pool.allocate(24)  # and a re-entrant allocation, from the same pool
            pool.deallocate(p, 24)

    def refill_reserve(rnd):
        for _ in range(4):
            n = rnd.randint(200, 2000)
            try:
                p = pool.allocate(n)
            except (MemoryError, GaveUp):
                return
            with reserve_lock:
                reserve.append((p, n))

    up.set_malloc_handler(handler)
    per_thread = [collections.Counter() for _ in range(THREADS)]

    def worker(k, barrier):
        rnd = random.Random(k)
        ops = per_thread[k]
        mine = []
        barrier.wait()
        for _ in range(STEPS // 2):
            r = rnd.random()
            try:
                if r < 0.05:
                    refill_reserve(rnd)
                elif r < 0.55 or not mine:
                    n = rnd.choice([rnd.randint(1, 128), rnd.randint(129, 4000)])
                    mine.append((pool.allocate(n), n))
                    ops["allocate"] += 1
                else:
                    pool.deallocate(*mine.pop(rnd.randrange(len(mine))))
                    ops["deallocate"] += 1
            except (MemoryError, GaveUp) as e:
                ops[type(e).__name__] += 1
                # Give memory back so that the others can go on.
                for p, n in mine[: len(mine) // 2]:
                    pool.deallocate(p, n)
                del mine[: len(mine) // 2]
            except BaseException as e:
                no_runtime_error(e)
                raise
        for p, n in mine:
            pool.deallocate(p, n)

    run_threads(worker)
    ops = sum(per_thread, collections.Counter())
    up.set_malloc_handler(None)
    for p, n in reserve:
        pool.deallocate(p, n)
    st = pool.stats()
    assert conserved(st), st
    assert st.live_blocks == st.large_live_blocks == 0, st
    assert up.stats().live_bytes == st.upstream_chunk_bytes <= limit
    assert calls["handler"] > 0, "the limit was never reached"
    assert ops["GaveUp"] + ops["MemoryError"] > 0
    pool.release()
    assert up.stats().live_bytes == 0
    OPS["oom handler"] = sum(ops.values()) + calls["handler"]
    print(f"\n8 threads and a re-entrant handler: {dict(ops)}, {calls['handler']} handler calls")


# --------------------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["int64", "object"])
@pytest.mark.parametrize("kind", ["Vector", "List"])
def test_eight_threads_push_and_pop_on_one_container(kind, dtype):
    # Every value pushed is unique (thread, step): at the end, what was popped plus what
    # is left must be exactly what was pushed — nothing lost, nothing duplicated. Reads,
    # searches and sorts (which run Python code in the middle of the container's work
    # for dtype="object") interleave with the pushes and pops.
    cls = getattr(stlalloc, kind)
    pool = PoolAllocator(arena_size=1 << 14, upstream=MallocAllocator())
    c = cls(dtype=dtype, allocator=pool)
    pushed = [[] for _ in range(THREADS)]
    popped = [[] for _ in range(THREADS)]
    per_thread = [collections.Counter() for _ in range(THREADS)]

    def worker(k, barrier):
        rnd = random.Random(k)
        ops = per_thread[k]
        barrier.wait()
        for step in range(STEPS):
            r = rnd.random()
            x = k * 10**6 + step
            if len(c) > 500:
                r = 0.6  # a pop: keeps the searches and sorts below O(500)
            try:
                if r < 0.35:
                    c.append(x)
                    pushed[k].append(x)
                elif r < 0.45:
                    xs = [-(x * 100 + j) - 1 for j in range(rnd.randint(1, 8))]  # unique
                    c.extend(xs)
                    pushed[k].extend(xs)
                elif r < 0.5:
                    c.insert(0, x)
                    pushed[k].append(x)
                elif r < 0.8:
                    popped[k].append(c.pop())
                elif r < 0.85:
                    with comparisons_may_stop(kind):
                        _ = x in c
                    ops["search"] += 1
                elif r < 0.9:
                    try:
                        for v in c:
                            assert isinstance(v, int)
                    except RuntimeError as e:
                        # As collections.deque does, a List refuses to go on iterating
                        # after a structural change (a Vector reads afresh, as list).
                        # That RuntimeError is by design, unlike a borrow conflict.
                        assert kind == "List" and "mutated during iteration" in str(e), e
                        ops["iteration stopped"] += 1
                    ops["iterate"] += 1
                elif r < 0.93:
                    # A sort whose key runs Python: other threads change the container
                    # meanwhile, which it must detect (ValueError), not crash on.
                    try:
                        c.sort(key=lambda v: -v)
                    except ValueError as e:
                        assert "modified" in str(e), e
                    ops["sort"] += 1
                elif r < 0.96:
                    n = len(c)
                    if n:
                        try:
                            _ = c[rnd.randrange(n)]
                        except IndexError:
                            pass  # it shrank meanwhile
                    ops["index"] += 1
                else:
                    with comparisons_may_stop(kind):
                        _ = repr(c)[:10], c.count(x)
                    ops["read"] += 1
                ops["op"] += 1
            except IndexError:
                ops["pop on empty"] += 1
            except BaseException as e:
                no_runtime_error(e)
                raise

    run_threads(worker)
    ops = sum(per_thread, collections.Counter())
    left = list(c)
    everything = sorted(v for vs in pushed for v in vs)
    assert sorted([v for vs in popped for v in vs] + left) == everything, (
        "elements were lost or duplicated"
    )
    assert len(c) == len(everything) - sum(map(len, popped))
    st = pool.stats()
    assert conserved(st), st
    c = left = None  # (the workers' closure holds c: rebind it rather than del)
    gc.collect()
    st = pool.stats()
    assert st.live_blocks == st.large_live_blocks == 0, st
    OPS[f"{kind}-{dtype}"] = sum(ops.values())
    print(f"\n8 threads on one {kind}({dtype}): {dict(ops)}")


def test_threads_splice_lists_between_each_other():
    # Lists of one allocator move their nodes between each other in O(1) (splice) while
    # others push onto them: the total number of elements is invariant.
    pool = PoolAllocator(arena_size=1 << 14)
    lists = [stlalloc.List(range(10), dtype="int64", allocator=pool) for _ in range(4)]
    pushed = [0] * THREADS

    def worker(k, barrier):
        rnd = random.Random(k)
        barrier.wait()
        for _ in range(STEPS // 2):
            a, b = rnd.sample(lists, 2)
            try:
                if rnd.random() < 0.3:
                    a.splice(b)
                else:
                    a.append(k)
                    pushed[k] += 1  # only thread k writes pushed[k]
            except BaseException as e:
                no_runtime_error(e)
                raise

    run_threads(worker)
    assert sum(len(x) for x in lists) == 40 + sum(pushed)
    assert conserved(pool.stats())
    OPS["splice"] = sum(pushed)


def test_report_operations():
    # Runs last in this file (pytest keeps file order): the figure for docs/reliability.md.
    print(f"\nthread-stress operations: {sum(OPS.values())} {dict(OPS)}")
