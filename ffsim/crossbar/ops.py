"""Operation counter of a chip, and its conversion to energy and latency by a profile's ``[cost]``.

The counter is public and measurable (a real chip can count its conversions and pulses); it reveals no
hidden device state.  Energy model:

* each DAC and ADC conversion costs ``dac_energy_pJ`` / ``adc_energy_pJ``;
* each weight use (one multiply-accumulate, ``macs``) costs ``mac_energy_fJ`` (the whole MAC of a
  digital profile, or a sensing overhead);
* each device read costs its physical energy V²·G·t_int, where V is the read voltage times the converted
  input (|x| ≤ 1 at full scale) and G the device's conductance at that moment; the counter accumulates
  Σ x²·G·t_int exactly (via row sums of G) and multiplies by V²;
* each device pulse (update or write-verify programming) costs ``pulse_energy_pJ``.

On the GPU backend the read charge of a pass and the pulse count of an update are device scalars: reading
each back would synchronize the host with the GPU every time, so :meth:`OpCounter.defer` and
:meth:`OpCounter.defer_counts` keep them pending and the counter adds the pending values (one transfer for
all, in the order they came and with the CPU's per-call arithmetic, so the totals equal the CPU's
bookkeeping) when any count is next read, or when 1024 are pending.  The chip's own increments on its hot
path go through :meth:`OpCounter.add`, which settles nothing (``+=`` reads the count first, and a read
settles).

Latency model: all tiles of a crossbar work in parallel; one MVM (all tiles, one input vector) takes
``dac_time_ns + integration_time_ns + adc_time_ns``; one pulse slot of an update takes ``pulse_time_ns``
for every row and column at once; programming goes row by row, ``write_verify_pulses`` iterations of
(pulse + verify read) per row of the largest tile.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ffsim.profiles import CostSpec

__all__ = ["OpCounter"]


@dataclass
class OpCounter:
    """Counts of what a chip (or several) did; add counters with ``+``."""

    dac_conversions: int = 0
    adc_conversions: int = 0
    macs: int = 0
    """Weight uses (one multiply-accumulate each, whatever the number of devices per weight)."""
    cell_reads: int = 0
    """Device reads (a differential pair is two; reference columns count too)."""
    read_charge_S_s: float = 0.0
    """Σ x²·G·t_int over cell reads (siemens·seconds); times V_read² gives joules."""
    mvm_cycles: int = 0
    """Input vectors pushed through the arrays (forward, transposed or verify reads)."""
    device_pulses: int = 0
    update_slots: int = 0
    """Pulse slots of in-situ updates (Σ of train lengths over samples)."""
    program_steps: int = 0
    """Row-sequential write-verify steps (pulse + verify)."""

    _PENDING_MAX = 1024

    def __getattribute__(self, name: str):
        if name in _FIELDS and object.__getattribute__(self, "__dict__").get("_pending"):
            object.__getattribute__(self, "_flush")()
        return object.__getattribute__(self, name)

    def add(self, **counts) -> None:
        """Add to counts without settling the pending device values (the chip's hot path)."""
        d = self.__dict__
        for name, v in counts.items():
            d[name] = d[name] + v

    def defer(self, xp, value, *factors: float) -> None:
        """Add ``value · factors[0] · factors[1] …`` (multiplied in that order) to ``read_charge_S_s``
        later: ``value`` a 0-d array of module ``xp`` (the backend's; a device scalar on the GPU)."""
        self._pend(xp, value.reshape(1), factors)

    def defer_counts(self, xp, value, counts) -> None:
        """Add ``counts(*n)`` (a dict of count → increment) later, ``n`` the ints in the 1-D integer array
        ``value`` of module ``xp`` (device counters on the GPU)."""
        self._pend(xp, value.reshape(-1), counts)

    def _pend(self, xp, value, how) -> None:
        pending = self.__dict__.setdefault("_pending", [])
        pending.append((xp, value, how))
        if len(pending) >= self._PENDING_MAX:
            self._flush()

    def _flush(self) -> None:
        pending = self.__dict__.pop("_pending")
        xp = pending[0][0]
        # one transfer: counts travel as float64 (exact below 2**53)
        values = [v if isinstance(how, tuple) else v.astype(np.float64) for _, v, how in pending]
        host = _to_host(xp, xp.concatenate(values)).tolist()
        d = self.__dict__
        total = d["read_charge_S_s"]
        k = 0
        for (_, v, how) in pending:
            if isinstance(how, tuple):
                x = float(host[k])
                for f in how:
                    x = x * f
                total += x
            else:
                for name, inc in how(*(int(c) for c in host[k:k + v.size])).items():
                    d[name] = d[name] + inc
            k += v.size
        d["read_charge_S_s"] = total

    def __add__(self, other: OpCounter) -> OpCounter:
        return OpCounter(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def __sub__(self, other: OpCounter) -> OpCounter:
        return OpCounter(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def copy(self) -> OpCounter:
        return OpCounter(**asdict(self))

    def reset(self) -> None:
        self.__dict__.pop("_pending", None)
        for f in fields(self):
            setattr(self, f.name, type(getattr(self, f.name))(0))

    def energy_J(self, cost: CostSpec) -> dict[str, float]:
        """Energy by component and in total (joules)."""
        e = {
            "dac": self.dac_conversions * cost.dac_energy_pJ * 1e-12,
            "adc": self.adc_conversions * cost.adc_energy_pJ * 1e-12,
            "mac": self.macs * cost.mac_energy_fJ * 1e-15,
            "cell_read": self.read_charge_S_s * cost.read_voltage_V**2,
            "pulses": self.device_pulses * cost.pulse_energy_pJ * 1e-12,
        }
        e["total"] = sum(e.values())
        return e

    def latency_s(self, cost: CostSpec) -> dict[str, float]:
        """Latency by component and in total (seconds), tiles in parallel, operations in sequence."""
        t_mvm = (cost.dac_time_ns + cost.integration_time_ns + cost.adc_time_ns) * 1e-9
        t = {
            "mvm": self.mvm_cycles * t_mvm,
            "update": self.update_slots * cost.pulse_time_ns * 1e-9,
            "program": self.program_steps * (cost.pulse_time_ns + cost.integration_time_ns) * 1e-9,
        }
        t["total"] = sum(t.values())
        return t

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


_FIELDS = frozenset(f.name for f in fields(OpCounter))


def _to_host(xp, a):
    return xp.asnumpy(a) if hasattr(xp, "asnumpy") else a
