"""Every container operation against one hostile Python allocator, run in a child process
by ``test_reentrancy.py`` (a hang is then a timeout, not a frozen test run).

    python tests/containers/reentrancy_child.py WHERE WHAT
    python tests/containers/reentrancy_child.py callbacks Vector|List

The allocator misbehaves inside ``WHERE`` (``allocate`` or ``deallocate``) as ``WHAT`` says:
``read`` the container it serves, ``mutate`` it, ``raise``, or return garbage from
``allocate`` (``zero``, ``foreign``, ``misaligned``, ``small``, ``nonint``). Each operation on
each Vector and List dtype must then work or raise an ``Exception`` (never a panic, which is a
``BaseException``), leave the container consistent (equal to a plain-list model whenever the
allocator does not change it itself) and leave its backing pool holding exactly the
container's blocks. At the end every block is back. Prints one summary line.

``callbacks`` does the same with elements whose ``__eq__``, ``__lt__`` and ``__del__`` (and
key functions) read or change the container they are in.
"""

import collections
import copy
import gc
import sys

import stlalloc

DTYPES = {"int64": 5, "float64": 5.0, "object": "x"}
# What an operation may raise here: the allocator's own RuntimeError, AllocatorError for
# its garbage, and what a list raises when the allocator emptied the container under it.
EXPECTED = {"ok", "RuntimeError", "AllocatorError", "IndexError", "ValueError"}


class Hostile:
    """A protocol allocator over ``pool`` that misbehaves while ``armed``."""

    def __init__(self, pool, where, what):
        self.pool, self.where, self.what = pool, where, what
        self.target = None
        self.armed = False
        self.busy = False
        self.kept = []  # blocks held back while garbage is returned in their place
        self.calls = 0

    def allocate(self, n):
        if self.armed and self.where == "allocate":
            garbage = self.misbehave(n)
            if garbage is not None:
                return garbage
        return self.pool.allocate(n)

    def deallocate(self, p, n):
        # Freed first: a raising deallocate must not make the pool's count ours to explain.
        self.pool.deallocate(p, n)
        if self.armed and self.where == "deallocate":
            self.misbehave(n)

    def keep(self, n):
        p = self.pool.allocate(n)
        self.kept.append((p, n))
        return p

    def misbehave(self, n):
        self.calls += 1
        t = self.target
        match self.what:
            case "read":
                size = len(t)
                assert len(list(t)) == size == len(list(reversed(t)))
                if size:
                    t[0], t[-1]  # noqa: B018
            case "mutate":
                if self.busy:
                    return None
                self.busy = True
                try:
                    [t.append, lambda _: t.pop(), lambda _: t.clear()][self.calls % 3](t_value(t))
                except (IndexError, ValueError, RuntimeError):
                    pass
                finally:
                    self.busy = False
            case "raise":
                raise RuntimeError("hostile allocator")
            case "zero":
                return 0
            case "foreign":
                return id(self) & ~15
            case "misaligned":
                return self.keep(n + 16) + 1
            case "small":
                return self.keep(8) if n > 8 else None
            case "nonint":
                return "an address"
        return None


def t_value(t):
    return DTYPES[t.dtype]


def live(pool):
    s = pool.stats()
    return s.live_blocks + s.large_live_blocks


# (name, operation on the container and a second one of the same kind, the same on a
# list model; None when the model cannot follow).
def vector_ops(x):
    return [
        ("append", lambda v, o: v.append(x), lambda m: m.append(x)),
        (
            "push_back x9",
            lambda v, o: [v.push_back(x) for _ in range(9)],
            lambda m: m.extend([x] * 9),
        ),
        ("extend", lambda v, o: v.extend([x] * 20), lambda m: m.extend([x] * 20)),
        ("+=", lambda v, o: v.__iadd__([x, x]), lambda m: m.extend([x, x])),
        ("insert", lambda v, o: v.insert(1, x), lambda m: m.insert(1, x)),
        ("setitem", lambda v, o: v.__setitem__(0, x), lambda m: m.__setitem__(0, x)),
        (
            "grow slice",
            lambda v, o: v.__setitem__(slice(1, 2), [x] * 40),
            lambda m: m.__setitem__(slice(1, 2), [x] * 40),
        ),
        ("getitem slice", lambda v, o: v[::2], None),
        ("copy", lambda v, o: v.copy(), None),
        (
            "del slice",
            lambda v, o: v.__delitem__(slice(None, None, 3)),
            lambda m: m.__delitem__(slice(None, None, 3)),
        ),
        ("pop", lambda v, o: v.pop(), lambda m: m.pop()),
        ("pop(0)", lambda v, o: v.pop(0), lambda m: m.pop(0)),
        ("del [0]", lambda v, o: v.__delitem__(0), lambda m: m.__delitem__(0)),
        ("remove", lambda v, o: v.remove(x), lambda m: m.remove(x)),
        ("erase", lambda v, o: v.erase(x), lambda m: remove_all(m, x)),
        ("erase_if", lambda v, o: v.erase_if(lambda y: y == x), lambda m: remove_all(m, x)),
        ("refill", lambda v, o: v.extend([x] * 5), lambda m: m.extend([x] * 5)),
        ("index/count/in", lambda v, o: (v.index(x), v.count(x), x in v), None),
        ("sort key", lambda v, o: v.sort(key=repr), lambda m: m.sort(key=repr)),
        ("reverse", lambda v, o: v.reverse(), lambda m: m.reverse()),
        ("==/repr/iter", lambda v, o: (v == o, repr(v), list(v), list(reversed(v))), None),
        ("reserve", lambda v, o: v.reserve(len(v) + 50), lambda m: None),
        ("shrink_to_fit", lambda v, o: v.shrink_to_fit(), lambda m: None),
        ("resize up", lambda v, o: v.resize(len(v) + 30, x), lambda m: m.extend([x] * 30)),
        ("resize down", lambda v, o: v.resize(3), lambda m: m.__delitem__(slice(3, None))),
        ("clear", lambda v, o: v.clear(), lambda m: m.clear()),
        ("shrink empty", lambda v, o: v.shrink_to_fit(), lambda m: None),
        ("refill", lambda v, o: v.extend([x] * 5), lambda m: m.extend([x] * 5)),
    ]


def remove_all(m, x):
    m[:] = [y for y in m if y != x]


def unique(m):
    m[:] = [y for i, y in enumerate(m) if i == 0 or y != m[i - 1]]


def list_ops(x):
    return [
        ("append", lambda q, o: q.append(x), lambda m: m.append(x)),
        ("appendleft", lambda q, o: q.appendleft(x), lambda m: m.insert(0, x)),
        ("extend", lambda q, o: q.extend([x] * 5), lambda m: m.extend([x] * 5)),
        (
            "extendleft",
            lambda q, o: q.extendleft([x, x]),
            lambda m: m.__setitem__(slice(0, 0), [x, x]),
        ),
        ("insert", lambda q, o: q.insert(1, x), lambda m: m.insert(1, x)),
        ("setitem", lambda q, o: q.__setitem__(0, x), lambda m: m.__setitem__(0, x)),
        ("pop", lambda q, o: q.pop(), lambda m: m.pop()),
        ("popleft", lambda q, o: q.popleft(), lambda m: m.pop(0)),
        ("del [1]", lambda q, o: q.__delitem__(1), lambda m: m.__delitem__(1)),
        ("erase", lambda q, o: q.erase(x), lambda m: remove_all(m, x)),
        ("refill", lambda q, o: q.extend([x, x, x]), lambda m: m.extend([x, x, x])),
        ("remove", lambda q, o: q.remove(x), lambda m: m.remove(x)),
        ("erase_if", lambda q, o: q.erase_if(lambda y: y == x), lambda m: remove_all(m, x)),
        ("refill", lambda q, o: q.extend([x, x, x]), lambda m: m.extend([x, x, x])),
        ("unique", lambda q, o: q.unique(), unique),
        ("sort key", lambda q, o: q.sort(key=repr), lambda m: m.sort(key=repr)),
        ("reverse", lambda q, o: q.reverse(), lambda m: m.reverse()),
        ("index/count/in", lambda q, o: (q.index(x), q.count(x), x in q), None),
        ("copy", lambda q, o: q.copy(), None),
        (
            "==/repr/iter",
            lambda q, o: (q == o, repr(q), list(q), list(reversed(q)), q.node_addresses()),
            None,
        ),
        ("splice", lambda q, o: q.splice(o), None),
        ("merge", lambda q, o: q.merge(o), None),
        ("clear", lambda q, o: q.clear(), lambda m: m.clear()),
        ("refill 2", lambda q, o: q.extend([x] * 4), lambda m: m.extend([x] * 4)),
    ]


def footprint(c):
    """Blocks the container holds."""
    if isinstance(c, stlalloc.List):
        return len(c)
    return 1 if c.capacity() else 0


def consistent(c):
    items = list(c)
    assert len(items) == len(c), "len agrees with iteration"
    assert list(reversed(c)) == items[::-1], "both directions agree"
    if isinstance(c, stlalloc.List):
        nodes = c.node_addresses()
        assert len(set(nodes)) == len(nodes) == len(c), "one node per element"
    else:
        assert c.capacity() >= len(c) and (c.data() != 0) == (c.capacity() > 0)
    return items


def run(kind, dtype, where, what, unraisable):
    pool = stlalloc.PoolAllocator()
    alloc = Hostile(pool, where, what)
    make = stlalloc.Vector if kind == "Vector" else stlalloc.List
    x = DTYPES[dtype]
    c = make([x, x, x], dtype=dtype, allocator=alloc)
    o = make([x], dtype=dtype, allocator=alloc)
    alloc.target = c
    ops = vector_ops(x) if kind == "Vector" else list_ops(x)
    model_follows = what not in ("mutate",)
    outcomes = collections.Counter()
    for name, op, model_op in ops:
        before = consistent(c)
        model = list(before)
        alloc.armed = True
        try:
            op(c, o)
            outcome = "ok"
        except Exception as e:  # a panic is a BaseException and ends the child
            outcome = type(e).__name__
        finally:
            alloc.armed = False
        assert outcome in EXPECTED, f"{kind} {dtype} {name}: {outcome}"
        outcomes[outcome] += 1
        after = consistent(c)
        consistent(o)
        if model_follows:
            if outcome != "ok":
                assert after == before, f"{kind} {dtype} {name}: {outcome} changed it"
            elif model_op is not None:
                model_op(model)
                assert after == model, f"{kind} {dtype} {name}: {after} != {model}"
        held = footprint(c) + footprint(o) + len(alloc.kept)
        assert live(pool) == held, f"{kind} {dtype} {name}: {live(pool)} blocks, {held} held"
        if name in ("splice", "merge") and not len(o):
            o.extend([x])
    alloc.target = None
    del c, o
    gc.collect()
    for p, n in alloc.kept:
        pool.deallocate(p, n)
    assert live(pool) == 0, f"{kind} {dtype}: {live(pool)} blocks leaked"
    return outcomes, alloc.calls


class Meddler:
    """An element whose comparisons, hash and finalizer use the container it is in."""

    def __init__(self, box, act):
        self.box, self.act = box, act

    def meddle(self):
        c = self.box[0]
        # One level deep (meddling elements meddle no further), and a few times only: an
        # `__eq__` that appends at every call makes `count` endless, for a list too.
        if c is not None and not self.box[1] and self.box[2] > 0:
            self.box[1] = True
            self.box[2] -= 1
            try:
                self.act(c)
            except (IndexError, ValueError, RuntimeError):
                pass
            finally:
                self.box[1] = False

    def __eq__(self, other):
        self.meddle()
        return other is self

    def __lt__(self, other):
        self.meddle()
        return id(self) < id(other)

    __hash__ = object.__hash__

    def __del__(self):
        self.meddle()


ACTS = {
    "read": lambda c: (len(c), list(c), c[0] if len(c) else None),
    "append": lambda c: c.append(0),
    "pop": lambda c: c.pop(),
    "clear": lambda c: c.clear(),
}


def callbacks(kind):
    """``__eq__``, ``__lt__``, key functions and ``__del__`` that use the container."""
    make = stlalloc.Vector if kind == "Vector" else stlalloc.List
    pool = stlalloc.PoolAllocator()
    outcomes = collections.Counter()
    for act_name, act in ACTS.items():
        ops = [
            ("index", lambda c, y: c.index(y)),
            ("count", lambda c, y: c.count(y)),
            ("in", lambda c, y: y in c),
            ("remove", lambda c, y: c.remove(y)),
            ("==", lambda c, y: c == make(list(c), allocator=pool)),
            ("sort", lambda c, y: c.sort()),
            ("sort key", lambda c, y, act=act: c.sort(key=lambda e: (act(c), id(e))[1])),
            ("pop", lambda c, y: c.pop()),
            ("del [0]", lambda c, y: c.__delitem__(0)),
            ("setitem", lambda c, y: c.__setitem__(0, y)),
            ("clear", lambda c, y: c.clear()),
            ("erase", lambda c, y: c.erase(y)),
            ("erase_if", lambda c, y: c.erase_if(lambda e: e == y)),
            ("<", lambda c, y: c < make([y], allocator=pool)),
            ("+ *", lambda c, y: (c + c, c * 2)),
            ("*=", lambda c, y: c.__imul__(2)),
            ("__init__", lambda c, y: c.__init__([y, y])),
            # The copy holds copies of the meddlers, which hold the copy: cleared, no cycle.
            ("deepcopy", lambda c, y: copy.deepcopy(c).clear()),
        ]
        if kind == "List":
            ops += [
                ("unique", lambda c, y: c.unique()),
                ("merge", lambda c, y: c.merge(make([y], allocator=pool))),
                ("rotate", lambda c, y: c.rotate(3)),
            ]
        else:
            ops += [("resize down", lambda c, y: c.resize(1))]
        for name, op in ops:
            box = [None, False, 4]
            c = make([Meddler(box, act) for _ in range(6)], allocator=pool)
            box[0] = c
            try:
                op(c, Meddler(box, act))
                outcome = "ok"
            except Exception as e:  # a panic is a BaseException and ends the child
                outcome = type(e).__name__
            assert outcome in EXPECTED, f"{kind} {act_name} {name}: {outcome}"
            outcomes[outcome] += 1
            consistent(c)
            assert live(pool) == footprint(c), f"{kind} {act_name} {name}: blocks"
            box[0] = None
            del c
            gc.collect()
            assert live(pool) == 0, f"{kind} {act_name} {name}: {live(pool)} blocks leaked"
    print(f"{kind} callbacks: {dict(outcomes)}")


def main(where, what):
    unraisable = []
    # Only the type: the hook's arguments would keep the failing frames (and containers) alive.
    sys.unraisablehook = lambda u: unraisable.append(type(u.exc_value).__name__)
    total = collections.Counter()
    calls = 0
    for kind in ("Vector", "List"):
        for dtype in DTYPES:
            outcomes, n = run(kind, dtype, where, what, unraisable)
            total += outcomes
            calls += n
    assert calls > 0, "the allocator never misbehaved"
    print(f"{where} {what}: {dict(total)} misbehaved {calls} times, {len(unraisable)} unraisable")


if __name__ == "__main__":
    if sys.argv[1] == "callbacks":
        callbacks(sys.argv[2])
    else:
        main(*sys.argv[1:])
