"""stlalloc.probe: each claim of SPEC section 6, measured on this system's glibc."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "python" / "stlalloc"


def import_stlalloc(name: str) -> types.ModuleType:
    """``stlalloc.<name>``, even where the package's ``__init__`` cannot load the extension.

    probe and tour are pure Python: when ``import stlalloc`` fails (extension not built,
    package not installed), they are loaded from the source tree under a bare package.
    """
    try:
        return importlib.import_module(f"stlalloc.{name}")
    except ImportError:
        package = types.ModuleType("stlalloc")
        package.__path__ = [str(PACKAGE_DIR)]
        sys.modules["stlalloc"] = package
        return importlib.import_module(f"stlalloc.{name}")


probe = import_stlalloc("probe")
child = import_stlalloc("probe._child")
claims = import_stlalloc("probe.claims")

needs_glibc = pytest.mark.skipif(
    probe.glibc_version() is None, reason="the probes observe glibc malloc on 64-bit Linux"
)

KiB, MiB = 1024, 1024 * 1024


def test_request2size_follows_malloc_c() -> None:
    assert [probe.request2size(n) for n in (0, 1, 24, 25, 40, 128)] == [32, 32, 32, 48, 48, 144]
    # the appendix: malloc(131072) maps 135168 bytes
    assert probe.mmapped_size(128 * KiB) == 135168


def test_strace_parsing_counts_only_memory_calls_between_the_marks() -> None:
    lines = [
        "100 brk(NULL) = 0x1000",
        '100 access("/stlalloc-probe/loop-begins", F_OK) = -1 ENOENT',
        "100 brk(0x22000) = 0x22000",
        '100 openat(AT_FDCWD, "/proc/self/maps", O_RDONLY) = 3',
        "100 mmap(NULL, 135168, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0",
        '100 access("/stlalloc-probe/loop-ends", F_OK) = -1 ENOENT',
        "100 munmap(0x7f0, 135168) = 0",
    ]
    assert child.memory_syscalls_between_marks(lines) == 2
    assert child.memory_syscalls_between_marks(lines[:3]) is None
    assert child.first_break_move(["brk(NULL) = 0x1000", "brk(0x22000) = 0x22000"]) == 0x21000


def test_the_child_module_loads_nothing_that_moves_mallocs_thresholds() -> None:
    # What the child runs, loaded but not run (another __name__): it must import neither
    # typing nor dataclasses nor the package (their imports malloc and free big blocks).
    heavy = ("typing", "dataclasses", "stlalloc")
    boot = (
        "import marshal, sys\n"
        "exec(marshal.loads(sys.stdin.buffer.read()), {'__name__': 'loaded'})\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", boot],
        input=child._child_bytecode(),
        capture_output=True,
        check=True,
    )
    assert out.stdout.decode().strip() == "[]"


@needs_glibc
def test_the_child_module_runs_as_a_file_too() -> None:
    # The module the child runs is a script of its own: `python -I -S _measure.py NAME PARAMS`.
    out = subprocess.run(
        [sys.executable, "-I", "-S", child._MEASURE, "chunk_header", "{}"],
        capture_output=True,
        check=True,
    )
    figures = json.loads(out.stdout)
    assert figures["small"][0]["request"] == 0, figures


@pytest.fixture(scope="module")
def library_calls() -> probe.LibraryCalls:
    return probe.probe_library_calls(calls=400_000)


@needs_glibc
def test_most_malloc_calls_make_no_system_call(library_calls: probe.LibraryCalls) -> None:
    result = library_calls
    assert result.calls == 400_000
    assert result.break_moves + result.mapping_changes < result.calls // 100
    if result.traced_syscalls is not None:
        assert result.traced_syscalls < result.calls // 100
    assert result.verdict, result.explain


@needs_glibc
def test_256k_is_mmapped_and_small_requests_live_in_the_heap() -> None:
    result = probe.probe_thresholds()
    assert result.small.in_heap and not result.small.mmapped
    assert result.below.chunk_bytes == 131056
    assert result.below.in_heap and not result.below.mmapped
    assert result.at.mmapped and result.at.new_mapping_bytes == 135168
    assert result.big.mmapped and not result.big.in_heap
    assert result.big.new_mapping_bytes == result.big_unmapped_bytes == 266240
    assert result.verdict, result.explain


@needs_glibc
def test_malloc_tunables_in_the_environment_do_not_reach_the_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A 4 KiB threshold set by the user would mmap malloc(131048) and freeze the threshold.
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "4096")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=4096")
    assert probe.probe_thresholds().verdict


@needs_glibc
def test_free_keeps_brk_memory_until_the_top_passes_the_trim_threshold() -> None:
    result = probe.probe_trim()
    assert result.below_break_move == 0
    assert result.below_resident_bytes == result.below_page_bytes > 0
    assert result.small_top_bytes < 128 * KiB and result.small_top_break_move == 0
    assert result.trim_break_move < 0
    assert 128 * KiB < result.top_after_trim <= 128 * KiB + 32 + probe.PAGE
    assert result.verdict, result.explain


@needs_glibc
def test_freeing_an_mmapped_megabyte_sends_900k_to_brk() -> None:
    result = probe.probe_dynamic_threshold()
    assert result.first.mmapped
    assert result.first_unmapped_bytes == result.first.new_mapping_bytes == MiB + probe.PAGE
    assert not result.after_raise.mmapped and result.after_raise.in_heap
    assert result.near_cap.mmapped
    assert not result.near_cap_again.mmapped and result.near_cap_again.in_heap
    assert result.over_cap.mmapped and result.over_cap_after.mmapped
    assert result.verdict, result.explain


@needs_glibc
def test_the_heap_grows_by_a_128k_top_pad() -> None:
    result = probe.probe_top_pad()
    assert result.top_pad == 131072
    assert result.first_move == 0x21000
    assert result.top_after == 131072 + 32
    assert result.fresh_process_move in (None, 0x21000)
    assert result.verdict, result.explain


@needs_glibc
def test_malloc_24_sits_in_a_32_byte_chunk_with_prev_inuse() -> None:
    result = probe.probe_chunk_header()
    by_request = {chunk.request: chunk for chunk in result.small}
    assert by_request[24].size_word == 0x21
    assert by_request[24].chunk_bytes == 32 and by_request[24].flags == probe.PREV_INUSE
    assert (by_request[25].chunk_bytes, by_request[128].chunk_bytes) == (48, 144)
    assert [chunk.usable for chunk in result.small] == [24, 24, 24, 40, 136]
    assert result.mmapped.size_word == 266240 | probe.IS_MMAPPED
    assert result.thread.flags & probe.NON_MAIN_ARENA
    assert result.verdict, result.explain


@needs_glibc
def test_touching_k_pages_costs_k_faults_and_k_resident_pages() -> None:
    k = 512
    result = probe.probe_first_touch(request=64 * MiB, touch_pages=k)
    assert result.mmapped
    assert result.resident_after_malloc <= 1
    assert result.resident_after_touch - result.resident_after_malloc == k
    assert k <= result.minor_faults <= k + k // 20 + 16
    assert result.rss_growth_bytes >= k * probe.PAGE * 9 // 10
    assert result.verdict, result.explain


@needs_glibc
def test_the_pool_has_no_header_fewer_faults_and_keeps_its_memory() -> None:
    pytest.importorskip("stlalloc._native")
    result = probe.probe_pool()
    assert result.pool_spacing == 24
    assert (result.malloc_spacing, result.malloc_header_bytes) == (32, 8)
    assert sum(result.pool_syscalls.values()) < result.malloc_syscalls
    assert result.pool_minor_faults < result.malloc_minor_faults
    assert result.pool_kept_bytes == result.pool_heap_bytes > 24 * result.blocks
    assert result.verdict, result.explain


@pytest.mark.parametrize(
    "call",
    [*probe.CLAIM_PROBES, probe.probe_pool, probe.run_all],
    ids=lambda call: call.__name__,
)
def test_without_glibc_every_probe_says_why(monkeypatch: pytest.MonkeyPatch, call) -> None:
    monkeypatch.setattr(claims, "glibc_version", lambda: None)
    with pytest.raises(NotImplementedError, match="glibc"):
        call()


@needs_glibc
def test_without_strace_the_probes_rest_on_break_and_maps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(child.shutil, "which", lambda name: None)
    calls = probe.probe_library_calls(calls=100_000)
    assert calls.traced_syscalls is None and calls.verdict, calls.explain
    pad = probe.probe_top_pad()
    assert pad.fresh_process_move is None and pad.verdict, pad.explain
