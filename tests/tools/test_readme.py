"""The README's Python examples run as written, in order, in one namespace."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.skipif(not README.exists(), reason="run from a source checkout")
def test_readme_examples_run(capsys):
    blocks = python_blocks()
    assert blocks, "the README has Python examples"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "320 160 19" in out
    assert "[136]" in out, "Vector(range(17)) reserves 17 int64 at once"
    assert "never overlapping while live" in out


def test_submodules_are_attributes_of_the_package():
    import stlalloc

    assert stlalloc.probe.run_all and stlalloc.testing.check_allocator
    with pytest.raises(AttributeError):
        stlalloc.no_such_thing  # noqa: B018
