"""Human-readable rendering of a resolved profile, with units and sources."""

from __future__ import annotations

import dataclasses

from ffsim.profiles.schema import HardwareProfile, _SpecMixin


def _rows(spec: _SpecMixin, prefix: str, profile: HardwareProfile) -> list[tuple[str, str, str, str]]:
    rows = []
    for f in dataclasses.fields(spec):  # type: ignore[arg-type]
        if f.metadata.get("internal"):
            continue
        value = getattr(spec, f.name)
        kp = f"{prefix}{f.name}"
        if isinstance(value, _SpecMixin):
            rows += _rows(value, kp + ".", profile)
            continue
        if isinstance(value, tuple):
            text = "[" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + "]"
        elif isinstance(value, float):
            text = f"{value:g}"
        else:
            text = str(value)
        rows.append((kp, text, f.metadata.get("unit", ""), profile.source_of(kp) or "(default)"))
    return rows


def describe_profile(p: HardwareProfile) -> str:
    """Every resolved value of a profile with its unit and source, as plain text."""
    lines = [
        f"profile   {p.meta.name}",
        f"file      {p.path or '(not from a file)'}",
        f"hash      {p.profile_hash}",
        f"about     {p.meta.description}",
        "",
    ]
    rows = []
    for section in ("device", "update", "dac", "adc", "tile", "cost"):
        rows += _rows(getattr(p, section), section + ".", p)
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    for kp, text, unit, src in rows:
        lines.append(f"{kp:<{w0}}  {text:>{w1}}  {unit:<{w2}}  {src}")
    if p.meta.references:
        lines += ["", "references"] + [f"  {r}" for r in p.meta.references]
    return "\n".join(lines)
