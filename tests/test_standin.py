"""``ffsim.gpu.standin``: numpy arrays that stand in for CuPy's, each operation seen once, by name."""

from __future__ import annotations

import numpy as np

from ffsim.gpu.standin import Namespace, StandIn, is_fancy, raw


class Seen(StandIn):
    METHODS = ("sum", "reshape")
    log: list = []

    @classmethod
    def _operate(cls, name, fn, args, kwargs, result=True):
        cls.log.append((name, result))
        return super()._operate(name, fn, args, kwargs, result)

    def _scalar(self, f):
        self.log.append(("read", True))
        return f(self.view(np.ndarray))


def test_operations_are_seen_by_name_and_results_stay_on_the_device():
    Seen.log.clear()
    a = np.arange(6, dtype=np.float32).reshape(2, 3).view(Seen)
    b = a[0]  # basic indexing: a view, no operation
    assert Seen.log == [] and isinstance(b, Seen) and np.shares_memory(raw(b), raw(a))
    c = a[np.array([1, 0])]  # fancy: a gather
    s = (a * 2).sum()  # a ufunc, then a listed method: a reduction to a 0-d device array, not a host scalar
    a[0, 0] = 5.0
    m = np.matmul(a, a.T)
    f = a.astype(np.float64).reshape(6)
    assert [n for n, _ in Seen.log] == ["getitem (fancy)", "multiply", ".sum", "setitem", "matmul", "astype",
                                        ".reshape"]
    assert [r for _, r in Seen.log] == [True, True, True, False, True, True, True]  # an assignment has no result
    assert all(type(v) is Seen for v in (c, s, m, f)) and s.shape == () and raw(a)[0, 0] == 5.0
    Seen.log.clear()
    assert float(s) == 30.0 and int(s) == 30 and bool(s) and s.item() == 30.0
    assert Seen.log == [("read", True)] * 4
    np.add.reduce(a, axis=0)
    assert Seen.log[-1] == ("add.reduce", True)


def test_raw_and_fancy_keys():
    a = np.zeros(3).view(Seen)
    r = raw({"x": [a, (a, 1)]})
    assert type(r["x"][0]) is np.ndarray and type(r["x"][1][0]) is np.ndarray and r["x"][1][1] == 1
    assert is_fancy(np.array([0])) and is_fancy((slice(None), [1, 2])) and not is_fancy((0, slice(1, 2)))


def test_a_namespace_makes_numpy_functions_operations_of_its_array_class():
    class XP(Namespace):
        ndarray = Seen

    xp = XP()
    Seen.log.clear()
    z = xp.zeros((2, 3), dtype=np.float32)
    w = xp.where(z > 0, z, 1.0)
    assert [n for n, _ in Seen.log] == ["zeros", "greater", "where"]
    assert type(z) is Seen and type(w) is Seen and raw(w).sum() == 6.0
    assert xp.float32 is np.float32 and xp.pi == np.pi and xp.ndarray is Seen  # types and constants as they are
