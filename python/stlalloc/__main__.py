"""Command line: ``python -m stlalloc {tour,bench,run,compare} ...``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["run"], ["compare"]):
        # Everything after the subcommand, the program's own words included, is theirs:
        # argparse must not read a program's "-h" or "-c".
        from stlalloc import _objcli

        return (_objcli.main_run if argv[0] == "run" else _objcli.main_compare)(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m stlalloc",
        description="The SGI STL allocators, live: a narrated tour, the benchmarks, and Python "
        "programs run on the SGI pool.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tour", help="measure and narrate how glibc malloc uses brk and mmap")
    sub.add_parser("bench", help="pool vs malloc microbenchmarks", add_help=False)
    sub.add_parser(
        "run", help="run a Python program with the SGI pool as its object allocator", add_help=False
    )
    sub.add_parser(
        "compare", help="a Python program under sgi, pymalloc and malloc, timed", add_help=False
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "tour":
        from stlalloc import tour

        return tour.main(rest)
    from stlalloc import bench

    return bench.main(rest)


if __name__ == "__main__":
    sys.exit(main())
