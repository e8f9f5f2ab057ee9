"""Random misuse programs, each in a child process (issue 6, SPEC §3-§5).

A program mixes valid and invalid calls on every public type: MallocAllocators (with and
without a limit), PoolAllocators over small arenas (so exhaustion, the free-list scan and
upstream chunks run) with limited upstreams and out-of-memory handlers that free, allocate
or give up, debug pools (write-after-free and cookie faults provoked on purpose), views
kept while their blocks are freed or moved, release(), equality, and — once they exist in
the package — Vectors and Lists over small pools whose growth fails midway.

Every call must succeed or raise one of the documented exceptions; a misuse must leave
every allocator exactly as it was; after every step SPEC §3's conservation equation holds
for every pool and the statistics match a model of the live blocks; block contents are
checked so overlapping or corrupted blocks are caught; at the end everything is freed and
every allocator shows 0 live. Children run the program because a broken allocator
corrupts the process that runs it: the parent asserts that each child exited with 0 and
was not killed by a signal.

Run one program by hand (a failure prints the exact command, with address randomisation
off so that it replays):
    PYTHONPATH=tests python tests/misuse/test_misuse_fuzz.py SEED [STEPS]
Longer runs: STLALLOC_FUZZ_SECONDS=600 pytest -s tests/misuse/test_misuse_fuzz.py
"""

from __future__ import annotations

import collections
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from misuse_fuzz.model import container_kinds
from misuse_fuzz.world import World


def child_main(seed, steps):
    w = World(seed, steps)
    try:
        w.run()
    except BaseException:
        traceback.print_exc()
        print(f"seed {seed}, step {getattr(w, 'step', '?')}; last calls:", file=sys.stderr)
        for line in w.log:
            print("   ", line, file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "seed": seed,
                "steps": steps,
                **w.counts,
                "raised": dict(w.raised),
                "containers": container_kinds(),
            }
        )
    )
    return 0


# --------------------------------------------------------------------------------------
# The parent: pytest
# --------------------------------------------------------------------------------------

TESTS = Path(__file__).resolve().parents[1]
STEPS = int(os.environ.get("STLALLOC_FUZZ_STEPS", "8000"))
CHILDREN = int(os.environ.get("STLALLOC_FUZZ_CHILDREN", "8"))
SECONDS = float(os.environ.get("STLALLOC_FUZZ_SECONDS", "0"))
BASE_SEED = int(os.environ.get("STLALLOC_FUZZ_SEED", "1"))


def child_command(seed):
    """The child's command line: with address randomisation off and a fixed hash seed
    where possible, so that a failing seed replays the same way."""
    cmd = [sys.executable, "-X", "faulthandler", __file__, str(seed), str(STEPS)]
    setarch = shutil.which("setarch")
    if setarch and subprocess.run([setarch, platform.machine(), "-R", "true"]).returncode == 0:
        cmd = [setarch, platform.machine(), "-R", *cmd]
    return cmd


def run_child(seed):
    cmd = child_command(seed)
    # The child imports the helpers pytest puts on the path (stats_fields, in tests/).
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=path)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    return seed, cmd, proc


def test_random_misuse_programs_survive_in_child_processes():
    # Two children at a time (this machine's cores); with STLALLOC_FUZZ_SECONDS, new seeds
    # keep starting until the time is up.
    deadline = time.monotonic() + SECONDS
    results = []
    seeds = iter(range(BASE_SEED, BASE_SEED + 10**9))
    with ThreadPoolExecutor(max_workers=2) as ex:
        while True:
            batch = [next(seeds) for _ in range(CHILDREN if not results else 2)]
            results += list(ex.map(run_child, batch))
            if time.monotonic() >= deadline:
                break
    totals = collections.Counter()
    raised = collections.Counter()
    for seed, cmd, proc in results:
        how = (
            f"killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exit status {proc.returncode}"
        )
        assert proc.returncode == 0, (
            f"misuse program {seed}: {how}\n"
            f"reproduce: PYTHONHASHSEED=0 PYTHONPATH={TESTS} {' '.join(cmd)}\n{proc.stderr[-4000:]}"
        )
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        totals.update({k: v for k, v in report.items() if isinstance(v, int) and k != "seed"})
        totals["programs"] += 1
        raised.update(report["raised"])
    print(
        f"\nmisuse fuzz: {totals['programs']} programs of {STEPS} steps, {totals['calls']} "
        f"calls, {totals['invalid']} invalid, {totals['handler_calls']} handler calls, "
        f"{totals['chunk_requests']} chunk requests; containers: "
        f"{container_kinds() or 'none yet'}; raised: {dict(sorted(raised.items()))}"
    )
    assert totals["programs"] >= CHILDREN
    # The programs must reach what they are for: misuse, exhaustion and handlers.
    assert totals["invalid"] > totals["programs"] * STEPS // 10
    assert raised["MemoryError"] > 0 and raised["BufferError"] > 0
    assert totals["handler_calls"] > 0 and totals["upstream_chunk_checks"] > 0


if __name__ == "__main__":
    sys.exit(child_main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else STEPS))
