"""``python -m stlalloc tour``: narrates every claim of SPEC section 6, fast and plain."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest
from test_probe import import_stlalloc

tour = import_stlalloc("tour")
probe = import_stlalloc("probe")
claims = import_stlalloc("probe.claims")

needs_glibc = pytest.mark.skipif(
    probe.glibc_version() is None, reason="the tour observes glibc malloc on 64-bit Linux"
)


@needs_glibc
def test_the_cli_tour_names_every_claim_and_its_numbers_in_under_30_seconds() -> None:
    pytest.importorskip("stlalloc._native")  # the CLI imports the package
    # The tour's own CPU time, not the wall clock: on a loaded machine it waits for a core.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, "-m", "stlalloc", "tour"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert proc.returncode == 0, proc.stderr
    assert 0 < cpu < 30
    text = proc.stdout
    for claim in range(1, 9):
        assert f"\n{claim}. " in text
    assert text.count("Verdict:") == 8
    for number in (
        "0x21000",
        "128 KiB mmap threshold",
        "128 KiB trim threshold",
        "32-byte chunk",
        "32 MiB",
        "per million",
        "minor faults",
        "header",
    ):
        assert number in " ".join(text.split()), number
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "\x1b" not in text  # no colour


@needs_glibc
def test_json_prints_the_data_of_every_claim(capsys: pytest.CaptureFixture[str]) -> None:
    assert tour.main(["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    claims = [entry["claim"] for entry in data["claims"]]
    assert claims == list(range(1, 8 + (data["pool_skipped"] is None)))
    by_claim = {entry["claim"]: entry for entry in data["claims"]}
    assert by_claim[5]["top_pad"] == 131072
    assert by_claim[2]["big"]["new_mapping_bytes"] == 266240
    assert all(isinstance(entry["verdict"], bool) for entry in data["claims"])


def test_without_glibc_the_tour_explains_and_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(claims, "glibc_version", lambda: None)
    assert tour.main([]) == 2
    assert "glibc" in capsys.readouterr().err
