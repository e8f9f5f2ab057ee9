"""Containers against Python code that re-enters them (issue #11): allocators that, inside
``allocate`` or ``deallocate``, read the container they serve, change it, raise or return
garbage; elements whose ``__eq__``, ``__lt__`` or ``__del__``, and key functions, that use
the container they are in. Every operation of Vector and List, each dtype, must work or raise
an ``Exception``: no hang, no panic, no leaked block, the container consistent afterwards.

Each behaviour runs every operation in one child process (``reentrancy_child.py``) with a
timeout, so that a hang fails the test instead of freezing the run.
"""

import subprocess
import sys
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("reentrancy_child.py")
GARBAGE = ["zero", "foreign", "misaligned", "small", "nonint"]
BEHAVIOURS = [("allocate", w) for w in ["read", "mutate", "raise", *GARBAGE]] + [
    ("deallocate", w) for w in ["read", "mutate", "raise"]
]


def child(*args: str) -> str:
    r = subprocess.run(
        [sys.executable, str(CHILD), *args], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, f"child {args} failed:\n{r.stdout}\n{r.stderr[-4000:]}"
    return r.stdout


@pytest.mark.parametrize(("where", "what"), BEHAVIOURS)
def test_every_container_operation_survives_an_allocator_that_misbehaves(where, what):
    out = child(where, what)
    assert "misbehaved" in out
    if what == "raise" and where == "allocate":
        assert "RuntimeError" in out, "the allocator's exception reaches the caller"
    if what in GARBAGE:
        assert "AllocatorError" in out, "garbage addresses are refused"
    if where == "deallocate" and what == "raise":
        assert "unraisable" in out and " 0 unraisable" not in out


@pytest.mark.parametrize("kind", ["Vector", "List"])
def test_comparisons_keys_and_finalizers_may_use_their_container(kind):
    out = child("callbacks", kind)
    assert "ok" in out and "ValueError" in out, "a sort sees the container change under it"
