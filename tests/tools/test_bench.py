"""``python -m stlalloc bench``: every row of SPEC §7 is measured and reported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from stlalloc import bench
from stlalloc._native import _bench

NATIVE = {
    ("native", w, a)
    for w in ("pair8", "pair24", "pair64", "pair128", "list", "vec16", "churn", "batch32")
    + ("listmem",)
    for a in ("malloc", "pool", "shared_pool")
}
PYTHON = (
    {
        ("python", "py_pair24", a)
        for a in ("PoolAllocator", "MallocAllocator", "bytearray(24)", "PyMem_Malloc+Free (ctypes)")
    }
    | {
        ("python", "py_push_back", a)
        for a in ("Vector.push_back", "array('q').append", "list.append")
    }
    | {("python", "py_list_push_back", a) for a in ("List.push_back", "deque.append")}
)


def test_quick_json_has_every_row_with_positive_figures():
    # --scale keeps the test short; --quick alone is what users run.
    out = subprocess.run(
        [sys.executable, "-m", "stlalloc", "bench", "--quick", "--json"]
        + ["--scale", "0.002", "--runs", "2"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert {(r["lang"], r["workload"], r["allocator"]) for r in rows} == NATIVE | PYTHON
    for r in rows:
        assert r["median"] > 0 and len(r["runs"]) == 2, r
        assert all(v > 0 for v in r["runs"]), r
        assert r["iterations"] > 0 and r["ratio"] > 0, r
    base = {r["allocator"]: r for r in rows if r["workload"] == "pair24" and r["lang"] == "native"}
    assert base["malloc"]["ratio"] == 1.0 and base["malloc"]["baseline"] == "malloc"
    assert "[1/" in out.stderr, "a progress display on stderr"


def test_table_names_every_row_and_its_ratio(capsys):
    assert bench.main(["--scale", "0.001", "--runs", "1"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("# stlalloc bench:")
    for lang, workload, allocator in NATIVE:
        assert any(
            line.startswith(f"{lang}:{workload} ") and f" {allocator} " in line
            for line in table.splitlines()
        ), (workload, allocator)
    assert "1.00x  malloc" in table


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    assert bench.main(["--plot", "out.png"]) == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "stlalloc[plot]" in err


def test_plot_draws_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    assert bench.main(["--scale", "0.001", "--runs", "1", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_native_workloads_do_the_same_work_on_every_allocator():
    for workload in ("pair24", "list", "vec16", "churn", "batch32"):
        sums = {
            a: _bench(workload, a, 0.001)["checksum"] for a in ("malloc", "pool", "shared_pool")
        }
        assert len(set(sums.values())) == 1, (workload, sums)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("pair24", "tcmalloc"), "unknown allocator"),
        (("pair25", "pool"), "unknown workload"),
        (("pair24_2t", "malloc"), "unknown workload"),
        (("pair24", "pool", 0.0), "scale"),
    ],
)
def test_native_bench_rejects_what_it_cannot_run(args, message):
    with pytest.raises(ValueError, match=message):
        _bench(*args)
