"""docs/framework.md: its Python examples run as written, in order, in one namespace."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "framework.md"


@pytest.mark.skipif(not DOC.exists(), reason="run from a source checkout")
def test_framework_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 6, "the framework doc has its examples"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    out = capsys.readouterr().out
    assert "allocate 8\nallocate 16\ndeallocate 8\nallocate 32\n" in out
    assert "belongs to a container" in out
    assert "never overlapping while live: allocate(" in out
    assert "overlaps a block already handed to a container" in out
