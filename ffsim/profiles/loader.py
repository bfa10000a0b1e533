"""Loading, validating and hashing hardware profiles.

A profile file is validated as a whole: every problem (unknown key, wrong type, missing key, value out
of range or not finite, inconsistent combination, number without a source) is collected, and one
:class:`ProfileError` lists them all, each naming the file, the key path, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import tomllib
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ffsim.profiles.schema import HardwareProfile

__all__ = [
    "ProfileError",
    "ProfileIssue",
    "find_profile",
    "list_profiles",
    "load_profile",
    "profile_dirs",
    "profile_from_dict",
]

PROFILE_PATH_ENV = "FFSIM_PROFILE_PATH"


@dataclass(frozen=True)
class ProfileIssue:
    """One problem found in a profile."""

    keypath: str
    value: Any
    message: str

    def __str__(self) -> str:
        if self.value is _ABSENT:
            return f"{self.keypath}: {self.message}"
        return f"{self.keypath} = {self.value!r}: {self.message}"


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


class ProfileError(ValueError):
    """A hardware profile could not be loaded; ``issues`` lists every problem found."""

    def __init__(self, origin: str, issues: list[ProfileIssue]):
        self.origin = origin
        self.issues = list(issues)
        lines = [f"invalid hardware profile {origin}:"] + [f"  - {i}" for i in self.issues]
        super().__init__("\n".join(lines))


# --------------------------------------------------------------------------------------------------
# Where profiles live


def profile_dirs() -> list[Path]:
    """Folders searched for ``NAME.toml``, in order.

    ``$FFSIM_PROFILE_PATH`` (``os.pathsep``-separated) first, then the source checkout's
    ``hardware_profiles/``, then the copy installed inside the package.
    """
    dirs: list[Path] = []
    env = os.environ.get(PROFILE_PATH_ENV, "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p]
    checkout = Path(__file__).resolve().parents[2] / "hardware_profiles"
    if checkout.is_dir():
        dirs.append(checkout)
    try:
        packaged = Path(str(resources.files("ffsim") / "_hardware_profiles"))
        if packaged.is_dir():
            dirs.append(packaged)
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover - defensive
        pass
    return dirs


def list_profiles() -> dict[str, Path]:
    """Shipped and user profiles by name (the first folder that has a name wins)."""
    found: dict[str, Path] = {}
    for d in profile_dirs():
        for p in sorted(d.glob("*.toml")):
            found.setdefault(p.stem, p)
    return found


def find_profile(name_or_path: str | os.PathLike) -> Path:
    """Resolve a profile name or path to a file, or raise :class:`ProfileError`."""
    s = str(name_or_path)
    p = Path(s)
    if p.suffix == ".toml" or os.sep in s or p.is_file():
        if not p.is_file():
            raise ProfileError(s, [ProfileIssue("file", s, "no such file")])
        return p
    available = list_profiles()
    if s in available:
        return available[s]
    close = difflib.get_close_matches(s, list(available), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    allowed = ", ".join(sorted(available)) or "(none found)"
    raise ProfileError(s, [ProfileIssue("name", s, f"no such profile{hint} Available: {allowed}")])


def load_profile(name_or_path: str | os.PathLike | HardwareProfile) -> HardwareProfile:
    """Load and validate a profile by name (``"pcm"``) or path (``"my.toml"``)."""
    if isinstance(name_or_path, HardwareProfile):
        return name_or_path
    path = find_profile(name_or_path)
    origin = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(origin, [ProfileIssue("file", _ABSENT, f"not valid TOML: {exc}")]) from None
    except OSError as exc:
        raise ProfileError(origin, [ProfileIssue("file", _ABSENT, f"cannot be read: {exc}")]) from None
    return profile_from_dict(data, origin=origin, path=str(path))


# --------------------------------------------------------------------------------------------------
# Validation


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_value(f: dataclasses.Field, hint: Any, value: Any, kp: str, issues: list[ProfileIssue]):
    meta = f.metadata
    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            issues.append(ProfileIssue(kp, value, "must be true or false"))
            return _ABSENT
        return value
    if hint is str:
        if not isinstance(value, str):
            issues.append(ProfileIssue(kp, value, "must be a string"))
            return _ABSENT
        choices = meta.get("choices")
        if choices and value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            issues.append(ProfileIssue(kp, value, f"must be one of {allowed}{_suggest(value, list(choices))}"))
            return _ABSENT
        return value
    if origin is tuple:
        (elem, _) = typing.get_args(hint)
        if not isinstance(value, list):
            issues.append(ProfileIssue(kp, value, "must be a list"))
            return _ABSENT
        if elem is str:
            if not all(isinstance(v, str) for v in value):
                issues.append(ProfileIssue(kp, value, "must be a list of strings"))
                return _ABSENT
            return tuple(value)
        if not all(_is_number(v) and math.isfinite(v) for v in value):
            issues.append(ProfileIssue(kp, value, "must be a list of finite numbers"))
            return _ABSENT
        return tuple(float(v) for v in value)
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            issues.append(ProfileIssue(kp, value, "must be an integer"))
            return _ABSENT
    elif hint is float:
        if not _is_number(value):
            issues.append(ProfileIssue(kp, value, "must be a number"))
            return _ABSENT
        if not math.isfinite(value):
            issues.append(ProfileIssue(kp, value, "must be finite"))
            return _ABSENT
        value = float(value)
    bounds = []
    ok = True
    if meta.get("ge") is not None:
        bounds.append(f">= {meta['ge']}")
        ok &= value >= meta["ge"]
    if meta.get("gt") is not None:
        bounds.append(f"> {meta['gt']}")
        ok &= value > meta["gt"]
    if meta.get("le") is not None:
        bounds.append(f"<= {meta['le']}")
        ok &= value <= meta["le"]
    if meta.get("lt") is not None:
        bounds.append(f"< {meta['lt']}")
        ok &= value < meta["lt"]
    if not ok:
        unit = f" {meta['unit']}" if meta.get("unit") else ""
        issues.append(ProfileIssue(kp, value, f"out of range: allowed {' and '.join(bounds)}{unit}"))
        return _ABSENT
    return value


def _build(
    cls: type,
    table: Any,
    keypath: str,
    issues: list[ProfileIssue],
    sources: dict[str, str],
    given_sources: dict[str, str] | None,
    built_sections: dict[str, Any] | None = None,
):
    """Build one section; ``given_sources`` is None when reading a file (sources come from the tables)."""
    where = keypath or "top level"
    if not isinstance(table, dict):
        issues.append(ProfileIssue(keypath, table, "must be a table"))
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    file_sources = table.get("sources", {}) if given_sources is None else {}
    if given_sources is None and not isinstance(file_sources, dict):
        issues.append(ProfileIssue(f"{keypath}.sources" if keypath else "sources", file_sources,
                                   "must be a table of strings"))
        file_sources = {}
    kwargs: dict[str, Any] = {}
    failed = False
    for key, value in table.items():
        if key == "sources" and given_sources is None:
            continue
        kp = f"{keypath}.{key}" if keypath else key
        if key not in fields:
            issues.append(ProfileIssue(kp, value, f"unknown key in [{where}]{_suggest(key, list(fields))}"))
            failed = True
            continue
        f = fields[key]
        if f.metadata.get("section"):
            sub = _build(f.default_factory, value, kp, issues, sources, given_sources)
            if sub is None:
                failed = True
            else:
                kwargs[key] = sub
                if built_sections is not None:
                    built_sections[key] = sub
            continue
        v = _check_value(f, hints[key], value, kp, issues)
        if v is _ABSENT:
            failed = True
            continue
        kwargs[key] = v
        numeric = _is_number(value) or (isinstance(value, list) and hints[key] != tuple[str, ...])
        if given_sources is not None:
            src = given_sources.get(kp, "")
        else:
            src = file_sources.get(key, "")
        if numeric and given_sources is None and (not isinstance(src, str) or not src.strip()):
            issues.append(ProfileIssue(
                kp, value,
                f"has no source: add `{key} = \"...\"` under [{keypath}.sources]"
                " (a citation, a derivation, or 'assumption: ...')",
            ))
            failed = True
        if isinstance(src, str) and src:
            sources[kp] = src
    for key in file_sources:
        if key not in fields or fields[key].metadata.get("section"):
            issues.append(ProfileIssue(f"{keypath}.sources.{key}", file_sources[key],
                                       f"source for an unknown key{_suggest(key, list(fields))}"))
            failed = True
    for name, f in fields.items():
        if name in table:
            continue
        kp = f"{keypath}.{name}" if keypath else name
        if f.metadata.get("section"):
            # an absent section is an empty one: its own required keys are then reported as missing
            sub = _build(f.default_factory, {}, kp, issues, sources, {} if given_sources is None else given_sources)
            if sub is None:
                failed = True
            else:
                kwargs[name] = sub
                if built_sections is not None:
                    built_sections[name] = sub
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            issues.append(ProfileIssue(kp, _ABSENT, f"required key is missing from [{where}]"))
            failed = True
    if failed:
        return None
    return cls(**kwargs)


def _cross_checks(built: dict[str, Any]) -> list[ProfileIssue]:
    """Combinations that are individually valid but inconsistent together.

    ``built`` maps section names to the sections that validated (others are absent), so that these
    checks are reported together with every other problem of the file.
    """
    out: list[ProfileIssue] = []
    add = out.append
    d, u, tile = built.get("device"), built.get("update"), built.get("tile")
    for conv in ("dac", "adc"):
        c = built.get(conv)
        if c is not None and c.bits == 1:
            add(ProfileIssue(f"{conv}.bits", 1, "must be 0 (ideal converter) or at least 2 (a signed converter needs "
                             "levels on both sides of zero)"))
    if d is not None and d.mapping == "ideal":
        defaults = type(d)(mapping="ideal")
        checks = [(f"device.{k}", getattr(d, k), getattr(defaults, k)) for k in ("g_min_uS", "g_max_uS", "levels")]
        for sec in ("programming", "read_noise", "drift", "faults", "variation"):
            mine, dflt = getattr(d, sec), getattr(defaults, sec)
            for f in dataclasses.fields(mine):
                checks.append((f"device.{sec}.{f.name}", getattr(mine, f.name), getattr(dflt, f.name)))
        if u is not None:
            checks.append(("update.model", u.model, "none"))
        if tile is not None:
            checks.append(("tile.ir_drop", tile.ir_drop, 0.0))
        for key, value, default in checks:
            if value != default:
                shown = list(value) if isinstance(value, tuple) else value
                add(ProfileIssue(key, shown, f"must be left at its default ({default!r}) with device.mapping = "
                                 "'ideal' (float weights have no device physics)"))
        return out
    if d is not None:
        if not d.g_max_uS > d.g_min_uS:
            add(ProfileIssue("device.g_max_uS", d.g_max_uS,
                             f"must be greater than device.g_min_uS ({d.g_min_uS})"))
        if d.levels == 1:
            add(ProfileIssue("device.levels", 1, "must be 0 (continuous) or at least 2"))
        f = d.faults
        if f.stuck_at_gmin_fraction + f.stuck_at_gmax_fraction > 1:
            add(ProfileIssue("device.faults", [f.stuck_at_gmin_fraction, f.stuck_at_gmax_fraction],
                             "stuck_at_gmin_fraction + stuck_at_gmax_fraction must be at most 1"))
        rn = d.read_noise
        if rn.model == "poly" and not rn.poly_uS:
            add(ProfileIssue("device.read_noise.poly_uS", [], "must be non-empty when model = 'poly'"))
        if rn.model == "pcm_1f" and not (rn.q_coeff > 0 and rn.q_max > 0):
            add(ProfileIssue("device.read_noise", [rn.q_coeff, rn.q_max],
                             "model 'pcm_1f' needs q_coeff > 0 and q_max > 0"))
        dr = d.drift
        for which in ("mean", "std"):
            lo, hi = getattr(dr, f"nu_{which}_min"), getattr(dr, f"nu_{which}_max")
            if lo > hi:
                add(ProfileIssue(f"device.drift.nu_{which}_min", lo, f"must not exceed nu_{which}_max ({hi})"))
    if u is not None:
        if not u.state_max > u.state_min:
            add(ProfileIssue("update.state_max", u.state_max,
                             f"must be greater than update.state_min ({u.state_min})"))
        elif not (u.state_min <= u.reference_state <= u.state_max):
            add(ProfileIssue("update.reference_state", u.reference_state,
                             f"must lie in [state_min, state_max] = [{u.state_min}, {u.state_max}]"))
        if u.model != "none" and not u.dw_min > 0:
            add(ProfileIssue("update.dw_min", u.dw_min, f"must be > 0 when update.model = '{u.model}'"))
        if u.model == "linear":
            for side, lim in (("gamma_up", u.state_max), ("gamma_down", u.state_min)):
                if getattr(u, side) > 0 and lim == 0:
                    add(ProfileIssue(f"update.{side}", getattr(u, side),
                                     "a 'linear' slope needs a non-zero bound on that side (state_max / state_min)"))
        if d is not None and u.polarity == "set_only" and d.mapping != "differential":
            add(ProfileIssue("update.polarity", "set_only",
                             "needs device.mapping = 'differential' (the partner device takes the other sign)"))
    return out


def profile_hash(p: HardwareProfile) -> str:
    """sha256 of the canonical JSON of the physics (every section except ``meta``; sources excluded)."""
    blob = json.dumps(p.physics_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def profile_from_dict(
    data: dict[str, Any],
    *,
    origin: str = "<dict>",
    path: str = "",
    sources: dict[str, str] | None = None,
) -> HardwareProfile:
    """Validate a parsed profile.

    With ``sources=None`` (a file), each section's ``sources`` table must cite every number it gives.
    With an explicit ``sources`` mapping (programmatic changes), no citation is required.
    """
    issues: list[ProfileIssue] = []
    srcs: dict[str, str] = {}
    sections: dict[str, Any] = {}
    built = _build(HardwareProfile, data, "", issues, srcs, sources, sections)
    issues += _cross_checks(sections)
    if issues or built is None:
        raise ProfileError(origin, issues)
    merged = dict(sources or {})
    merged.update(srcs)
    built = dataclasses.replace(built, sources=tuple(sorted(merged.items())), path=path)
    return dataclasses.replace(built, profile_hash=profile_hash(built))
