"""What one FF training step asks of a GPU: host<->device transfers and kernel launches per mini-batch.

Counted with ``benchmarks/gpu_opcount.py``'s stand-in (CuPy operations and transfers counted on numpy
arrays, the numba-cuda kernels in the simulator).  Each transfer is a synchronization of the host with
the GPU, and the step is bound by launches (BENCHMARKS.md, GPU backend): a change that adds one per
layer or per mini-batch fails here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "gpu_opcount", Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_opcount.py")
opcount = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(opcount)


@pytest.mark.parametrize(("profile", "mode", "most", "model"), [
    # (uploads, downloads, scalar reads, numba launches, array operations) per mini-batch of a 4-layer network
    # (before the engine's per-row kernels, ``ffsim.ff.kernels``: ideal 2, 2, 1, 4, 509; pcm 6, 6, 9, 32, 693, not
    # counting the pulse and refresh counts read back through numba; counting them, before they stayed on the
    # device and the update's prologue was fused (``pulse_maxima`` / ``pulse_factors``): pcm 5, 13, 0, 77, 250;
    # before the layers' updates went together (``Crossbar.pulse_updates``): pcm 5, 5, 0, 85, 202; before the DAC
    # was one launch and a pass's read charge one kernel (``read_charge``): pcm 2, 2, 0, 85, 203; before the pulse
    # update and the refresh listed their cells first, two launches each (``ffsim.gpu.kernels.COMPACT``):
    # pcm 2, 2, 0, 85, 155; before the trains were planned on the device (``plan_trains``; the maxima no longer
    # come back, the coefficients no longer go up): pcm 2, 2, 0, 93, 155)
    ("ideal", "ideal", (1, 1, 0, 49, 66), "ff"),
    ("pcm", "insitu", (1, 1, 0, 97, 158), "ff"),
    # the unsupervised network (before its hybrids were mixed on the device from uploaded partners and masks,
    # its images read back to the host and uploaded again with the hybrids: pcm 2, 1, 0, 73, 154, and a device
    # batch's download)
    ("pcm", "insitu", (1, 1, 0, 73, 162), "ff-unsupervised"),
])
def test_transfers_and_launches_per_ff_step(profile, mode, most, model):
    r = opcount.count_step(profile, mode, 4, width=8, steps=1, model=model)
    got = (r["uploads"], r["downloads"], r["scalar_reads"], r["numba_launches"], r["array_ops"])
    assert all(g <= m for g, m in zip(got, most, strict=True)), (got, r["transfers"])
    # the counts do not depend on the widths (what makes small layers stand in for 2000-wide ones)
    r2 = opcount.count_step(profile, mode, 4, width=5, steps=1, model=model)
    assert (r2["uploads"], r2["downloads"], r2["scalar_reads"], r2["numba_launches"], r2["array_ops"]) == got


def test_tile_gemms_do_not_grow_with_the_number_of_tiles():
    """A pcm array of 2000 rows spans 8 tiles of 256; on the GPU the full tiles' GEMMs go into one batched
    call (``Crossbar._tile_gemms``), so the operations per step are the same with 3 tiles per layer as with
    5 (tiles of 2 rows: 5-wide layers are 2 full tiles and 1 partial, 9-wide ones 4 and 1)."""
    few = opcount.count_step("pcm", "insitu", 4, width=5, steps=1, tile_rows=2)
    many = opcount.count_step("pcm", "insitu", 4, width=9, steps=1, tile_rows=2)
    assert few["ops"] == many["ops"] and few["numba_launches"] == many["numba_launches"]
    assert few["ops"]["matmul"] <= 38 + 8 * 2  # one-tile layers: 38; a remainder tile adds 2 per forward
