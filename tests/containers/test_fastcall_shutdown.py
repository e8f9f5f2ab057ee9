"""Fast calls that raise while the interpreter finalizes (a `__del__` run at shutdown).

A fast entry point is not attached in PyO3's eyes, and while the interpreter finalizes
PyO3 refuses to attach a thread (`Py_IsInitialized()` is already 0; 3.13 also checks
`Py_IsFinalizing()`): raising the error through `Python::attach` panicked, and raising
that panic aborted the process; a Python allocator reached from a fast call panicked the
same way. The child keeps a finalizer in its module globals, which CPython clears during
finalization; every fast path it calls must do what it does before shutdown, and the
process exit 0.
"""

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import os
    from stlalloc import List, MallocAllocator, PoolAllocator, Vector

    class PyAlloc:
        def __init__(self):
            self.m = MallocAllocator()

        def allocate(self, n):
            return self.m.allocate(n)

        def deallocate(self, p, n):
            self.m.deallocate(p, n)

    def grow(c):
        for i in range(100):
            c.append(i)
        return len(c)

    class AtShutdown:
        def __init__(self):
            self.write = os.write
            self.calls = [
                lambda: Vector(dtype="int64").pop(),
                lambda: Vector([1], dtype="int64").pop(5),
                lambda: Vector([1], dtype="int64")[7],
                lambda: Vector([1], dtype="int64").__setitem__(0, "x"),
                lambda: Vector(dtype="int64").push_back("x"),
                lambda: List(dtype="float64").pop_back(),
                lambda: List(dtype="float64").popleft(),
                lambda: List(dtype="float64").append("x"),
                lambda: List([1.0], dtype="float64")[3],
                lambda: PoolAllocator().deallocate(16, 8),
                lambda: grow(Vector(dtype="int64", allocator=PyAlloc())),
                lambda: grow(List(dtype="int64", allocator=PyAlloc())),
            ]

        def __del__(self):
            names = []
            for call in self.calls:
                try:
                    names.append(f"ok{call()}")
                except Exception as e:
                    names.append(type(e).__name__)
            self.write(1, (" ".join(names) + "\\n").encode())

    keep = AtShutdown()
    """
)


def test_fast_calls_raise_normally_during_finalization():
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [
        "IndexError",
        "IndexError",
        "IndexError",
        "TypeError",
        "TypeError",
        "IndexError",
        "IndexError",
        "TypeError",
        "IndexError",
        "AllocatorError",
        "ok100",
        "ok100",
    ], r.stderr
