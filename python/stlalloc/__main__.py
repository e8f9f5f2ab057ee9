"""Command line: ``python -m stlalloc {tour,bench} ...``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stlalloc",
        description="The SGI STL allocators, live: a narrated tour and the benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tour", help="measure and narrate how glibc malloc uses brk and mmap")
    sub.add_parser("bench", help="pool vs malloc microbenchmarks", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "tour":
        from stlalloc import tour

        return tour.main(rest)
    from stlalloc import bench

    return bench.main(rest)


if __name__ == "__main__":
    sys.exit(main())
