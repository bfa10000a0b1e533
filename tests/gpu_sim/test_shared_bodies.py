"""The GPU twins of the device physics are the CPU helpers' own bodies (``ffsim.gpu.twin``), not copies."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

import ffsim  # noqa: F401  (before numpy)
from ffsim.crossbar import kernels as xbar
from ffsim.crossbar import periphery
from ffsim.devices import physics, program, pulse, refresh, rng
from ffsim.ff import weights
from ffsim.gpu import kernels as gk
from ffsim.gpu import rng as grng
from ffsim.gpu import twin


def _body(f):
    """The Python function a CUDA device function runs (simulator: ``fn``; numba-cuda: ``py_func``)."""
    return getattr(f, "py_func", None) or f.fn


SHARED = [
    (gk._min, physics.smin), (gk._max, physics.smax), (gk._lut_eval, physics.lut_eval),
    (gk._mean_step, physics.mean_step), (gk._step_device, pulse._step_device), (gk._cell_pulses, pulse._cell_pulses),
    (gk._redraw_write_noise, pulse._redraw_write_noise), (gk._refresh_cache_cell, pulse.refresh_cache_cell),
    (gk._popcount64, pulse.popcount64), (gk._pulse_count, pulse._pulse_count), (gk._pulse_train, pulse._pulse_train),
    (gk._exact_cell, pulse._exact_cell), (gk._cell_done, pulse._cell_done), (gk._poly, refresh._poly),
    (gk._nu, refresh._nu), (gk._refresh_cell, refresh._refresh_cell), (gk._write_device, program._write_device),
    (gk._program_cell, program._program_cell), (gk._dprof, xbar._dprof), (gk._row_load, xbar._row_load),
    (gk._column_load, xbar._column_load), (gk._cache_cell, xbar._cache_cell),
    (gk._ref_var_row, xbar._ref_var_row), (gk._column_total, xbar._column_total),
    (gk._tanh_rational, periphery.tanh_rational), (gk._dac_value, periphery._dac_value),
    (gk._dac_scale, periphery._dac_scale), (gk._dac_square, periphery._dac_square), (gk._train_bits, pulse._train_bits),
    (gk._adc_analog, periphery._adc_analog), (gk._adc_compress, periphery._adc_compress),
    (gk._adc_quantize, periphery._adc_quantize), (gk._smoothed_cell, weights._smoothed_cell),
    (grng.mix64, rng.mix64), (grng.word_at, rng.word_at),
    (grng.uniform_at, rng.uniform_at), (grng.normal_at, rng.normal_at),
    (grng.normal32_from_word, rng.normal32_from_word), (grng.poisson_at, rng.poisson_at), (grng._word32, rng._word32),
]


@pytest.mark.parametrize(("gpu", "cpu"), SHARED, ids=[c.py_func.__qualname__ for _, c in SHARED])
def test_the_twin_runs_the_cpu_helpers_code(gpu, cpu):
    assert _body(gpu).__code__ is cpu.py_func.__code__


def test_a_twins_callees_are_twins_too():
    g = _body(gk._step_device).__globals__
    assert g["mean_step"] is gk._mean_step and g["normal32_from_word"] is grng.normal32_from_word
    assert pulse._step_device.py_func.__globals__["mean_step"] is physics.mean_step  # the CPU's own: untouched


def test_rebound_names_what_is_wrong():
    with pytest.raises(TypeError, match=r"_step_device.*CPU functions \['mean_step', 'normal32_from_word'\]"):
        twin.rebound(pulse._step_device)
    with pytest.raises(TypeError, match=r"_poly.*does not use \['mean_stp'\]"):
        twin.rebound(refresh._poly, mean_stp=gk._mean_step)


def test_a_shared_body_gives_the_cpu_numbers_in_the_simulator():
    """A leaf with float32 arithmetic: run as Python on numpy scalars (the simulator) it rounds as numba does."""
    table = np.linspace(0.1, 2.0, 33).astype(np.float32)
    xs = np.linspace(-0.5, 40.0, 257)
    cpu = njit(lambda t, s, x: physics.lut_eval(t, s, x))
    sim = twin.rebound(physics.lut_eval)  # the plain Python body, as the simulator runs it
    for x in xs:
        assert sim(table, np.float64(0.8), x) == cpu(table, 0.8, x)
