"""The hardware-profile schema: frozen, validated dataclasses, one per TOML section.

A hardware profile describes one technology: its memory device (conductance range, levels,
programming and read noise, drift, faults, device-to-device spread), its pulsed-update response, its
converters (DAC, ADC), its tile geometry and its energy and latency per operation.

Every field carries its unit and a docstring in its metadata; :mod:`ffsim.profiles.loader` walks these
specs to validate a TOML file as a whole, and ``ffsim profiles show`` prints the units.  Units are part
of the key names where a physical unit applies (``g_max_uS``, ``t0_s``, ``adc_energy_pJ``).  Quantities
in "state units" are the dimensionless coordinate of the pulsed-update model (aihwkit's ``w``; see
:class:`UpdateSpec`); "normalized units" of the converters are those of an analog output where an input
at full DAC scale meets a cell at full weight scale.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ADCSpec",
    "CostSpec",
    "DACSpec",
    "DeviceSpec",
    "DriftSpec",
    "FaultSpec",
    "HardwareProfile",
    "Meta",
    "ProgrammingSpec",
    "ReadNoiseSpec",
    "TileSpec",
    "UpdateSpec",
    "VariationSpec",
]


def param(
    default: Any = dataclasses.MISSING,
    *,
    unit: str = "",
    doc: str,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """Declare a profile parameter with its unit, documentation and allowed range."""
    meta = {"unit": unit, "doc": doc, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices}
    if isinstance(default, list):
        default = tuple(default)
    return field(default=default, metadata=meta)


def section(cls: type, doc: str) -> Any:
    """Declare a nested section (a TOML sub-table)."""
    return field(default_factory=cls, metadata={"section": True, "doc": doc})


class _SpecMixin:
    """Equality, hashing (from ``dataclass(frozen=True)``) and a repr of the non-default fields."""

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.default is not dataclasses.MISSING and value == f.default:
                continue
            if f.default_factory is not dataclasses.MISSING and value == f.default_factory():
                continue
            parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def as_dict(self) -> dict[str, Any]:
        """Plain nested dict of the resolved values (tuples become lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, _SpecMixin):
                out[f.name] = value.as_dict()
            elif isinstance(value, tuple):
                out[f.name] = list(value)
            else:
                out[f.name] = value
        return out


@dataclass(frozen=True, kw_only=True, repr=False)
class Meta(_SpecMixin):
    """``[meta]``: what the profile is and where its numbers come from."""

    name: str = param(doc="Short name of the profile (the file stem by convention).")
    description: str = param(doc="One or two sentences on the technology.")
    references: tuple[str, ...] = param((), doc="Full citations; sources refer to them as [1], [2], ...")


@dataclass(frozen=True, kw_only=True, repr=False)
class ProgrammingSpec(_SpecMixin):
    """``[device.programming]``: write-verify programming of a target conductance."""

    noise_poly_uS: tuple[float, ...] = param(
        (),
        unit="µS",
        doc="Residual programming-noise std after write-verify, a polynomial in x = g/g_max: "
        "σ_prog(g) = Σ_k c_k x^k (clamped at 0). Empty: exact programming.",
    )


@dataclass(frozen=True, kw_only=True, repr=False)
class ReadNoiseSpec(_SpecMixin):
    """``[device.read_noise]``: fresh noise on every read of a cell."""

    model: str = param(
        "none",
        doc="'none'; 'poly': σ_read(g) = Σ_k c_k (g/g_max)^k µS; 'pcm_1f': 1/f noise of the PCM model, "
        "σ = min(q_coeff/(g/g_max)^q_exponent, q_max) · g · sqrt(ln((t + t_read)/(2 t_read))), "
        "t the time since programming.",
        choices=("none", "poly", "pcm_1f"),
    )
    poly_uS: tuple[float, ...] = param((), unit="µS", doc="Polynomial coefficients for model 'poly'.")
    q_coeff: float = param(0.0, doc="Q_s coefficient of model 'pcm_1f'.", ge=0.0)
    q_exponent: float = param(0.0, doc="Q_s exponent of model 'pcm_1f'.", ge=0.0)
    q_max: float = param(0.0, doc="Upper clamp of Q_s in model 'pcm_1f'.", ge=0.0)
    t_read_s: float = param(250e-9, unit="s", doc="Read (integration) time of model 'pcm_1f'.", gt=0.0)
    t_min_s: float = param(
        20.0,
        unit="s",
        doc="Model 'pcm_1f': reads earlier than this after programming are evaluated at this time "
        "(the 1/f formula vanishes at t -> t_read; the PCM model's first read is at t0 = 20 s).",
        gt=0.0,
    )


@dataclass(frozen=True, kw_only=True, repr=False)
class DriftSpec(_SpecMixin):
    """``[device.drift]``: power-law conductance drift G(t) = G(t0) (t/t0)^-ν after programming.

    ν is drawn per device when it is programmed, from a normal distribution whose mean and std depend
    on the programmed state: ``mean(g) = clip(nu_mean_ln_coeff · ln(g/g_max) + nu_mean_offset,
    nu_mean_min, nu_mean_max)`` and likewise for the std; ν is clipped at 0.
    """

    model: str = param("none", doc="'none' or 'power_law'.", choices=("none", "power_law"))
    t0_s: float = param(20.0, unit="s", doc="Reference time after programming; no drift before it.", gt=0.0)
    nu_mean_ln_coeff: float = param(0.0, doc="Coefficient of ln(g/g_max) in the mean drift exponent.")
    nu_mean_offset: float = param(0.0, doc="Offset of the mean drift exponent.")
    nu_mean_min: float = param(0.0, doc="Lower clamp of the mean drift exponent.", ge=0.0)
    nu_mean_max: float = param(1.0, doc="Upper clamp of the mean drift exponent.", ge=0.0)
    nu_std_ln_coeff: float = param(0.0, doc="Coefficient of ln(g/g_max) in the drift-exponent std.")
    nu_std_offset: float = param(0.0, doc="Offset of the drift-exponent std.")
    nu_std_min: float = param(0.0, doc="Lower clamp of the drift-exponent std.", ge=0.0)
    nu_std_max: float = param(1.0, doc="Upper clamp of the drift-exponent std.", ge=0.0)


@dataclass(frozen=True, kw_only=True, repr=False)
class FaultSpec(_SpecMixin):
    """``[device.faults]``: devices stuck from fabrication on; programming and pulses do not move them."""

    stuck_at_gmin_fraction: float = param(
        0.0, unit="fraction", doc="Fraction of devices stuck at g_min (stuck-off).", ge=0.0, le=1.0
    )
    stuck_at_gmax_fraction: float = param(
        0.0, unit="fraction", doc="Fraction of devices stuck at g_max (stuck-on).", ge=0.0, le=1.0
    )


@dataclass(frozen=True, kw_only=True, repr=False)
class VariationSpec(_SpecMixin):
    """``[device.variation]``: device-to-device spread, drawn once from the fabrication seed."""

    g_max_rel_std: float = param(
        0.0, unit="relative", doc="Relative std of each device's maximum conductance.", ge=0.0
    )
    dw_min_rel_std: float = param(
        0.0, unit="relative", doc="Relative std of each device's pulse step size dw_min.", ge=0.0
    )
    up_down_std: float = param(0.0, doc="Std of each device's up/down asymmetry β (absolute).", ge=0.0)
    gamma_std: float = param(0.0, doc="Std of each device's γ_up and γ_down (absolute).", ge=0.0)


@dataclass(frozen=True, kw_only=True, repr=False)
class DeviceSpec(_SpecMixin):
    """``[device]``: the memory device and how a signed weight is stored on it."""

    mapping: str = param(
        doc="'differential': w ∝ G⁺ − G⁻ on a device pair; 'reference': w ∝ G − G_ref on one device, "
        "G_ref a reference column programmed to reference_state; 'ideal': float weights, no devices.",
        choices=("differential", "reference", "ideal"),
    )
    g_min_uS: float = param(0.0, unit="µS", doc="Minimum (fully RESET) conductance.", ge=0.0)
    g_max_uS: float = param(0.0, unit="µS", doc="Maximum conductance (nominal).", ge=0.0)
    levels: int = param(
        0,
        doc="Distinct programmable conductance levels per device, evenly spaced over [g_min, g_max]; "
        "0 = continuous.",
        ge=0,
    )
    programming: ProgrammingSpec = section(ProgrammingSpec, "Write-verify programming.")
    read_noise: ReadNoiseSpec = section(ReadNoiseSpec, "Read noise.")
    drift: DriftSpec = section(DriftSpec, "Conductance drift.")
    faults: FaultSpec = section(FaultSpec, "Stuck devices.")
    variation: VariationSpec = section(VariationSpec, "Device-to-device variation.")


@dataclass(frozen=True, kw_only=True, repr=False)
class UpdateSpec(_SpecMixin):
    """``[update]``: the in-situ pulsed update (stochastic pulse trains, Gokmen & Vlasov 2016).

    The device state u is a dimensionless coordinate affine in the conductance: ``state_min`` is g_min
    and ``state_max`` is g_max (aihwkit's ``w_min``/``w_max``). One pulse in direction d (+1 up,
    −1 down) changes u by d·dw_d·f_d(u), with dw_up = dw_min (1 + β), dw_down = dw_min (1 − β) and

    * 'linear': f_up = 1 − γ_up u/state_max, f_down = 1 − γ_down u/state_min (γ = 1: soft bounds;
      γ = 0: constant step);
    * 'exponential': z = 2 a u/(state_max − state_min) + b, f_d = max(1 − A_d exp(d γ_d z), 0);
    * 'power': ω = (state_max − u)/(state_max − state_min), f_up = ω^γ_up, f_down = (1 − ω)^γ_down;

    plus cycle-to-cycle noise of std ``step_noise_rel``·|step| + dw_min·(``step_noise_add`` +
    ``step_noise_state``·|u|), then clipping at the device's bounds.
    """

    model: str = param(
        "none",
        doc="'none' (no in-situ update), 'linear', 'exponential' or 'power'.",
        choices=("none", "linear", "exponential", "power"),
    )
    polarity: str = param(
        "bidirectional",
        doc="'bidirectional': a device steps up and down; 'set_only': only gradual up steps (PCM SET), "
        "the down direction of the weight is an up step of the partner device, with periodic refresh.",
        choices=("bidirectional", "set_only"),
    )
    state_min: float = param(-1.0, unit="state", doc="State coordinate of g_min.")
    state_max: float = param(1.0, unit="state", doc="State coordinate of g_max.")
    reference_state: float = param(
        0.0, unit="state", doc="State read as zero weight with the 'reference' mapping (symmetry point)."
    )
    dw_min: float = param(0.0, unit="state", doc="Mean step per pulse at u = 0.", ge=0.0)
    up_down: float = param(0.0, doc="Up/down asymmetry β: dw_up = dw_min (1+β), dw_down = dw_min (1−β).",
                           gt=-1.0, lt=1.0)
    gamma_up: float = param(0.0, doc="Nonlinearity of up steps (slope, exponent or rate by model).", ge=0.0)
    gamma_down: float = param(0.0, doc="Nonlinearity of down steps.", ge=0.0)
    exp_a: float = param(0.0, doc="Slope a of the 'exponential' model.")
    exp_b: float = param(0.0, doc="Offset b of the 'exponential' model.")
    exp_A_up: float = param(0.0, doc="Factor A_up of the 'exponential' model.")
    exp_A_down: float = param(0.0, doc="Factor A_down of the 'exponential' model.")
    step_noise_rel: float = param(0.0, unit="relative", doc="Cycle-to-cycle std relative to the step.",
                                  ge=0.0)
    step_noise_add: float = param(0.0, unit="dw_min", doc="Additive cycle-to-cycle std per pulse.", ge=0.0)
    step_noise_state: float = param(0.0, unit="dw_min/state", doc="Cycle-to-cycle std growing with |u|.",
                                    ge=0.0)
    write_noise: float = param(
        0.0,
        unit="dw_min",
        doc="Std of the apparent-state noise redrawn whenever a device is updated (aihwkit write_noise_std).",
        ge=0.0,
    )
    max_pulses: int = param(31, unit="pulses", doc="Maximum pulse-train length (bit length BL).", ge=1)
    update_management: bool = param(
        True, doc="Balance row and column pulse probabilities and adapt the train length (aihwkit UM/UBLM)."
    )
    refresh_every: int = param(
        0, unit="updates", doc="'set_only': check for refresh every this many pulse updates (0: never).", ge=0
    )
    refresh_threshold: float = param(
        0.75, unit="fraction", doc="'set_only': refresh a pair when a device passes this fraction of range.",
        gt=0.0, le=1.0,
    )
    reset_state: float = param(0.0, unit="state", doc="'set_only': mean state after a RESET.")
    reset_std: float = param(0.0, unit="state", doc="'set_only': std of the state after a RESET.", ge=0.0)


@dataclass(frozen=True, kw_only=True, repr=False)
class DACSpec(_SpecMixin):
    """``[dac]``: input digital-to-analog converters, one per row."""

    bits: int = param(0, unit="bits", doc="Resolution (signed, 2^bits − 1 levels); 0 = ideal.", ge=0, le=32)
    noise_management: str = param(
        "abs_max",
        doc="'abs_max': scale each input vector by its max |x| to full scale (aihwkit ABS_MAX); "
        "'none': inputs are clipped to ±input_bound.",
        choices=("abs_max", "none"),
    )
    input_bound: float = param(1.0, unit="normalized", doc="Full-scale input.", gt=0.0)


@dataclass(frozen=True, kw_only=True, repr=False)
class ADCSpec(_SpecMixin):
    """``[adc]``: output analog-to-digital converters, one per column of each tile.

    Mismatch (gain, offset, transfer nonlinearity) is drawn per column from the fabrication seed; no
    trainer can see it.  The nonlinearity compresses the normalized input v = y/out_bound as
    tanh(κ v)/tanh(κ) with κ ≥ 0 per column.
    """

    bits: int = param(0, unit="bits", doc="Resolution (signed, 2^bits − 1 levels); 0 = ideal.", ge=0, le=32)
    out_bound: float = param(12.0, unit="normalized", doc="Full-scale output (clipping bound).", gt=0.0)
    noise_std: float = param(0.0, unit="normalized", doc="Output-referred noise std per conversion.", ge=0.0)
    gain_rel_std: float = param(0.0, unit="relative", doc="Per-column gain mismatch std.", ge=0.0)
    offset_std: float = param(0.0, unit="normalized", doc="Per-column offset std.", ge=0.0)
    nonlinearity: float = param(0.0, doc="Mean compression κ of the per-column transfer curve.", ge=0.0)
    nonlinearity_std: float = param(0.0, doc="Per-column std of κ.", ge=0.0)


@dataclass(frozen=True, kw_only=True, repr=False)
class TileSpec(_SpecMixin):
    """``[tile]``: crossbar tile geometry and wire resistance."""

    rows: int = param(512, unit="cells", doc="Maximum rows (inputs) per tile.", ge=1)
    cols: int = param(512, unit="cells", doc="Maximum columns (outputs) per tile.", ge=1)
    ir_drop: float = param(
        0.0,
        unit="fraction",
        doc="Relative voltage loss at the cell farthest from both driver and sense amplifier when every "
        "device of the tile is at g_max (first-order IR-drop model, see ffsim.devices.physics).",
        ge=0.0,
        lt=1.0,
    )


@dataclass(frozen=True, kw_only=True, repr=False)
class CostSpec(_SpecMixin):
    """``[cost]``: energy and latency per operation, turned into totals by the op counter."""

    dac_energy_pJ: float = param(0.0, unit="pJ", doc="Energy per DAC conversion.", ge=0.0)
    adc_energy_pJ: float = param(0.0, unit="pJ", doc="Energy per ADC conversion.", ge=0.0)
    read_voltage_V: float = param(
        0.0, unit="V", doc="Read voltage at full input scale; cell read energy V²·G·t_int.", ge=0.0
    )
    integration_time_ns: float = param(0.0, unit="ns", doc="Analog integration time per MVM.", ge=0.0)
    mac_energy_fJ: float = param(
        0.0, unit="fJ", doc="Fixed energy per weight use (one multiply-accumulate: a digital MAC, or analog "
        "sensing overhead), in addition to the devices' V²·G·t.", ge=0.0
    )
    dac_time_ns: float = param(0.0, unit="ns", doc="DAC settling time per MVM.", ge=0.0)
    adc_time_ns: float = param(0.0, unit="ns", doc="ADC conversion time per MVM.", ge=0.0)
    pulse_energy_pJ: float = param(0.0, unit="pJ", doc="Energy per device programming or update pulse.",
                                   ge=0.0)
    pulse_time_ns: float = param(0.0, unit="ns", doc="Duration of one pulse slot.", ge=0.0)
    write_verify_pulses: float = param(
        1.0, unit="pulses", doc="Mean pulse+verify iterations to program one device.", ge=0.0
    )


@dataclass(frozen=True, kw_only=True, repr=False)
class HardwareProfile(_SpecMixin):
    """A validated hardware profile. Build it with :func:`ffsim.profiles.load_profile`."""

    meta: Meta = section(Meta, "What the profile is.")
    device: DeviceSpec = section(DeviceSpec, "Memory device.")
    update: UpdateSpec = section(UpdateSpec, "Pulsed update.")
    dac: DACSpec = section(DACSpec, "Input converters.")
    adc: ADCSpec = section(ADCSpec, "Output converters.")
    tile: TileSpec = section(TileSpec, "Tile geometry.")
    cost: CostSpec = section(CostSpec, "Energy and latency.")
    sources: tuple[tuple[str, str], ...] = field(default=(), metadata={"internal": True})
    path: str = field(default="", compare=False, metadata={"internal": True})
    profile_hash: str = field(default="", compare=False, metadata={"internal": True})

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def is_ideal(self) -> bool:
        return self.device.mapping == "ideal"

    def physics_dict(self) -> dict[str, Any]:
        """All sections except ``meta``: what the hash covers."""
        d = self.as_dict()
        for key in ("meta", "sources", "path", "profile_hash"):
            d.pop(key, None)
        return d

    def source_of(self, keypath: str) -> str:
        """The source given in the file for a key path such as ``device.g_max_uS``."""
        return dict(self.sources).get(keypath, "")

    def replace(self, **changes: dict[str, Any]) -> HardwareProfile:
        """A copy with some values changed, e.g. ``replace(adc={"bits": 6})``; re-validated.

        Nested sections are given as dicts (``device={"read_noise": {"model": "none"}}``). The result's
        hash is recomputed; sources of changed keys become ``"override"``.
        """
        from ffsim.profiles.loader import profile_from_dict

        data = self.as_dict()
        srcs = dict(self.sources)
        for key in ("sources", "path", "profile_hash"):
            data.pop(key, None)

        def merge(dst: dict, src: dict, prefix: str) -> None:
            for k, v in src.items():
                if isinstance(v, dict) and isinstance(dst.get(k), dict):
                    merge(dst[k], v, f"{prefix}{k}.")
                else:
                    dst[k] = v
                    srcs[f"{prefix}{k}"] = "override"

        merge(data, changes, "")
        return profile_from_dict(data, origin=f"{self.path or self.name} (modified)", sources=srcs)
