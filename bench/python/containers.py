"""The containers' hot methods from Python against the standard library's (issue #14).

Each row times one call shape with ``timeit`` on a container that grows (or shrinks)
through the run, ours and the reference interleaved in one process, and prints medians
per call and their ratio against the target where the issue sets one:

- ``List.push_back`` at most 1.3x ``deque.append`` (both holding ints as objects);
- ``Vector.push_back`` (int64) at most 1.0x ``array('q').append``.

The other rows (pop, popleft, indexing, len) have no target; they show where the rest stand.
``List[0]`` and the ``(object)`` rows index containers of dtype object, against ``deque`` and
``list``.

    python bench/python/containers.py [calls per run] [runs]
"""

import statistics
import sys
import timeit

SETUP = "from array import array; from collections import deque; from stlalloc import List, Vector"

# (name, our statement and setup, the reference's, target ratio or None)
ROWS = [
    (
        "List.push_back / deque.append",
        ("push(1)", "c = List(); push = c.push_back"),
        ("push(1)", "c = deque(); push = c.append"),
        1.3,
    ),
    (
        "List.appendleft / deque.appendleft",
        ("push(1)", "c = List(); push = c.appendleft"),
        ("push(1)", "c = deque(); push = c.appendleft"),
        None,
    ),
    (
        "List.pop / deque.pop",
        ("pop()", "c = List(range(N)); pop = c.pop"),
        ("pop()", "c = deque(range(N)); pop = c.pop"),
        None,
    ),
    (
        "List.popleft / deque.popleft",
        ("pop()", "c = List(range(N)); pop = c.popleft"),
        ("pop()", "c = deque(range(N)); pop = c.popleft"),
        None,
    ),
    (
        "List[0] / deque[0]",
        ("c[0]", "c = List(range(10))"),
        ("c[0]", "c = deque(range(10))"),
        None,
    ),
    (
        "List[0] = x / deque[0] = x",
        ("c[0] = x", "c = List(range(10)); x = object()"),
        ("c[0] = x", "c = deque(range(10)); x = object()"),
        None,
    ),
    (
        "len(List) / len(deque)",
        ("len(c)", "c = List(range(10))"),
        ("len(c)", "c = deque(range(10))"),
        None,
    ),
    (
        "Vector.push_back / array.append",
        ("push(1)", "c = Vector(dtype='int64'); push = c.push_back"),
        ("push(1)", "c = array('q'); push = c.append"),
        1.0,
    ),
    (
        "Vector.pop / array.pop",
        ("pop()", "c = Vector(range(N), dtype='int64'); pop = c.pop"),
        ("pop()", "c = array('q', range(N)); pop = c.pop"),
        None,
    ),
    (
        "Vector[5] / array[5]",
        ("c[5]", "c = Vector(range(10), dtype='int64')"),
        ("c[5]", "c = array('q', range(10))"),
        None,
    ),
    (
        "Vector[5] = 1 / array[5] = 1",
        ("c[5] = 1", "c = Vector(range(10), dtype='int64')"),
        ("c[5] = 1", "c = array('q', range(10))"),
        None,
    ),
    (
        "Vector[5] / list[5] (object)",
        ("c[5]", "c = Vector(range(10))"),
        ("c[5]", "c = list(range(10))"),
        None,
    ),
    (
        "Vector[5] = x / list[5] = x (object)",
        ("c[5] = x", "c = Vector(range(10)); x = object()"),
        ("c[5] = x", "c = list(range(10)); x = object()"),
        None,
    ),
    (
        "len(Vector) / len(array)",
        ("len(c)", "c = Vector(range(10), dtype='int64')"),
        ("len(c)", "c = array('q', range(10))"),
        None,
    ),
]


def per_call(stmt: str, setup: str, n: int) -> float:
    setup = f"{SETUP}; N = {n}; {setup}"
    return timeit.Timer(stmt, setup).timeit(number=n) / n


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    for name, ours, theirs, target in ROWS:
        a, b = [], []
        for _ in range(runs):  # interleaved, so that drift affects both alike
            a.append(per_call(*ours, n))
            b.append(per_call(*theirs, n))
        ma, mb = statistics.median(a), statistics.median(b)
        ratio = ma / mb
        verdict = (
            "" if target is None else f" (target {target}: {'ok' if ratio <= target else 'MISSED'})"
        )
        print(f"{name:36} {ma * 1e9:6.1f} ns vs {mb * 1e9:6.1f} ns: {ratio:.2f}x{verdict}")


if __name__ == "__main__":
    main()
