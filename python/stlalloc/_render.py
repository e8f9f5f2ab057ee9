"""Pictures of a pool: the arena and upstream chunks, block by block.

:func:`render` is ``stlalloc.render``; :func:`render_method` is ``PoolAllocator.render``,
which the package sets when it is imported (the extension calls nothing in the package).
Both formats draw the same data, the pool's ``layout()`` and ``stats()``: live blocks, free
blocks by free list, the uncarved rest of the chunk and the break.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from stlalloc._native import PoolAllocator

# Free lists drawn as hex digits (list 0..15), then letters; beyond that '+'.
_CLASS_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"
_LIVE, _CHUNK = "#", "~"

# One hue per free list, cycling; live blocks red, the chunk grey.
_PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#dbdb8d",
]
_LIVE_COLOUR, _CHUNK_COLOUR = "#d62728", "#e0e0e0"


def render(pool: PoolAllocator, format: Literal["text", "svg"] = "text", **options: Any) -> str:
    """Draw ``pool`` as ``"text"`` (for a terminal) or ``"svg"`` (an image)."""
    if format == "text":
        return _text(pool, **options)
    if format == "svg":
        return _svg(pool, **options)
    raise ValueError(f"format must be 'text' or 'svg', not {format!r}")


def render_method(
    self: PoolAllocator, format: Literal["text", "svg"] = "text", **options: Any
) -> str:
    """Draws the pool: ``format="text"`` for a terminal, ``"svg"`` for an image."""
    return render(self, format, **options)


def _header(pool: Any) -> list[str]:
    s = pool.stats()
    return [
        f"PoolAllocator(align={s.align}, max_bytes={s.max_bytes}, refill={s.refill})",
        f"heap_size {s.heap_size} B: live {s.live_blocks} blocks ({s.live_bytes} B), "
        f"free {sum(s.free_list_lengths)} blocks, chunk {s.chunk_bytes_left} B left; "
        f"large (upstream) {s.large_live_blocks} blocks ({s.large_live_bytes} B)",
        f"arena break {s.arena_used} of {s.arena_reserved} B reserved, "
        f"{s.arena_resident} B resident; upstream chunks {s.upstream_chunk_bytes} B",
    ]


def _cell_size(used: int, align: int, width: int, max_rows: int) -> int:
    """Bytes per character: `align`, doubled until the region fits in `max_rows` rows."""
    cell = align
    while used > cell * width * max_rows:
        cell *= 2
    return cell


def _char(kind: str, cls: int | None) -> str:
    if kind == "live":
        return _LIVE
    if kind == "chunk":
        return _CHUNK
    assert cls is not None
    return _CLASS_CHARS[cls] if cls < len(_CLASS_CHARS) else "+"


def _region_title(region: dict[str, Any]) -> str:
    if region["kind"] == "arena":
        return f"arena {region['base']:#x}: break at +{region['used']} of {region['len']} B"
    return f"upstream chunk {region['base']:#x}: {region['used']} B"


def _text(pool: Any, width: int = 64, max_rows: int = 32) -> str:
    """One character per cell; a cell shows the block that holds its first byte."""
    lines = _header(pool)
    align = pool.align
    for region in pool.layout():
        used = region["used"]
        cell = _cell_size(used, align, width, max_rows)
        lines.append("")
        lines.append(f"{_region_title(region)}  (one character = {cell} B)")
        cells = [" "] * (-(-used // cell))
        for start, size, kind, cls in region["spans"]:
            first = (start - region["base"]) // cell
            last = (start - region["base"] + size - 1) // cell
            for i in range(first, last + 1):
                if cells[i] == " " or i == first:
                    cells[i] = _char(kind, cls)
        for row in range(0, len(cells), width):
            text = "".join(cells[row : row + width])
            at_break = region["kind"] == "arena" and row + width >= len(cells)
            end = "|" if at_break else ""
            lines.append(f"  +{row * cell:#07x} {text}{end}")
    lines.append("")
    lines.append(f"legend: {_LIVE} live  {_CHUNK} chunk left  0-f free list index  | break")
    s = pool.stats()
    lists = [f"{i}:{n}" for i, n in enumerate(s.free_list_lengths) if n]
    lines.append("free lists (index:blocks): " + (" ".join(lists) if lists else "all empty"))
    return "\n".join(lines) + "\n"


def _svg(pool: Any, row_bytes: int = 1024, px_per_byte: float = 1.0, row_height: int = 18) -> str:
    """Each region wrapped in rows of ``row_bytes``; one rectangle piece per span per row,
    tagged with ``data-kind`` and ``data-start`` so tests and tools can read it back."""
    width = int(row_bytes * px_per_byte)
    margin, gap = 10, 4
    body: list[str] = []
    y = margin
    for line in _header(pool):
        y += 16
        body.append(f'<text x="{margin}" y="{y}" class="t">{html.escape(line)}</text>')
    for region in pool.layout():
        y += 24
        body.append(
            f'<text x="{margin}" y="{y}" class="t">{html.escape(_region_title(region))}</text>'
        )
        y += 6
        base = region["base"]
        rows = max(1, -(-region["used"] // row_bytes))
        for start, size, kind, cls in region["spans"]:
            colour = (
                _LIVE_COLOUR
                if kind == "live"
                else _CHUNK_COLOUR
                if kind == "chunk"
                else _PALETTE[cls % len(_PALETTE)]
            )
            title = f"{kind} {size} B at {start:#x}" + (
                f" (free list {cls})" if cls is not None else ""
            )
            offset, left = start - base, size
            while left > 0:
                row, col = divmod(offset, row_bytes)
                piece = min(left, row_bytes - col)
                body.append(
                    f'<rect x="{margin + col * px_per_byte:.1f}" '
                    f'y="{y + row * (row_height + gap)}" width="{piece * px_per_byte:.1f}" '
                    f'height="{row_height}" fill="{colour}" data-kind="{kind}" '
                    f'data-start="{start}"><title>{title}</title></rect>'
                )
                offset += piece
                left -= piece
        end_row, end_col = divmod(region["used"], row_bytes)
        if region["kind"] == "arena":
            bx = margin + end_col * px_per_byte
            by = y + end_row * (row_height + gap)
            body.append(
                f'<line x1="{bx:.1f}" y1="{by - 3}" x2="{bx:.1f}" y2="{by + row_height + 3}" '
                f'stroke="black" stroke-width="2" data-kind="break"/>'
            )
        y += rows * (row_height + gap)
    y += 20
    legend = [("live", _LIVE_COLOUR), ("chunk left", _CHUNK_COLOUR)] + [
        (f"free list {i}", _PALETTE[i]) for i in range(min(pool.nfreelists, len(_PALETTE)))
    ]
    x = margin
    for name, colour in legend:
        body.append(f'<rect x="{x}" y="{y - 10}" width="10" height="10" fill="{colour}"/>')
        body.append(f'<text x="{x + 14}" y="{y}" class="t">{name}</text>')
        x += 14 + 7 * len(name) + 12
        if x > width - 80:
            x = margin
            y += 16
    height = y + margin + 6
    total_width = max(width + 2 * margin, x + margin)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_width}" height="{height}" '
        f'viewBox="0 0 {total_width} {height}">\n'
        "<style>.t{font:12px monospace;fill:#222} rect{stroke:#fff;stroke-width:0.5}</style>\n"
        f'<rect x="0" y="0" width="{total_width}" height="{height}" fill="#fff"/>\n'
        + "\n".join(body)
        + "\n</svg>\n"
    )
