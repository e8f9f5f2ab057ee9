"""``python -m stlalloc run``: a Python program in a child interpreter whose object
allocator (``PYMEM_DOMAIN_OBJ``) is the SGI pool, pymalloc or glibc malloc.

- ``sgi``: the child calls :func:`stlalloc.install` before the program: blocks up to
  ``max_bytes`` come from the SGI pool, the rest from pymalloc, which it wraps;
- ``pymalloc``: CPython's default, untouched;
- ``malloc``: ``PYTHONMALLOC=malloc``, every object a glibc ``malloc`` block.

The child runs the program as ``python`` would (``script.py args``, ``-m module args``,
``-c code args``) with the parent's stdin, stdout and stderr, and exits with its code. The
same bootstrap runs under every allocator, so the three differ only in the allocator.
Measured: the program's own seconds (wall and CPU) and peak RSS (``VmHWM``, read by the
child once the program ends), the child's page faults (``wait4``), and under ``sgi`` the
pool's counters.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import IO, Any

ALLOCATORS = ("sgi", "pymalloc", "malloc")
_ENV = "STLALLOC_RUN"
_BOOT = "from stlalloc._objdomain import _child; _child()"


@dataclass(frozen=True)
class Program:
    """What ``python`` would run: ``kind`` is ``"script"``, ``"-m"`` or ``"-c"``."""

    kind: str
    target: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Options:
    allocator: str = "sgi"
    align: int = 16
    max_bytes: int = 512


@dataclass
class Result:
    allocator: str
    exit_code: int
    seconds: float | None
    cpu_seconds: float | None
    wall_seconds: float
    peak_rss_bytes: int
    page_faults: dict[str, int]
    pool: dict[str, Any] | None = None
    wrapped: dict[str, int] | None = field(default=None)

    def report(self) -> dict[str, Any]:
        return asdict(self)


def parse_program(argv: list[str]) -> tuple[list[str], Program]:
    """Splits ``argv`` into our options and the program, as ``python`` reads its own: the
    first ``-m X``, ``-c X`` or non-option word starts the program, the rest are its."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in ("-m", "-c"):
            if i + 1 >= len(argv):
                raise ValueError(f"{word} needs an argument")
            return argv[:i], Program(word, argv[i + 1], tuple(argv[i + 2 :]))
        if word == "--":
            i += 1
            break
        if not word.startswith("-"):
            break
        # An option of ours: its value is in the same word (--x=v) or the next one.
        i += 1 if "=" in word or word in ("-h", "--help") else 2
    if i >= len(argv):
        raise ValueError("no program: give script.py [args], -m module [args] or -c code")
    options = [a for a in argv[:i] if a != "--"]
    return options, Program("script", argv[i], tuple(argv[i + 1 :]))


def run(
    program: Program, options: Options, *, quiet: bool = False, stdin: int | IO[bytes] | None = None
) -> Result:
    """Runs ``program`` once in a child interpreter; ``quiet`` discards its output;
    ``stdin`` as ``subprocess`` takes it (default: this process's own)."""
    if options.allocator not in ALLOCATORS:
        raise ValueError(f"allocator must be one of {', '.join(ALLOCATORS)}")
    env = dict(os.environ)
    env.pop("PYTHONMALLOC", None)
    if options.allocator == "malloc":
        env["PYTHONMALLOC"] = "malloc"
    fd, result_path = tempfile.mkstemp(prefix="stlalloc-run-", suffix=".json")
    os.close(fd)
    env[_ENV] = json.dumps({**asdict(options), "result": result_path})
    cmd = [sys.executable, "-c", _BOOT, program.kind, program.target, *program.args]
    out = subprocess.DEVNULL if quiet else None
    # The child gets a Ctrl-C itself; the parent waits for it to finish with its code.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdin=stdin, stdout=out, stderr=out)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        with open(result_path) as f:
            text = f.read()
    finally:
        signal.signal(signal.SIGINT, previous)
        os.unlink(result_path)
    child = json.loads(text) if text else {}
    pool = child.get("pool")
    return Result(
        allocator=options.allocator,
        exit_code=code if code >= 0 else 128 - code,
        seconds=child.get("seconds"),
        cpu_seconds=child.get("cpu_seconds"),
        wall_seconds=wall,
        peak_rss_bytes=child.get("peak_rss_bytes") or usage.ru_maxrss * 1024,
        page_faults={"minor": usage.ru_minflt, "major": usage.ru_majflt},
        pool=pool,
        wrapped=pool["wrapped_calls"] if pool else None,
    )


def summary(r: Result) -> str:
    seconds = "?" if r.seconds is None else f"{r.seconds:.3f} s"
    if r.cpu_seconds is not None:
        seconds += f" (cpu {r.cpu_seconds:.3f} s)"
    line = (
        f"stlalloc run: allocator={r.allocator} exit={r.exit_code} time={seconds} "
        f"peak_rss={r.peak_rss_bytes / 2**20:.1f} MiB minor_faults={r.page_faults['minor']}"
    )
    if r.pool:
        p = r.pool
        line += (
            f"\n  pool: {p['pool_share']:.1%} of {_calls(p)} object-domain calls, "
            f"{p['allocations']} allocations, {p['live_blocks']} blocks live, "
            f"heap_size={p['heap_size']}, arena syscalls={sum(p['syscalls'].values())}"
        )
    return line


def _calls(pool: dict[str, Any]) -> int:
    return sum(pool["pool_calls"].values()) + sum(pool["wrapped_calls"].values())


def _peak_rss() -> int | None:
    """This process's peak resident set (``VmHWM``), which ``exec`` started afresh."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _print_program_traceback(exc: BaseException) -> None:
    """The traceback as ``python`` shows it: without this bootstrap's and runpy's frames."""
    tb = exc.__traceback__
    skip = {__file__, runpy.__file__, "<frozen runpy>"}
    while tb is not None and tb.tb_frame.f_code.co_filename in skip:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def _child() -> None:
    """The child's bootstrap: install the allocator, run the program, record, exit."""
    cfg = json.loads(os.environ.pop(_ENV))
    kind, target, *args = sys.argv[1:]
    import stlalloc

    if cfg["allocator"] == "sgi":
        stlalloc.install(align=cfg["align"], max_bytes=cfg["max_bytes"])
    outcome: BaseException | None = None
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        if kind == "-m":
            sys.argv = [target, *args]
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        elif kind == "-c":
            sys.argv = ["-c", *args]
            exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})
        else:
            sys.argv = [target, *args]
            sys.path[0] = os.path.dirname(os.path.abspath(target))
            runpy.run_path(target, run_name="__main__")
    except BaseException as e:  # noqa: BLE001 - every outcome is the program's to report
        outcome = e
    record = {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,
        "peak_rss_bytes": _peak_rss(),
        "pool": stlalloc.object_domain_stats(),
    }
    with open(cfg["result"], "w") as f:
        json.dump(record, f)
    if isinstance(outcome, SystemExit):
        raise outcome
    if isinstance(outcome, KeyboardInterrupt):
        _print_program_traceback(outcome)
        sys.exit(130)
    if outcome is not None:
        _print_program_traceback(outcome)
        sys.exit(1)
