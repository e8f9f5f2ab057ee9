"""Running a measurement of ``_measure.py`` in a fresh child interpreter."""

from __future__ import annotations

import functools
import json
import marshal
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from typing import Any

from stlalloc.probe._measure import BEGIN_MARK, END_MARK

_MEMORY_SYSCALLS = frozenset({"brk", "mmap", "munmap", "mremap", "mprotect", "madvise"})
_CHILD_TIMEOUT = 120
_MEASURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_measure.py")

# The child's whole program: run the bytecode of _measure.py, read from stdin, as __main__
# (so its own `if __name__ == "__main__"` runs the measurement named in sys.argv[1:]).
# -I -S: no site, no user paths, no PYTHON* variables: a small, predictable heap.
_CHILD_BOOT = (
    "import marshal, sys\nexec(marshal.loads(sys.stdin.buffer.read()), {'__name__': '__main__'})\n"
)


def _child_env() -> dict[str, str]:
    # Tunables set by the user would turn glibc's dynamic threshold off.
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MALLOC_") and key != "GLIBC_TUNABLES"
    }


@functools.cache
def _child_bytecode() -> bytes:
    """The child's module, compiled here and marshalled for the child.

    Compiling it in the child would malloc and free blocks above 128 KiB and so raise the
    mmap threshold before the child measures it.
    """
    with open(_MEASURE, encoding="utf-8") as source:
        return marshal.dumps(compile(source.read(), _MEASURE, "exec", dont_inherit=True))


def _run(command: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        env=_child_env(),
        timeout=_CHILD_TIMEOUT,
        check=False,
    )


def run_traced(
    command: list[str], syscalls: str, stdin: bytes = b""
) -> tuple[bytes, list[str]] | None:
    """Run ``command`` under strace: its stdout and the trace lines, or None if untraceable."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    with tempfile.TemporaryDirectory(prefix="stlalloc-probe-") as tmp:
        log = os.path.join(tmp, "trace")
        proc = _run([strace, "-f", "-qq", "-e", f"trace={syscalls}", "-o", log, *command], stdin)
        # strace fails where ptrace is not allowed (some containers): then go untraced.
        if proc.returncode != 0 or not os.path.exists(log):
            return None
        with open(log, encoding="utf-8", errors="replace") as trace:
            return proc.stdout, trace.read().splitlines()


def run_child(
    name: str, params: dict[str, Any] | None = None, trace: str | None = None
) -> tuple[dict[str, Any], list[str] | None]:
    """Measure ``name`` in a fresh child: its figures, and strace's lines if ``trace`` asks."""
    command = [sys.executable, "-I", "-S", "-c", _CHILD_BOOT, name, json.dumps(params or {})]
    traced = run_traced(command, trace, _child_bytecode()) if trace else None
    if traced is not None:
        stdout, lines = traced
        return json.loads(stdout), lines
    proc = _run(command, _child_bytecode())
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"probe child {name!r} failed:\n{stderr}")
    return json.loads(proc.stdout), None


def memory_syscalls_between_marks(lines: Iterable[str]) -> int | None:
    """Memory system calls logged between the begin and end marks; None if a mark is missing."""
    inside, count = False, 0
    for line in lines:
        if BEGIN_MARK in line:
            inside = True
        elif END_MARK in line:
            return count if inside else None
        elif inside:
            match = re.match(r"(?:\d+\s+)?(\w+)\(", line)
            count += bool(match and match.group(1) in _MEMORY_SYSCALLS)
    return None


def first_break_move(lines: Iterable[str]) -> int | None:
    """The first brk(2) that moved the break, as a distance from where it started."""
    start = None
    for line in lines:
        match = re.search(r"brk\((NULL|0x[0-9a-f]+)\)\s*=\s*(0x[0-9a-f]+)", line)
        if match is None:
            continue
        argument, result = match.group(1), int(match.group(2), 16)
        if argument == "NULL":
            start = result
        elif start is not None:
            return result - start
    return None
