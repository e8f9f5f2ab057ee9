"""``python -m stlalloc tour``: the claims of SPEC section 6, measured and narrated.

Each claim is measured on the running system by :mod:`stlalloc.probe` (a fresh child
process per probe) and printed as soon as it is known: the claim, the figures just
measured, and whether this system confirms it. ``--json`` prints the data instead.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import textwrap
import time
from typing import TextIO

from stlalloc import probe

WIDTH = 96
"""Column width of the narration (fits a 100-column terminal)."""

_INDENT = "   "


def main(argv: list[str] | None = None) -> int:
    """Run the tour; returns the process exit status (2 when the system has no glibc)."""
    parser = argparse.ArgumentParser(
        prog="python -m stlalloc tour",
        description="Measure, on this system, how glibc malloc uses brk and mmap, and narrate it.",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the measured data as JSON instead"
    )
    args = parser.parse_args(argv)
    try:
        if args.json:
            _print_json(sys.stdout)
        else:
            _narrate(sys.stdout)
    except NotImplementedError as exc:
        print(f"stlalloc tour: {exc}", file=sys.stderr)
        return 2
    return 0


def _narrate(out: TextIO) -> None:
    started = time.monotonic()
    version = probe.require_glibc()
    out.write(
        _wrap(
            f"How glibc {version} malloc uses brk and mmap, measured just now on this "
            f"{platform.machine()} machine ({probe.PAGE // probe.KiB} KiB pages). Each "
            "probe ran in a fresh child process; the figures are that process's.",
            indent="",
        )
        + "\n"
    )

    def show(finding: probe.Finding) -> None:
        out.write(_section(finding))

    evidence = probe.run_all(on_finding=show)
    if evidence.pool_skipped is not None:
        title = _title(probe.PoolVsMalloc.claim, probe.PoolVsMalloc.title)
        out.write(f"\n{title}\n{_wrap(f'Not measured: {evidence.pool_skipped}.')}\n")
    out.write("\n" + _summary(evidence, time.monotonic() - started) + "\n")


def _section(finding: probe.Finding) -> str:
    """One claim: its statement, the figures, the verdict."""
    verdict = (
        "Verdict: confirmed on this system."
        if finding.verdict
        else "Verdict: NOT confirmed here; the figures above show how this system differs."
    )
    title = _title(finding.claim, finding.title)
    return f"\n{title}\n{_wrap(finding.explain)}\n{_INDENT}{verdict}\n"


def _title(claim: int, statement: str) -> str:
    return textwrap.fill(f"{claim}. {statement}", width=WIDTH, subsequent_indent=_INDENT)


def _summary(evidence: probe.Evidence, seconds: float) -> str:
    confirmed = sum(finding.verdict for finding in evidence.results)
    text = f"Measured in {seconds:.1f} s: {confirmed} of {len(evidence.results)} claims confirmed"
    differs = [str(finding.claim) for finding in evidence.results if not finding.verdict]
    if differs:
        text += f"; this system differs on claim {', '.join(differs)}"
    return _wrap(f"{text}.", indent="")


def _wrap(text: str, indent: str = _INDENT) -> str:
    return textwrap.fill(text, width=WIDTH, initial_indent=indent, subsequent_indent=indent)


def _print_json(out: TextIO) -> None:
    evidence = probe.run_all()
    data = {
        "glibc": evidence.glibc,
        "machine": platform.machine(),
        "page_size": probe.PAGE,
        "claims": [probe.as_json(finding) for finding in evidence.results],
        "pool_skipped": evidence.pool_skipped,
    }
    json.dump(data, out, indent=2)
    out.write("\n")
