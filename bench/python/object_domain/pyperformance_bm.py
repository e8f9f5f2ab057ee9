"""One pyperformance benchmark, its function called directly with a small loop count:

    python pyperformance_bm.py NAME LOOPS

pyperf's runner spawns a process per value and calibrates loops, far too slow for a
machine shared by several builds; here the whole process is what ``stlalloc compare``
measures. The benchmark code is the one the ``pyperformance`` package ships.
"""

import importlib
import sys
from pathlib import Path

import pyperformance

CALLS = {
    "richards": lambda m, loops: m.Richards().run(loops),
    "deltablue": lambda m, loops: [m.delta_blue(100) for _ in range(loops)],
    "go": lambda m, loops: [m.versus_cpu() for _ in range(loops)],
    "raytrace": lambda m, loops: m.bench_raytrace(loops, m.DEFAULT_WIDTH, m.DEFAULT_HEIGHT, None),
    "deepcopy": lambda m, loops: m.benchmark(loops),
    "nbody": lambda m, loops: m.bench_nbody(loops, "sun", 20000),
}

if __name__ == "__main__":
    name, loops = sys.argv[1], int(sys.argv[2])
    where = Path(pyperformance.__file__).parent / "data-files" / "benchmarks" / f"bm_{name}"
    sys.path.insert(0, str(where))
    CALLS[name](importlib.import_module("run_benchmark"), loops)
