"""The pictures of a pool show what its statistics say."""

import random
import re

import pytest

import stlalloc


def busy_pool(seed: int = 7, ops: int = 300) -> tuple[stlalloc.PoolAllocator, list]:
    pool = stlalloc.PoolAllocator(arena_size=8192)
    rng = random.Random(seed)
    live: list[tuple[int, int]] = []
    for _ in range(ops):
        if live and rng.random() < 0.45:
            p, n = live.pop(rng.randrange(len(live)))
            pool.deallocate(p, n)
        else:
            n = rng.randint(1, 128)
            live.append((pool.allocate(n), n))
    return pool, live


def test_layout_tiles_every_region_and_matches_stats():
    pool, live = busy_pool()
    s = pool.stats()
    regions = pool.layout()
    assert regions[0]["kind"] == "arena" and regions[0]["used"] == s.arena_used
    assert sum(r["used"] for r in regions) == s.heap_size
    for r in regions:
        at = r["base"]
        for start, size, _kind, _cls in r["spans"]:
            assert start == at
            at += size
        assert at == r["base"] + r["used"]
    spans = [sp for r in regions for sp in r["spans"]]
    assert sorted(sp[0] for sp in spans if sp[2] == "live") == sorted(p for p, _ in live)
    per_class = [0] * s.nfreelists
    for _, _, kind, cls in spans:
        if kind == "free":
            per_class[cls] += 1
    assert tuple(per_class) == s.free_list_lengths
    assert sum(sp[1] for sp in spans if sp[2] == "chunk") == s.chunk_bytes_left


def test_text_render_shows_the_statistics():
    pool, _ = busy_pool()
    s = pool.stats()
    text = pool.render()
    assert f"heap_size {s.heap_size} B" in text
    assert f"live {s.live_blocks} blocks ({s.live_bytes} B)" in text
    lists = " ".join(f"{i}:{n}" for i, n in enumerate(s.free_list_lengths) if n)
    assert f"free lists (index:blocks): {lists}" in text
    assert "|" in text, "the break is marked"


def test_text_render_of_a_fresh_pool():
    pool = stlalloc.PoolAllocator()
    pool.allocate(8)
    text = pool.render()
    # One live 8-byte block, 19 free on list 0, 160 bytes of chunk: one character each.
    row = next(line for line in text.splitlines() if line.startswith("  +0x00000"))
    assert row.split()[1] == "#" + "0" * 19 + "~" * 20 + "|"


def test_svg_render_has_one_shape_per_block():
    pool, live = busy_pool(seed=3)
    s = pool.stats()
    svg = pool.render("svg")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    starts = {kind: set() for kind in ("live", "free", "chunk")}
    for kind, start in re.findall(r'data-kind="(\w+)" data-start="(\d+)"', svg):
        starts[kind].add(int(start))
    assert starts["live"] == {p for p, _ in live}
    assert len(starts["free"]) == sum(s.free_list_lengths)
    assert svg.count('data-kind="break"') == 1


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="format"):
        stlalloc.PoolAllocator().render("bmp")


def test_render_is_the_package_function_the_pools_share():
    # The extension returns the layout; the package draws it and lends pools the method.
    pool, _ = busy_pool()
    assert stlalloc.PoolAllocator.render.__module__ == "stlalloc._render"
    assert pool.render("svg", row_bytes=512) == stlalloc.render(pool, "svg", row_bytes=512)
    with pytest.raises(ValueError, match="format must be"):
        stlalloc.render(pool, "png")
