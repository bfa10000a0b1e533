"""ffsim.dispatch: one compiled variant of a kernel for named arrays of any strides."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from ffsim.crossbar import Crossbar
from ffsim.dispatch import AnyLayout, any_layout
from ffsim.profiles import list_profiles


def _zero_stride(value: float, shape) -> np.ndarray:
    return np.lib.stride_tricks.as_strided(np.full(1, value, np.float32), shape=shape, strides=(0,) * len(shape),
                                           writeable=True)


def _kernel():
    @any_layout("scale")
    @njit
    def weighted(x, scale, k, out):
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                out[i, j] = x[i, j] * scale[i, j] + k

    return weighted


def test_named_arrays_of_any_strides_share_one_compiled_variant():
    f = _kernel()
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    dense = np.full((3, 4), 2.0, np.float32)
    out1, out2, out3 = (np.empty_like(x) for _ in range(3))
    f(x, dense, 1.0, out1)
    f(x, _zero_stride(2.0, (3, 4)), 1.0, out2)
    f(x, dense[:, ::-1], k=1.0, out=out3)  # a negative-stride view, keywords bound to their positions
    assert len(f.signatures) == 1 and f.signatures[0][1].layout == "A"
    np.testing.assert_array_equal(out1, 2 * x + 1)
    np.testing.assert_array_equal(out2, out1)
    np.testing.assert_array_equal(out3, out1)
    # an argument it does not name keeps its own type: a non-contiguous x is another variant
    f(x[:, ::2], dense[:, :2], 1.0, np.empty((3, 2), np.float32))
    assert len(f.signatures) == 2
    # and a new scalar type another one (float32 arithmetic, not float64)
    f(x, dense, np.float32(1.0), out1)
    assert len(f.signatures) == 3 and {str(s[2]) for s in f.signatures} == {"float64", "float32"}


def test_a_name_the_kernel_does_not_have_is_refused_with_its_parameters():
    with pytest.raises(ValueError, match=r"weighted has no parameter\(s\) \['gain'\].*\['x', 'scale', 'k', 'out'\]"):
        @any_layout("gain")
        @njit
        def weighted(x, scale, k, out):
            pass


WRAPPED = ("adc_accumulate", "rebuild_caches", "program_masked", "pulse_aggregate", "pulse_exact", "refresh_pairs")


def test_every_shipped_profile_runs_one_variant_of_each_chip_kernel(monkeypatch):
    """The profiles differ in which device parameters vary from device to device (contiguous arrays) and which
    do not (zero-stride views): the chip kernels are compiled once for all of them."""
    seen: dict[str, set] = {n: set() for n in WRAPPED}
    call = AnyLayout.__call__

    def spy(self, *args, **kwargs):
        name = self.dispatcher.py_func.__name__
        if name in seen and not kwargs:
            seen[name].add(self.signature_for(args))
        return call(self, *args, **kwargs)

    monkeypatch.setattr(AnyLayout, "__call__", spy)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (4, 6)).astype(np.float32)
    d = rng.normal(0, 0.3, (4, 5)).astype(np.float32)
    for prof in list_profiles():
        for mode in ("aggregate", "exact"):
            c = Crossbar(prof, 6, 5, fab_seed=1, rng=2, pulse_mode=mode)
            c.program(rng.normal(0, 0.3, (6, 5)))
            c.forward(x)
            for _ in range(3):
                c.pulse_update(x, d, 0.5)
            c.advance(60.0)
            c.program(rng.normal(0, 0.3, (6, 5)), mask=rng.random((6, 5)) < 0.5)
            c.forward(x)
    ran = {n: len(s) for n, s in seen.items()}
    assert all(ran.values()), ran  # every wrapped kernel ran
    assert ran == {n: 1 for n in WRAPPED}, {n: sorted(map(str, s)) for n, s in seen.items() if len(s) > 1}
