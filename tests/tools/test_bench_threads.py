"""bench/python/threads.py runs every scenario and reports each figure and ratio (not timed)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "python" / "threads.py"


def test_threads_bench_reports_every_scenario():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--runs", "1", "--pairs", "512", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    got = json.loads(out)
    names = {f"{kind}-{n}" for kind in ("shared", "own", "bytearray") for n in (1, 2, 4, 8)}
    assert set(got["mpairs_per_s"]) == names | {"main-first-2", "cross-2", "same-2"}
    assert all(v > 0 for v in got["mpairs_per_s"].values())
    assert got["ratios"]["main-first-2 / shared-2"] > 0
    assert got["runs"] == 1 and got["pairs_per_thread"] == 512


def test_threads_bench_refuses_bad_arguments():
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--pairs", "1"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and "--pairs" in r.stderr
