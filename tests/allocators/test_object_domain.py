"""The SGI pool as CPython's object allocator: ``python -m stlalloc run``/``compare`` and
``stlalloc.install()``/``uninstall()``. Installing is for the whole process and for good,
so every test runs its interpreter in a child."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ALLOCATORS = ("sgi", "pymalloc", "malloc")
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
pytestmark = pytest.mark.skipif(FREE_THREADED, reason="the object domain stays mimalloc")

DICT_HEAVY = """
import sys
rows = [{"id": i, "name": f"n{i}", "tags": {"a": i % 7, "b": str(i)}} for i in range(20000)]
index = {r["name"]: r for r in rows}
total = sum(r["tags"]["a"] for r in index.values())
print(total, len(sys.argv) - 1)
"""


def stlalloc(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stlalloc", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )


def child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("allocator", ALLOCATORS)
def test_stdin_stdout_and_a_nonzero_exit_code_pass_through(allocator: str) -> None:
    code = "import sys; print(sys.stdin.read().upper(), sys.argv[1:]); sys.exit(3)"
    r = stlalloc("run", "--allocator", allocator, "-c", code, "x", "-h", input="hello")
    assert r.returncode == 3, r.stderr
    assert r.stdout == "HELLO ['x', '-h']\n"
    assert f"allocator={allocator} exit=3" in r.stderr


@pytest.mark.parametrize("allocator", ALLOCATORS)
def test_a_script_with_arguments_and_its_traceback(allocator: str, tmp_path: Path) -> None:
    script = tmp_path / "prog.py"
    script.write_text(
        "import sys, helper\nprint(helper.twice(sys.argv[1:]))\nraise KeyError('boom')\n"
    )
    (tmp_path / "helper.py").write_text("def twice(x):\n    return x * 2\n")
    r = stlalloc("run", "--allocator", allocator, str(script), "a", "--b")
    assert r.returncode == 1
    assert r.stdout == "['a', '--b', 'a', '--b']\n"
    trace = r.stderr.split("stlalloc run:")[0]
    assert "KeyError: 'boom'" in trace
    assert "prog.py" in trace and "runpy" not in trace and "_objdomain" not in trace


@pytest.mark.parametrize("allocator", ALLOCATORS)
def test_a_module(allocator: str) -> None:
    r = stlalloc(
        "run",
        "--allocator",
        allocator,
        "-m",
        "json.tool",
        "--sort-keys",
        input='{"b": 1, "a": [2]}',
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"a": [2], "b": 1}
    assert r.stdout.index('"a"') < r.stdout.index('"b"')


def test_the_pool_serves_most_requests_of_a_dict_heavy_program(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    r = stlalloc("run", "--report", str(report), "-c", DICT_HEAVY, "arg")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "59997 1\n"
    rep = json.loads(report.read_text())
    assert rep["allocator"] == "sgi" and rep["exit_code"] == 0
    assert rep["seconds"] > 0 and rep["cpu_seconds"] > 0 and rep["peak_rss_bytes"] > 10 * 2**20
    assert rep["page_faults"]["minor"] > 0
    pool = rep["pool"]
    assert pool["pool_share"] >= 0.5, pool
    assert pool["allocations"] > 60_000 and pool["deallocations"] > 0
    assert pool["align"] == 16 and len(pool["free_list_lengths"]) == 512 // 16
    assert pool["heap_size"] > 0 and pool["live_blocks"] > 0
    assert pool["syscalls"]["mmap"] >= 1
    assert rep["wrapped"] == pool["wrapped_calls"] and sum(rep["wrapped"].values()) > 0
    # SGI's accounting, from the report alone.
    free = sum(n * (i + 1) * 16 for i, n in enumerate(pool["free_list_lengths"]))
    assert pool["heap_size"] == pool["live_bytes"] + free + pool["chunk_bytes_left"]


def test_align_8_and_sgi_max_bytes_still_run_programs(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    code = (
        "import json, decimal as d; "
        "print(json.loads(json.dumps({'x': [1.5] * 9})), d.Decimal(1) / 7)"
    )
    r = stlalloc("run", "--align", "8", "--max-bytes", "128", "--report", str(report), "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("{'x': [1.5, ")
    pool = json.loads(report.read_text())["pool"]
    assert (pool["align"], pool["max_bytes"], len(pool["free_list_lengths"])) == (8, 128, 16)
    assert pool["allocations"] > 0


def test_bad_options_are_refused() -> None:
    assert stlalloc("run").returncode == 2
    assert stlalloc("run", "--allocator", "tcmalloc", "-c", "pass").returncode == 2
    assert stlalloc("run", "--max-bytes", "100", "-c", "pass").returncode == 2
    assert stlalloc("compare", "--repeat", "0", "-c", "pass").returncode == 2


def test_install_then_uninstall_with_pool_blocks_still_live() -> None:
    r = child(
        """
        import gc, stlalloc
        before = [{"k": i} for i in range(1000)]        # pymalloc's
        assert stlalloc.object_domain_stats() is None
        stlalloc.install()
        ours = [{"k": i} for i in range(1000)]          # the pool's
        s = stlalloc.object_domain_stats()
        assert s["installed"] and s["allocations"] >= 1000, s
        del before                                       # freed to pymalloc, by address
        stlalloc.uninstall()
        mid = stlalloc.object_domain_stats()
        later = [{"k": i} for i in range(1000)]          # pymalloc's again
        after_new = stlalloc.object_domain_stats()
        assert not after_new["installed"]
        assert after_new["allocations"] == mid["allocations"], (mid, after_new)
        live = after_new["live_blocks"]
        del ours
        gc.collect()
        end = stlalloc.object_domain_stats()
        assert end["live_blocks"] <= live - 1000, (live, end)  # back to the pool
        assert end["deallocations"] >= mid["deallocations"] + 1000
        stlalloc.install()                                # the same pool again
        again = [str(i) for i in range(100)]
        assert stlalloc.object_domain_stats()["allocations"] > end["allocations"]
        try:
            stlalloc.install(max_bytes=128)
        except ValueError as e:
            print("refused:", e)
        stlalloc.uninstall()
        stlalloc.uninstall()
        print("ok", len(later), len(again))
        """
    )
    assert r.returncode == 0, r.stderr
    assert "refused: the object domain's pool exists already with align=16" in r.stdout
    assert r.stdout.endswith("ok 1000 100\n")


def test_bad_install_arguments_raise_and_install_nothing() -> None:
    r = child(
        """
        import tracemalloc, stlalloc
        for kwargs, exc in [({"align": 12}, ValueError), ({"max_bytes": 100}, ValueError),
                            ({"arena_size": 1 << 50}, ValueError), ({"align": -1}, OverflowError),
                            ({"max_bytes": "x"}, TypeError)]:
            try:
                stlalloc.install(**kwargs)
            except exc as e:
                print(type(e).__name__, e)
            else:
                raise AssertionError(kwargs)
        tracemalloc.start()
        try:
            stlalloc.install()
        except RuntimeError as e:
            print("RuntimeError", e)
        tracemalloc.stop()
        assert stlalloc.object_domain_stats() is None
        stlalloc.install()
        tracemalloc.start()                      # tracing over the pool is fine
        x = [dict(a=i) for i in range(100)]
        tracemalloc.stop()
        del x
        print("ok", stlalloc.object_domain_stats()["installed"])
        """
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "ValueError", "ValueError", "ValueError", "OverflowError", "TypeError", "RuntimeError", "ok"
    ]  # fmt: skip
    assert "tracemalloc is tracing" in lines[5]
    assert lines[-1] == "ok True"


def test_compare_prints_medians_for_every_allocator(tmp_path: Path) -> None:
    plot = tmp_path / "cmp.png"
    args = ["compare", "--repeat", "1", "-c", "d = {i: str(i) for i in range(5000)}"]
    try:
        import matplotlib  # noqa: F401

        args[1:1] = ["--plot", str(plot)]
    except ImportError:
        pass
    r = stlalloc(*args)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[1:]}
    assert set(rows) == set(ALLOCATORS)
    assert rows["pymalloc"][4] == "1.00"
    assert rows["sgi"][7].endswith("%") and rows["malloc"][7] == "-"
    if "--plot" in args:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_fails_when_exit_codes_differ() -> None:
    code = "import os, sys; sys.exit(int(os.environ.get('PYTHONMALLOC') == 'malloc'))"
    r = stlalloc("compare", "--repeat", "1", "-c", code)
    assert r.returncode == 1
    assert "exit codes differ" in r.stderr


def test_compare_gives_every_run_the_same_stdin(tmp_path: Path) -> None:
    data = tmp_path / "in.txt"
    data.write_text("x" * 1000)
    code = "import sys; sys.exit(0 if sys.stdin.read() == 'x' * 1000 else 5)"
    r = stlalloc("compare", "--repeat", "2", "--stdin", str(data), "-c", code)
    assert r.returncode == 0, r.stdout + r.stderr
    # Without --stdin each run reads an empty stdin, not the caller's: all exit 5 alike.
    empty = stlalloc("compare", "--repeat", "1", "-c", code, input="x" * 1000)
    assert empty.returncode == 0, empty.stderr
    assert [line.split()[-1] for line in empty.stdout.splitlines()[1:]] == ["5", "5", "5"]
