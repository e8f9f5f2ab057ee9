"""``python -m stlalloc compare``: one program under each object allocator, several times,
interleaved (each round runs all three, in a rotating order, so that load from other
processes spreads over all of them), reported as medians with ratios to pymalloc.

Ratios are of CPU seconds (the program's, in the child): on a machine shared with other
work, wall time also counts the time the child waited for a core."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from subprocess import DEVNULL

from stlalloc._objdomain import ALLOCATORS, Options, Program, Result, run

BASELINE = "pymalloc"


@dataclass(frozen=True)
class Median:
    allocator: str
    runs: int
    seconds: float
    cpu_seconds: float
    peak_rss_bytes: float
    pool_share: float | None
    exit_codes: tuple[int, ...]


def compare(
    program: Program,
    *,
    repeat: int = 5,
    align: int = 16,
    max_bytes: int = 512,
    stdin: str | None = None,
) -> dict[str, list[Result]]:
    """``repeat`` rounds of the program under every allocator, output discarded; each run
    reads the file ``stdin`` from its start (none: an empty stdin)."""
    results: dict[str, list[Result]] = {a: [] for a in ALLOCATORS}
    for round_ in range(repeat):
        order = ALLOCATORS[round_ % 3 :] + ALLOCATORS[: round_ % 3]
        for allocator in order:
            opts = Options(allocator=allocator, align=align, max_bytes=max_bytes)
            if stdin is None:
                results[allocator].append(run(program, opts, quiet=True, stdin=DEVNULL))
                continue
            with open(stdin, "rb") as f:
                results[allocator].append(run(program, opts, quiet=True, stdin=f))
    return results


def medians(results: dict[str, list[Result]]) -> list[Median]:
    out = []
    for allocator, runs in results.items():
        shares = [r.pool["pool_share"] for r in runs if r.pool]
        out.append(
            Median(
                allocator=allocator,
                runs=len(runs),
                seconds=statistics.median(
                    r.seconds if r.seconds is not None else r.wall_seconds for r in runs
                ),
                cpu_seconds=statistics.median(
                    r.cpu_seconds if r.cpu_seconds is not None else r.wall_seconds for r in runs
                ),
                peak_rss_bytes=statistics.median(r.peak_rss_bytes for r in runs),
                pool_share=statistics.median(shares) if shares else None,
                exit_codes=tuple(sorted({r.exit_code for r in runs})),
            )
        )
    return out


def table(rows: Sequence[Median]) -> str:
    base = next(m for m in rows if m.allocator == BASELINE)
    lines = [
        f"{'allocator':<10} {'runs':>4} {'wall s':>8} {'cpu s':>8} {'×pymalloc':>9} "
        f"{'peak RSS MiB':>12} {'×pymalloc':>9} {'pool share':>10} {'exit':>5}"
    ]
    for m in rows:
        share = "-" if m.pool_share is None else f"{m.pool_share:.1%}"
        lines.append(
            f"{m.allocator:<10} {m.runs:>4} {m.seconds:>8.3f} {m.cpu_seconds:>8.3f} "
            f"{m.cpu_seconds / base.cpu_seconds:>9.2f} "
            f"{m.peak_rss_bytes / 2**20:>12.1f} {m.peak_rss_bytes / base.peak_rss_bytes:>9.2f} "
            f"{share:>10} {','.join(map(str, m.exit_codes)):>5}"
        )
    return "\n".join(lines)


def plot(workloads: dict[str, Sequence[Median]], path: str, title: str = "") -> None:
    """Time and peak RSS relative to pymalloc, side by side, one group of bars per
    workload (needs matplotlib, the ``plot`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(workloads)
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 1.3 * len(names) + 4), 4.2))
    width = 0.8 / len(ALLOCATORS)
    for ax, attr, label in (
        (axes[0], "cpu_seconds", "CPU time ÷ pymalloc's (lower is faster)"),
        (axes[1], "peak_rss_bytes", "peak RSS ÷ pymalloc's (lower is smaller)"),
    ):
        for k, allocator in enumerate(ALLOCATORS):
            ratios = []
            for name in names:
                by = {m.allocator: m for m in workloads[name]}
                ratios.append(getattr(by[allocator], attr) / getattr(by[BASELINE], attr))
            xs = [i + (k - 1) * width for i in range(len(names))]
            ax.bar(xs, ratios, width, label=allocator)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_title(label, fontsize=10)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
