"""Vector.push_back vs array.array('q').append, and Vector(range(n)) vs array('q', range(n)).

Prints the median of 5 runs of each and the ratios the project promises to keep (push_back
at most 1.5x append, construction at most 1.2x). One process, same loop shape for both.

    python bench/python/vector_ratios.py [n]
"""

import array
import statistics
import sys
import time

from stlalloc import Vector

RUNS = 5


def median_seconds(fn) -> float:
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def appends(make, n: int):
    def run():
        c = make()
        push = c.push_back if hasattr(c, "push_back") else c.append
        for i in range(n):
            push(i)

    return run


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    rows = [
        (
            "push_back vs array.append",
            appends(lambda: Vector(dtype="int64"), n),
            appends(lambda: array.array("q"), n),
            1.5,
        ),
        (
            "Vector(range) vs array(range)",
            lambda: Vector(range(n), dtype="int64"),
            lambda: array.array("q", range(n)),
            1.2,
        ),
    ]
    for name, ours, theirs, limit in rows:
        a, b = median_seconds(ours), median_seconds(theirs)
        verdict = "ok" if a / b <= limit else "MISSED"
        print(
            f"{name:32} {a * 1e9 / n:7.1f} ns vs {b * 1e9 / n:7.1f} ns per element: "
            f"ratio {a / b:.2f} (limit {limit}) {verdict}"
        )


if __name__ == "__main__":
    main()
