"""Actions: Vectors and Lists over small pools whose growth fails midway."""

from __future__ import annotations

import functools
import gc

import stlalloc
from stlalloc import AllocatorError

from .model import (
    Cont,
    check,
    container_kinds,
)


class ContainerActions:
    """Container operations, checked against a Python list."""

    def value_for(self, dtype):
        rng = self.rng
        if dtype == "int64":
            return rng.choice([rng.randint(-(2**63), 2**63 - 1), rng.randint(-5, 5)])
        if dtype == "float64":
            return rng.choice([rng.uniform(-1e9, 1e9), 0.5, -0.0, float(rng.randint(0, 9))])
        return rng.choice([rng.randint(0, 9), "s" * rng.randint(0, 3), (1, 2), None, 2.5])

    def act_container(self):
        kinds = container_kinds()
        if not kinds:
            return
        rng = self.rng
        if len(self.conts) < 4 or rng.random() < 0.02:
            if len(self.conts) >= 6:
                self.conts.pop(rng.randrange(len(self.conts))).export = None
                gc.collect()
            kind = rng.choice(kinds)
            dtype = rng.choice(["int64", "float64", "object"])
            pool = rng.choice(self.cont_pools + self.cont_mallocs)
            items = [self.value_for(dtype) for _ in range(rng.randint(0, 40))]
            make = functools.partial(getattr(stlalloc, kind), dtype=dtype, allocator=pool.obj)
            done, obj = self.api(f"{kind}(..)", make, items, ok=(MemoryError,))
            if done:
                check(list(obj) == items, f"{kind} built from a list")
                check(obj.get_allocator() is pool.obj, "get_allocator")
                self.conts.append(Cont(kind, dtype, obj, pool))
            return
        c = rng.choice(self.conts)
        getattr(self, "cont_" + c.kind.lower())(c)
        check(len(c.obj) == len(c.model), f"{c.kind} length {len(c.obj)} != {len(c.model)}")
        if rng.random() < 0.2:
            check(list(c.obj) == c.model, f"{c.kind} contents differ from the model")

    def cont_op(self, c, what, fn, *args, grows=False, exact=None):
        """One container call; on MemoryError (growth failed midway) it must be intact."""
        state = (list(c.obj), c.obj.capacity() if c.kind == "Vector" else None)
        done, r = self.api(
            f"{c.kind}.{what}", fn, *args, ok=(MemoryError,) if grows else (), exact=exact
        )
        if not done:
            after = (list(c.obj), c.obj.capacity() if c.kind == "Vector" else None)
            check(after == state, f"{c.kind}.{what} raised {r!r} and changed the container")
        return done, r

    def bad_value(self, c):
        """A value the container must refuse, and the exception."""
        if c.dtype == "int64":
            return self.rng.choice(
                [
                    (2**63, OverflowError),
                    (-(2**63) - 1, OverflowError),
                    ("x", TypeError),
                    (1.5, TypeError),
                ]
            )
        if c.dtype == "float64":
            return self.rng.choice([("x", TypeError), (None, TypeError)])
        return None

    def stored(self, c, x):
        return float(x) if c.dtype == "float64" else x

    def cont_common(self, c):
        """Operations both containers share; True if one ran."""
        rng = self.rng
        r = rng.random()
        obj, model = c.obj, c.model
        if r < 0.3:
            x = self.value_for(c.dtype)
            done, _ = self.cont_op(c, "append", obj.append, x, grows=True)
            if done:
                model.append(self.stored(c, x))
        elif r < 0.4:
            xs = [self.value_for(c.dtype) for _ in range(rng.choice([1, 5, 50, 300]))]
            done, _ = self.cont_op(c, f"extend({len(xs)})", obj.extend, xs, grows=True)
            if done:
                model.extend(self.stored(c, x) for x in xs)
        elif r < 0.55:
            if model:
                done, x = self.cont_op(c, "pop", obj.pop)
                check(x == model.pop() or x != x, "pop returned another element")
            else:
                self.cont_op(c, "pop() on empty", obj.pop, exact=IndexError)
        elif r < 0.62:
            bad = self.bad_value(c)
            if bad is not None:
                self.cont_op(c, f"append({bad[0]!r})", obj.append, bad[0], exact=bad[1])
        elif r < 0.68:
            i = len(model) + rng.randint(0, 3)
            self.cont_op(c, "[len]", obj.__getitem__, i, exact=IndexError)
        elif r < 0.74 and model:
            i = rng.randrange(-len(model), len(model))
            x = self.value_for(c.dtype)
            self.cont_op(c, "__setitem__", obj.__setitem__, i, x)
            model[i] = self.stored(c, x)
        elif r < 0.78 and model:
            i = rng.randrange(len(model))
            self.cont_op(c, "__delitem__", obj.__delitem__, i)
            del model[i]
        elif r < 0.82:
            i = rng.randint(0, len(model))
            x = self.value_for(c.dtype)
            done, _ = self.cont_op(c, "insert", obj.insert, i, x, grows=True)
            if done:
                model.insert(i, self.stored(c, x))
        elif r < 0.85:
            self.cont_op(c, "reverse", obj.reverse)
            model.reverse()
        elif r < 0.88:
            try:
                want = sorted(model)
            except TypeError:
                return True
            self.cont_op(c, "sort", obj.sort)
            model[:] = want
        elif r < 0.9:
            self.cont_op(c, "clear", obj.clear)
            model.clear()
        elif r < 0.93:
            done, cp = self.cont_op(c, "copy", obj.copy, grows=True)
            if done:
                check(list(cp) == model and cp.get_allocator() is c.pool.obj, "copy")
                del cp
        elif r < 0.95 and c.dtype == "object" and len(model) < 50:
            # A cycle through the container: the garbage collector must free it.
            done, _ = self.cont_op(c, "append(itself)", obj.append, obj, grows=True)
            if done:
                model.append(obj)
        else:
            return False
        return True

    def cont_vector(self, c):
        rng = self.rng
        v, model = c.obj, c.model
        if c.export is not None:
            # Exported storage may not move: growing past the capacity is a BufferError,
            # growing within it is fine.
            if len(model) == v.capacity():
                self.cont_op(
                    c, "append while exported", v.append, self.value_for(c.dtype), exact=BufferError
                )
            else:
                x = self.value_for(c.dtype)
                self.cont_op(c, "append within capacity while exported", v.append, x)
                model.append(self.stored(c, x))
            self.cont_op(
                c,
                "reserve past capacity while exported",
                v.reserve,
                v.capacity() + 1,
                exact=BufferError,
            )
            check(c.export.tolist() == model[: len(c.export)], "the export shows other values")
            if rng.random() < 0.3:
                c.export.release()
                c.export = None
            return
        if self.cont_common(c):
            return
        r = rng.random()
        if r < 0.3:
            n = rng.choice([0, len(model), len(model) + 1, 2 * len(model) + 64, 5000])
            done, _ = self.cont_op(c, f"reserve({n})", v.reserve, n, grows=True)
            if done:
                check(v.capacity() >= n, "reserve")
        elif r < 0.5:
            n = rng.randint(0, len(model) + 20)
            x = self.value_for(c.dtype)
            done, _ = self.cont_op(c, f"resize({n})", v.resize, n, x, grows=True)
            if done:
                model[:] = model[:n] + [self.stored(c, x)] * (n - len(model))
        elif r < 0.6:
            self.cont_op(c, "shrink_to_fit", v.shrink_to_fit, grows=True)
        elif r < 0.7:
            self.cont_op(c, "reserve(-1)", v.reserve, -1, exact=ValueError)
        elif r < 0.9 and c.dtype != "object" and c.export is None:
            _, c.export = self.api("memoryview(Vector)", memoryview, v)
        else:
            if model:
                check(v.front() == model[0] or model[0] != model[0], "front")
                check(v.back() == model[-1] or model[-1] != model[-1], "back")
            else:
                self.cont_op(c, "front() on empty", v.front, exact=IndexError)

    def cont_list(self, c):
        rng = self.rng
        lst, model = c.obj, c.model
        if self.cont_common(c):
            return
        r = rng.random()
        if r < 0.3:
            x = self.value_for(c.dtype)
            done, _ = self.cont_op(c, "appendleft", lst.appendleft, x, grows=True)
            if done:
                model.insert(0, self.stored(c, x))
        elif r < 0.45:
            if model:
                done, x = self.cont_op(c, "popleft", lst.popleft)
                check(x == model.pop(0) or x != x, "popleft")
            else:
                self.cont_op(c, "popleft() on empty", lst.popleft, exact=IndexError)
        elif r < 0.65:
            others = [
                o for o in self.conts if o.kind == "List" and o is not c and o.dtype == c.dtype
            ]
            if not others:
                return
            o = rng.choice(others)
            # Equal allocators: the same pool, or any two MallocAllocators (SPEC §8).
            if o.pool is c.pool or not (o.pool.is_pool or c.pool.is_pool):
                self.cont_op(c, "splice", lst.splice, o.obj)
                model.extend(o.model)
                o.model.clear()
                check(len(o.obj) == 0, "splice leaves the other list empty")
            else:
                before = list(o.obj)
                self.cont_op(c, "splice(other allocator)", lst.splice, o.obj, exact=AllocatorError)
                check(list(o.obj) == before, "a refused splice changed the other list")
        elif r < 0.8:
            xs = [self.value_for(c.dtype) for _ in range(rng.choice([1, 5, 50]))]
            done, _ = self.cont_op(c, "extendleft", lst.extendleft, xs, grows=True)
            if done:
                model[:0] = [self.stored(c, x) for x in reversed(xs)]
        else:
            addrs = lst.node_addresses()
            check(len(addrs) == len(model) and len(set(addrs)) == len(addrs), "node addresses")
            check(all(c.pool.obj.owns(p) for p in addrs[:8]), "nodes live in the allocator")
