"""The ``run`` and ``compare`` subcommands: their options, then the program as ``python``
takes it (``script.py [args]``, ``-m module [args]``, ``-c code [args]``)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from stlalloc._objdomain import ALLOCATORS, Options, Program, parse_program, run, summary

PROGRAM_USAGE = "(script.py [args] | -m module [args] | -c code [args])"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--align",
        type=int,
        choices=(8, 16),
        default=16,
        help="pool block alignment; 16 is CPython's own promise (pymalloc's ALIGNMENT on "
        "x86-64); 8 is SGI's, and leaves some objects only 8-byte aligned",
    )
    p.add_argument(
        "--max-bytes",
        type=int,
        default=512,
        help="largest request the pool serves (default 512, pymalloc's; SGI's is 128)",
    )


def _split(prog: str, argv: list[str]) -> tuple[list[str], Program]:
    try:
        return parse_program(argv)
    except ValueError as e:
        print(f"usage: python -m stlalloc {prog} [options] {PROGRAM_USAGE}", file=sys.stderr)
        print(f"python -m stlalloc {prog}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def main_run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m stlalloc run",
        usage=f"%(prog)s [options] {PROGRAM_USAGE}",
        description="Run a Python program with the SGI pool (or pymalloc, or malloc) as "
        "CPython's object allocator; its output, input and exit code pass through.",
    )
    p.add_argument("--allocator", choices=ALLOCATORS, default="sgi")
    _common(p)
    p.add_argument("--report", metavar="FILE.json", help="write the measurements as JSON")
    if any(a in ("-h", "--help") for a in argv[:1]):
        p.parse_args(argv)
    options, program = _split("run", argv)
    args = p.parse_args(options)
    opts = Options(allocator=args.allocator, align=args.align, max_bytes=args.max_bytes)
    _check_max_bytes(p, args)
    result = run(program, opts)
    print(summary(result), file=sys.stderr)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(result.report(), f, indent=2)
    return result.exit_code


def main_compare(argv: list[str]) -> int:
    from stlalloc import _objcompare

    p = argparse.ArgumentParser(
        prog="python -m stlalloc compare",
        usage=f"%(prog)s [options] {PROGRAM_USAGE}",
        description="Run a program under each object allocator (sgi, pymalloc, malloc), "
        "interleaved, and print the medians with ratios to pymalloc. Its output is discarded.",
    )
    p.add_argument("--repeat", type=int, default=5, help="runs per allocator (default 5)")
    p.add_argument("--plot", metavar="FILE.png", help="draw the ratios (needs matplotlib)")
    p.add_argument("--stdin", metavar="FILE", help="each run's stdin (default: empty)")
    _common(p)
    if any(a in ("-h", "--help") for a in argv[:1]):
        p.parse_args(argv)
    options, program = _split("compare", argv)
    args = p.parse_args(options)
    _check_max_bytes(p, args)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.stdin is not None and not os.path.isfile(args.stdin):
        p.error(f"--stdin: no such file: {args.stdin}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            p.error("--plot needs matplotlib: pip install 'stlalloc[plot]'")
    results = _objcompare.compare(
        program, repeat=args.repeat, align=args.align, max_bytes=args.max_bytes, stdin=args.stdin
    )
    rows = _objcompare.medians(results)
    print(_objcompare.table(rows))
    if args.plot:
        _objcompare.plot({"program": rows}, args.plot)
    codes = {code for m in rows for code in m.exit_codes}
    if len(codes) > 1:
        print(f"!! exit codes differ between allocators: {sorted(codes)}", file=sys.stderr)
        return 1
    return 0


def _check_max_bytes(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.max_bytes <= 0 or args.max_bytes % args.align:
        p.error(f"--max-bytes must be a positive multiple of --align ({args.align})")
