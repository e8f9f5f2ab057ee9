"""CPython's own sequence suites, run against Vector and List (SPEC §5).

The suites are imported from the running interpreter's ``test`` package, never copied:
``list_tests.CommonTest`` for ``Vector`` (dtype object, and int64 where the values are
ints), ``seq_tests.CommonTest`` and ``test_deque.TestBasic`` for ``List``. An interpreter
built without its ``test`` package skips the module, saying so. Every test skipped below
says why.
"""

import unittest

import pytest

from stlalloc import List, Vector

try:
    from test import list_tests, seq_tests, test_deque
except ImportError as exc:  # a minimal build of the interpreter
    pytest.skip(
        f"this interpreter ships without CPython's test package: {exc}",
        allow_module_level=True,
    )


def skipping(suite: type, reasons: dict[str, str]) -> dict[str, object]:
    """Class attributes skipping the named tests of `suite`, each with its reason; a name
    the suite lacks (renamed upstream) is an error, so that no skip outlives its test."""
    missing = [name for name in reasons if not hasattr(suite, name)]
    assert not missing, f"{suite.__name__} has no {missing}"
    return {name: unittest.skip(why)(getattr(suite, name)) for name, why in reasons.items()}


REPR = (
    "repr names the type and dtype, Vector([0, 1, 2], dtype='object'), so that it says "
    "what it is; list's own '[0, 1, 2]' is asserted"
)
LIST_MESSAGE = "asserts list's own message 'list indices must be ...'; Vector's says 'Vector'"
NOT_INTS = "stores str or arbitrary objects, which an int64 Vector refuses (TypeError)"


class IntVector(Vector):
    """``Vector`` of dtype int64 by default, for the suite's ``type2test(iterable)``."""

    def __new__(cls, *args, **kwargs):
        kwargs.setdefault("dtype", "int64")
        return super().__new__(cls, *args, **kwargs)


class TestVectorAsList(list_tests.CommonTest):
    type2test = Vector
    locals().update(
        skipping(
            list_tests.CommonTest,
            {"test_repr": REPR, "test_setitem": LIST_MESSAGE},
        )
    )


class TestInt64VectorAsList(list_tests.CommonTest):
    type2test = IntVector
    locals().update(
        skipping(
            list_tests.CommonTest,
            {
                "test_repr": REPR,
                "test_setitem": LIST_MESSAGE,
                "test_repr_deep": "nests Vectors in a Vector: " + NOT_INTS,
                **{
                    name: NOT_INTS
                    for name in (
                        "test_constructors",
                        "test_contains_fake",
                        "test_contains_order",
                        "test_copy",
                        "test_count",
                        "test_extend",
                        "test_extendedslicing",
                        "test_iadd",
                        "test_index",
                        "test_insert",
                        "test_remove",
                        "test_slice",
                    )
                },
            },
        )
    )

    def test_int64_is_what_runs(self):
        assert IntVector([1]).dtype == "int64"
        assert (IntVector([1]) + IntVector([2])).dtype == "int64"


class TestListAsSequence(seq_tests.CommonTest):
    type2test = List


class TestListAsDeque(test_deque.TestBasic):
    """``test_deque.TestBasic`` names ``deque`` directly: each test runs with the module's
    ``deque`` replaced by ``List``."""

    def setUp(self):
        self.saved = test_deque.deque
        test_deque.deque = List

    def tearDown(self):
        test_deque.deque = self.saved

    locals().update(
        skipping(
            test_deque.TestBasic,
            {
                "test_maxlen": "asserts deque's repr, 'deque([7, 8, 9], maxlen=3)'; List's is "
                "List([7, 8, 9], dtype='object', maxlen=3) (the rest of it: test_list_maxlen.py)",
                "test_repr": "evaluates repr in test_deque's namespace and asserts deque's "
                "format; List's repr is List([...], dtype='object')",
                "test_sizeof": "asserts the memory layout of CPython's deque blocks",
            },
        )
    )

    def test_list_is_what_runs(self):
        assert test_deque.deque is List
