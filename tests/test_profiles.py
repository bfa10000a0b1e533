"""Hardware profiles: shipped files, their numbers and sources, hashing, validation errors, lookup."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import tomllib
from pathlib import Path

import pytest

from ffsim.profiles import (
    HardwareProfile,
    ProfileError,
    describe_profile,
    list_profiles,
    load_profile,
)

SHIPPED = ("ideal", "digital-int8", "pcm", "rram-hfo2", "ecram", "high-variability")


@pytest.fixture(autouse=True)
def _no_user_profile_path(monkeypatch):
    """Tests see only the shipped profiles unless they set FFSIM_PROFILE_PATH themselves."""
    monkeypatch.delenv("FFSIM_PROFILE_PATH", raising=False)


# --------------------------------------------------------------------------------------------------
# Helpers: write profiles as TOML into tmp_path

DROP = object()  # marks a key to delete in ``merged``


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(data: dict, *, reverse: bool = False, decorate: bool = False) -> str:
    """A TOML document for nested dicts; ``reverse`` reorders keys, ``decorate`` adds comments/whitespace."""
    lines: list[str] = []
    if decorate:
        lines += ["# a reformatted copy", "", ""]

    def order(keys):
        return list(reversed(keys)) if reverse else list(keys)

    def emit(table: dict, path: list[str]) -> None:
        scalars = [k for k in table if not isinstance(table[k], dict)]
        subs = [k for k in table if isinstance(table[k], dict)]
        if path:
            header = f"[{'.'.join(path)}]"
            lines.append(f"   {header}  # section" if decorate else header)
        for k in order(scalars):
            text = f"{k} = {_toml_value(table[k])}"
            if decorate:
                text = f"    {k}    =   {_toml_value(table[k])}      # comment on {k}"
            lines.append(text)
        lines.append("")
        if decorate:
            lines.append("# ----")
        for k in order(subs):
            emit(table[k], path + [k])

    emit(data, [])
    return "\n".join(lines) + "\n"


BASE = {
    "meta": {"name": "bad", "description": "A small test profile."},
    "device": {"mapping": "differential", "g_min_uS": 0.0, "g_max_uS": 25.0},
}


def merged(base: dict, changes: dict) -> dict:
    """Deep merge of ``changes`` into a copy of ``base``; a value ``DROP`` removes the key."""
    out = copy.deepcopy(base)
    for k, v in changes.items():
        if v is DROP:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merged(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def with_sources(data: dict, *, unsourced: tuple[str, ...] = (), prefix: str = "") -> dict:
    """Add a ``sources`` sub-table to every section, citing each of its values (except ``unsourced``)."""
    out = {}
    for k, v in data.items():
        if isinstance(v, dict) and k != "sources":
            out[k] = with_sources(v, unsourced=unsourced, prefix=f"{prefix}{k}.")
        else:
            out[k] = v
    if prefix and prefix != "meta.":
        scalars = [k for k, v in data.items() if not isinstance(v, dict)]
        srcs = {k: f"test: value of {prefix}{k}" for k in scalars if f"{prefix}{k}" not in unsourced}
        srcs.update(data.get("sources", {}))
        if srcs:
            out["sources"] = srcs
    return out


def write_profile(tmp_path: Path, changes: dict | None = None, *, name: str = "bad",
                  unsourced: tuple[str, ...] = (), sources: bool = True) -> Path:
    data = merged(BASE, changes or {})
    if sources:
        data = with_sources(data, unsourced=unsourced)
    path = tmp_path / f"{name}.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    return path


def load_error(path) -> ProfileError:
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    return info.value


def check_error(err: ProfileError, path, keypath: str, value_text: str | None, *allowed: str) -> str:
    """The message names the file, the key path, the value and what is allowed; returns the issue line."""
    msg = str(err)
    assert str(path) in msg, msg
    lines = [ln for ln in msg.splitlines() if re.search(rf"(^|\s){re.escape(keypath)}(\s|:|$)", ln)]
    assert lines, f"no issue for {keypath!r} in:\n{msg}"
    assert any(i.keypath == keypath for i in err.issues), err.issues
    line = lines[0]
    if value_text is not None:
        assert value_text in line, f"value {value_text!r} not named in {line!r}"
    for a in allowed:
        assert a in line, f"{a!r} not in {line!r}"
    return line


def _numbers(table: dict, prefix: str = ""):
    """(keypath, value) of every number or list of numbers in a parsed TOML table (outside ``sources``)."""
    for k, v in table.items():
        if k == "sources":
            continue
        kp = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _numbers(v, kp + ".")
        elif isinstance(v, int | float) and not isinstance(v, bool):
            yield kp, v
        elif isinstance(v, list) and all(isinstance(x, int | float) for x in v):
            yield kp, v


# --------------------------------------------------------------------------------------------------
# 1. Shipped profiles


def test_base_test_profile_is_valid(tmp_path):
    """The profile the bad-input tests start from loads, so every error below comes from the change."""
    p = load_profile(write_profile(tmp_path))
    assert p.device.g_max_uS == 25.0
    assert p.source_of("device.g_max_uS") == "test: value of device.g_max_uS"


def test_all_shipped_profiles_are_listed():
    found = list_profiles()
    for name in SHIPPED:
        assert name in found, sorted(found)
        assert found[name].is_file()
        assert found[name].suffix == ".toml"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_loads(name):
    p = load_profile(name)
    assert isinstance(p, HardwareProfile)
    assert p.meta.name == name
    assert p.name == name
    assert Path(p.path).stem == p.meta.name
    assert p.meta.description.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", p.profile_hash)


def test_every_listed_profile_loads_and_is_named_after_its_file():
    for name, path in list_profiles().items():
        p = load_profile(path)
        assert p.meta.name == path.stem == name


@pytest.mark.parametrize("name", SHIPPED)
def test_every_number_in_shipped_file_has_a_source(name):
    p = load_profile(name)
    with open(p.path, "rb") as fh:
        raw = tomllib.load(fh)
    numbers = list(_numbers(raw))
    assert numbers, "a shipped profile without numbers?"
    missing = [kp for kp, _ in numbers if not p.source_of(kp).strip()]
    assert not missing, f"{name}: numbers without a source: {missing}"
    # every source recorded belongs to a key of the schema (no stale citations)
    for kp, src in p.sources:
        assert src.strip()
        obj = p
        for part in kp.split("."):
            assert hasattr(obj, part), f"{name}: source for unknown key {kp}"
            obj = getattr(obj, part)


# --------------------------------------------------------------------------------------------------
# 2. The numbers the spec requires


def test_pcm_numbers():
    p = load_profile("pcm")
    d = p.device
    assert d.mapping == "differential"
    assert d.g_max_uS == pytest.approx(25.0)
    assert d.programming.noise_poly_uS == pytest.approx((0.26348, 1.9650, -1.1731))
    dr = d.drift
    assert dr.model == "power_law"
    assert dr.t0_s == pytest.approx(20.0)
    assert (dr.nu_mean_ln_coeff, dr.nu_mean_offset, dr.nu_mean_min, dr.nu_mean_max) == pytest.approx(
        (-0.0155, 0.0244, 0.049, 0.1))
    assert (dr.nu_std_ln_coeff, dr.nu_std_offset, dr.nu_std_min, dr.nu_std_max) == pytest.approx(
        (-0.0125, -0.0059, 0.008, 0.045))
    rn = d.read_noise
    assert rn.model == "pcm_1f"
    assert (rn.q_coeff, rn.q_exponent, rn.q_max) == pytest.approx((0.0088, 0.65, 0.2))
    assert rn.t_read_s == pytest.approx(250e-9, rel=1e-12)
    for kp in ("device.g_max_uS", "device.programming.noise_poly_uS", "device.drift.t0_s",
               "device.read_noise.q_coeff", "device.read_noise.t_read_s"):
        assert p.source_of(kp).strip(), kp


def test_ecram_numbers():
    u = load_profile("ecram").update
    assert u.dw_min == pytest.approx(0.002)
    assert u.gamma_up == pytest.approx(0.1153)
    assert u.gamma_down == pytest.approx(0.5085)


def test_rram_hfo2_numbers():
    u = load_profile("rram-hfo2").update
    assert u.dw_min == pytest.approx(0.00135)
    assert u.up_down == pytest.approx(0.26, abs=0.005)


# --------------------------------------------------------------------------------------------------
# 3. Content hash


def _pcm_raw() -> dict:
    with open(load_profile("pcm").path, "rb") as fh:
        return tomllib.load(fh)


def test_hash_is_stable_across_loads():
    a = load_profile("pcm")
    b = load_profile("pcm")
    c = load_profile(a.path)
    assert a.profile_hash == b.profile_hash == c.profile_hash
    assert a == b


def test_hash_ignores_comments_whitespace_and_key_order(tmp_path):
    ref = load_profile("pcm")
    path = tmp_path / "pcm.toml"
    path.write_text(to_toml(_pcm_raw(), reverse=True, decorate=True), encoding="utf-8")
    copy_ = load_profile(path)
    assert copy_.profile_hash == ref.profile_hash
    assert copy_ == ref


def test_hash_ignores_number_formatting(tmp_path):
    """``25.0`` written as ``25`` and ``250.0e-9`` as ``2.5e-7`` are the same physics."""
    ref = load_profile("pcm")
    text = Path(ref.path).read_text(encoding="utf-8")
    new = re.sub(r"(?m)^g_max_uS = 25\.0", "g_max_uS = 25", text)
    new = re.sub(r"(?m)^t_read_s = 250\.0e-9", "t_read_s = 2.5e-7", new)
    new = re.sub(r"(?m)^#.*\n", "", new)  # drop whole-line comments
    assert new != text
    path = tmp_path / "pcm.toml"
    path.write_text(new, encoding="utf-8")
    assert load_profile(path).profile_hash == ref.profile_hash


def test_hash_ignores_meta_and_sources(tmp_path):
    ref = load_profile("pcm")
    raw = _pcm_raw()
    raw["meta"]["description"] = "Something else entirely."
    raw["meta"]["references"] = ["[1] another reference"]
    raw["device"]["sources"]["g_max_uS"] = "a different citation"
    raw["device"]["drift"]["sources"]["t0_s"] = "assumption: changed"
    path = tmp_path / "pcm.toml"
    path.write_text(to_toml(raw), encoding="utf-8")
    p = load_profile(path)
    assert p.meta.description == "Something else entirely."
    assert p.source_of("device.g_max_uS") == "a different citation"
    assert p.profile_hash == ref.profile_hash


@pytest.mark.parametrize(
    "section, key, value",
    [
        (("device",), "g_max_uS", 25.5),
        (("device", "drift"), "nu_mean_offset", 0.0245),
        (("adc",), "bits", 7),
        (("device", "programming"), "noise_poly_uS", [0.26348, 1.9650, -1.1730]),
    ],
)
def test_hash_changes_with_a_number(tmp_path, section, key, value):
    ref = load_profile("pcm")
    raw = _pcm_raw()
    table = raw
    for s in section:
        table = table[s]
    assert table[key] != value
    table[key] = value
    path = tmp_path / "pcm.toml"
    path.write_text(to_toml(raw), encoding="utf-8")
    p = load_profile(path)
    assert p.profile_hash != ref.profile_hash


def test_hash_differs_between_shipped_profiles():
    hashes = {load_profile(n).profile_hash for n in SHIPPED}
    assert len(hashes) == len(SHIPPED)


def test_replace_gives_new_validated_profile():
    p = load_profile("pcm")
    q = p.replace(adc={"bits": 6})
    assert isinstance(q, HardwareProfile)
    assert q.adc.bits == 6
    assert p.adc.bits == 8  # the original is untouched
    assert q.profile_hash != p.profile_hash
    assert re.fullmatch(r"[0-9a-f]{64}", q.profile_hash)
    assert q.source_of("adc.bits") == "override"
    assert q.source_of("device.g_max_uS") == p.source_of("device.g_max_uS")
    assert q.device == p.device and q.dac == p.dac
    # going back gives back the original hash: the hash is a function of the physics
    assert q.replace(adc={"bits": 8}).profile_hash == p.profile_hash
    # nested sections
    r = p.replace(device={"read_noise": {"model": "none"}})
    assert r.device.read_noise.model == "none"
    assert r.device.g_max_uS == p.device.g_max_uS
    assert r.profile_hash != p.profile_hash


def test_replace_is_validated():
    p = load_profile("pcm")
    with pytest.raises(ProfileError) as info:
        p.replace(adc={"bits": -1})
    assert any(i.keypath == "adc.bits" for i in info.value.issues)
    assert "-1" in str(info.value)
    with pytest.raises(ProfileError) as info:
        p.replace(device={"g_min_uS": 30.0})
    assert any(i.keypath == "device.g_max_uS" for i in info.value.issues)
    with pytest.raises(ProfileError) as info:
        p.replace(adc={"bitz": 6})
    assert "did you mean 'bits'" in str(info.value)


# --------------------------------------------------------------------------------------------------
# 4. Bad profiles: one test per class of problem


def test_unknown_key_suggests_the_right_one(tmp_path):
    path = write_profile(tmp_path, {"device": {"levelz": 16}})
    err = load_error(path)
    check_error(err, path, "device.levelz", "16", "unknown key", "did you mean 'levels'")


@pytest.mark.parametrize(
    "changes, keypath, suggestion",
    [
        ({"devise": {"levels": 4}}, "devise", "did you mean 'device'"),
        ({"device": {"drfit": {"model": "power_law"}}}, "device.drfit", "did you mean 'drift'"),
    ],
)
def test_unknown_section(tmp_path, changes, keypath, suggestion):
    path = write_profile(tmp_path, changes)
    err = load_error(path)
    check_error(err, path, keypath, None, "unknown key", suggestion)


@pytest.mark.parametrize(
    "changes, keypath, value_text, allowed",
    [
        ({"device": {"g_max_uS": "25"}}, "device.g_max_uS", "'25'", "must be a number"),
        ({"device": {"g_max_uS": True}}, "device.g_max_uS", "True", "must be a number"),
        ({"dac": {"bits": 8.5}}, "dac.bits", "8.5", "must be an integer"),
        ({"dac": {"bits": True}}, "dac.bits", "True", "must be an integer"),
        ({"update": {"update_management": 1}}, "update.update_management", "1", "true or false"),
        ({"device": {"mapping": 1}}, "device.mapping", "1", "must be a string"),
        ({"device": {"programming": {"noise_poly_uS": 0.5}}}, "device.programming.noise_poly_uS", "0.5",
         "must be a list"),
        ({"device": {"programming": {"noise_poly_uS": [0.1, "x"]}}}, "device.programming.noise_poly_uS",
         "[0.1, 'x']", "finite numbers"),
    ],
)
def test_wrong_type(tmp_path, changes, keypath, value_text, allowed):
    path = write_profile(tmp_path, changes)
    err = load_error(path)
    check_error(err, path, keypath, value_text, allowed)


@pytest.mark.parametrize(
    "changes, keypaths",
    [
        ({"device": {"mapping": DROP}}, ["device.mapping"]),
        ({"meta": {"name": DROP}}, ["meta.name"]),
        ({"device": DROP}, ["device.mapping"]),
        ({"meta": DROP}, ["meta.name", "meta.description"]),
    ],
    ids=["device-without-mapping", "meta-without-name", "no-device-section", "no-meta-section"],
)
def test_missing_required_key(tmp_path, changes, keypaths):
    path = write_profile(tmp_path, changes)
    err = load_error(path)  # a ProfileError, not a TypeError from a dataclass constructor
    for kp in keypaths:
        check_error(err, path, kp, None, "required", "missing")


@pytest.mark.parametrize(
    "changes, keypath, value_text, allowed",
    [
        ({"dac": {"bits": -1}}, "dac.bits", "-1", ">= 0"),
        ({"adc": {"bits": 33}}, "adc.bits", "33", "<= 32"),
        ({"update": {"refresh_threshold": 1.5}}, "update.refresh_threshold", "1.5", "<= 1.0"),
        ({"device": {"faults": {"stuck_at_gmin_fraction": 1.2}}}, "device.faults.stuck_at_gmin_fraction",
         "1.2", "<= 1.0"),
        ({"device": {"faults": {"stuck_at_gmax_fraction": -0.1}}}, "device.faults.stuck_at_gmax_fraction",
         "-0.1", ">= 0.0"),
        ({"tile": {"ir_drop": 1.0}}, "tile.ir_drop", "1.0", "< 1.0"),
        ({"device": {"g_max_uS": -5.0}}, "device.g_max_uS", "-5.0", ">= 0.0"),
        ({"update": {"up_down": 1.0}}, "update.up_down", "1.0", "< 1.0"),
    ],
)
def test_out_of_range(tmp_path, changes, keypath, value_text, allowed):
    path = write_profile(tmp_path, changes)
    err = load_error(path)
    line = check_error(err, path, keypath, value_text, "out of range", allowed)
    assert f"{keypath} = {value_text}" in line


@pytest.mark.parametrize(
    "changes, keypath, value_text, allowed",
    [
        ({"device": {"g_max_uS": math.inf}}, "device.g_max_uS", "inf", "finite"),
        ({"adc": {"noise_std": math.nan}}, "adc.noise_std", "nan", "finite"),
        ({"update": {"state_min": -math.inf}}, "update.state_min", "-inf", "finite"),
        ({"device": {"programming": {"noise_poly_uS": [0.1, math.nan]}}},
         "device.programming.noise_poly_uS", "nan", "finite"),
    ],
)
def test_non_finite_values(tmp_path, changes, keypath, value_text, allowed):
    path = write_profile(tmp_path, changes)
    assert value_text in path.read_text()  # TOML's own inf / nan literals
    err = load_error(path)
    check_error(err, path, keypath, value_text, allowed)


@pytest.mark.parametrize(
    "changes, keypath, value_text, suggestion, choices",
    [
        ({"device": {"read_noise": {"model": "pcm_1"}}}, "device.read_noise.model", "'pcm_1'", "'pcm_1f'",
         ("'none'", "'poly'", "'pcm_1f'")),
        ({"device": {"mapping": "diferential"}}, "device.mapping", "'diferential'", "'differential'",
         ("'differential'", "'reference'", "'ideal'")),
    ],
)
def test_invalid_choice(tmp_path, changes, keypath, value_text, suggestion, choices):
    path = write_profile(tmp_path, changes)
    err = load_error(path)
    line = check_error(err, path, keypath, value_text, "must be one of", f"did you mean {suggestion}")
    for c in choices:  # the allowed choices are listed
        assert c in line


INCONSISTENT = [
    ("g_min>g_max", {"device": {"g_min_uS": 30.0}}, "device.g_max_uS", "25.0", "greater than", "30.0"),
    ("g_min=g_max", {"device": {"g_min_uS": 25.0}}, "device.g_max_uS", "25.0", "greater than"),
    ("stuck-sum", {"device": {"faults": {"stuck_at_gmin_fraction": 0.6, "stuck_at_gmax_fraction": 0.5}}},
     "device.faults", "[0.6, 0.5]", "at most 1"),
    ("set_only-reference", {"device": {"mapping": "reference"}, "update": {"polarity": "set_only"}},
     "update.polarity", "'set_only'", "'differential'"),
    ("dw_min-zero", {"update": {"model": "linear", "dw_min": 0.0}}, "update.dw_min", "0.0", "> 0"),
    ("state-range", {"update": {"state_min": 1.0, "state_max": 0.5}}, "update.state_max", "0.5",
     "greater than", "1.0"),
    ("reference-outside", {"update": {"reference_state": 2.0}}, "update.reference_state", "2.0",
     "[-1.0, 1.0]"),
    ("poly-empty", {"device": {"read_noise": {"model": "poly"}}}, "device.read_noise.poly_uS", "[]",
     "non-empty"),
    ("pcm_1f-no-q", {"device": {"read_noise": {"model": "pcm_1f"}}}, "device.read_noise", None,
     "q_coeff > 0"),
    ("nu-clamps", {"device": {"drift": {"model": "power_law", "nu_mean_min": 0.2, "nu_mean_max": 0.1}}},
     "device.drift.nu_mean_min", "0.2", "nu_mean_max (0.1)"),
    ("levels-1", {"device": {"levels": 1}}, "device.levels", "1", "at least 2"),
    ("ideal-levels", {"device": {"mapping": "ideal", "g_max_uS": DROP, "g_min_uS": DROP, "levels": 16}},
     "device.levels", "16", "default", "'ideal'"),
    ("ideal-drift", {"device": {"mapping": "ideal", "g_max_uS": DROP, "g_min_uS": DROP,
                                "drift": {"model": "power_law"}}},
     "device.drift.model", "'power_law'", "default", "'ideal'"),
    ("ideal-update", {"device": {"mapping": "ideal", "g_max_uS": DROP, "g_min_uS": DROP},
                      "update": {"model": "linear", "dw_min": 0.01}},
     "update.model", "'linear'", "default", "'ideal'"),
    ("ideal-g_max", {"device": {"mapping": "ideal", "g_min_uS": DROP}}, "device.g_max_uS", "25.0",
     "default", "'ideal'"),
]


@pytest.mark.parametrize("changes, keypath, value_text, allowed", [c[1:4] + (c[4:],) for c in INCONSISTENT],
                         ids=[c[0] for c in INCONSISTENT])
def test_inconsistent_combination(tmp_path, changes, keypath, value_text, allowed):
    path = write_profile(tmp_path, changes)
    err = load_error(path)
    check_error(err, path, keypath, value_text, *allowed)


def test_ideal_mapping_alone_is_valid(tmp_path):
    """Counterpart of the 'ideal' cases above: mapping = 'ideal' with defaults loads."""
    path = write_profile(tmp_path, {"device": {"mapping": "ideal", "g_max_uS": DROP, "g_min_uS": DROP}})
    assert load_profile(path).is_ideal


@pytest.mark.parametrize(
    "changes, unsourced, keypath, value_text, table",
    [
        ({}, ("device.g_max_uS",), "device.g_max_uS", "25.0", "[device.sources]"),
        ({"device": {"drift": {"model": "power_law", "t0_s": 30.0}}}, ("device.drift.t0_s",),
         "device.drift.t0_s", "30.0", "[device.drift.sources]"),
        ({"device": {"programming": {"noise_poly_uS": [0.1, 0.2]}}}, ("device.programming.noise_poly_uS",),
         "device.programming.noise_poly_uS", "[0.1, 0.2]", "[device.programming.sources]"),
        ({"dac": {"bits": 8}}, ("dac.bits",), "dac.bits", "8", "[dac.sources]"),
        ({"dac": {"bits": 8, "sources": {"bits": "   "}}}, (), "dac.bits", "8", "[dac.sources]"),
    ],
    ids=["device", "sub-table", "list", "int", "blank-source"],
)
def test_number_without_source(tmp_path, changes, unsourced, keypath, value_text, table):
    path = write_profile(tmp_path, changes, unsourced=unsourced)
    err = load_error(path)
    check_error(err, path, keypath, value_text, "no source", table)


def test_string_needs_no_source(tmp_path):
    path = write_profile(tmp_path, {"dac": {"noise_management": "none"}}, unsourced=("dac.noise_management",))
    assert load_profile(path).dac.noise_management == "none"


@pytest.mark.parametrize(
    "changes, keypath, value_text, allowed",
    [
        ({"device": {"sources": {"g_max_us": "typo'd citation"}}}, "device.sources.g_max_us",
         "typo'd citation", "did you mean 'g_max_uS'"),
        ({"adc": {"bits": 8, "sources": {"noise": "a citation"}}}, "adc.sources.noise", "'a citation'",
         "unknown key"),
    ],
)
def test_source_for_unknown_key(tmp_path, changes, keypath, value_text, allowed):
    path = write_profile(tmp_path, changes)
    err = load_error(path)
    check_error(err, path, keypath, value_text, "source for an unknown key", allowed)


def test_toml_syntax_error(tmp_path):
    path = tmp_path / "broken.toml"
    text = '[meta]\nname = "broken"\ndescription = "x"\n\n[device\nmapping = "ideal"\n'
    path.write_text(text, encoding="utf-8")
    err = load_error(path)
    msg = str(err)
    assert str(path) in msg
    assert "not valid TOML" in msg
    assert "line 5" in msg
    assert len(err.issues) == 1


def test_missing_file(tmp_path):
    path = tmp_path / "does-not-exist.toml"
    err = load_error(path)
    assert str(path) in str(err)
    assert "no such file" in str(err)


def test_unknown_profile_name_suggests_and_lists():
    err = load_error("pcn")
    msg = str(err)
    assert "pcn" in msg
    assert "no such profile" in msg
    assert "did you mean 'pcm'" in msg
    for name in SHIPPED:
        assert name in msg


def test_all_problems_reported_at_once(tmp_path):
    changes = {
        "meta": {"description": DROP},
        "device": {"levelz": 4, "drift": {"t0_s": -1.0}},
        "dac": {"bits": 8.5},
        "adc": {"bits": -1},
        "tile": {"ir_drop": math.inf, "sources": {"row": "x"}},
        "update": {"model": "linearr"},
        "cost": {"adc_energy_pJ": 5.0},
    }
    path = write_profile(tmp_path, changes, unsourced=("cost.adc_energy_pJ",))
    err = load_error(path)
    expected = {"meta.description", "device.levelz", "device.drift.t0_s", "dac.bits", "adc.bits",
                "tile.ir_drop", "tile.sources.row", "update.model", "cost.adc_energy_pJ"}
    got = {i.keypath for i in err.issues}
    assert expected <= got, expected - got
    msg = str(err)
    assert msg.count("\n  - ") == len(err.issues)
    for kp in expected:
        assert kp in msg


def test_inconsistent_combination_reported_with_other_problems(tmp_path):
    """The loader's contract: every problem, inconsistent combinations included, in one error."""
    path = write_profile(tmp_path, {"device": {"g_min_uS": 30.0}, "dac": {"bits": 8.5}})
    err = load_error(path)
    got = {i.keypath for i in err.issues}
    assert {"dac.bits", "device.g_max_uS"} <= got, got


# --------------------------------------------------------------------------------------------------
# 5. FFSIM_PROFILE_PATH


def test_profile_path_env_adds_a_folder(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    write_profile(folder, {"meta": {"name": "mychip"}}, name="mychip")
    assert "mychip" not in list_profiles()
    monkeypatch.setenv("FFSIM_PROFILE_PATH", str(folder))
    found = list_profiles()
    assert found["mychip"] == folder / "mychip.toml"
    for name in SHIPPED:
        assert name in found
    p = load_profile("mychip")
    assert p.meta.name == "mychip"
    assert Path(p.path) == folder / "mychip.toml"


def test_profile_path_env_several_folders_and_precedence(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    write_profile(a, {"meta": {"name": "chip-a"}}, name="chip-a")
    write_profile(b, {"meta": {"name": "chip-b"}}, name="chip-b")
    # a private 'pcm' shadows the shipped one (the user's folders are searched first)
    raw = _pcm_raw()
    raw["adc"]["bits"] = 6
    (b / "pcm.toml").write_text(to_toml(raw), encoding="utf-8")
    monkeypatch.setenv("FFSIM_PROFILE_PATH", os.pathsep.join([str(a), str(b)]))
    found = list_profiles()
    assert found["chip-a"] == a / "chip-a.toml"
    assert found["chip-b"] == b / "chip-b.toml"
    assert found["pcm"] == b / "pcm.toml"
    assert load_profile("chip-b").meta.name == "chip-b"
    assert load_profile("pcm").adc.bits == 6


def test_did_you_mean_covers_user_profiles(tmp_path, monkeypatch):
    write_profile(tmp_path, {"meta": {"name": "mychip"}}, name="mychip")
    monkeypatch.setenv("FFSIM_PROFILE_PATH", str(tmp_path))
    err = load_error("mychp")
    assert "did you mean 'mychip'" in str(err)


# --------------------------------------------------------------------------------------------------
# 6. describe_profile


def test_describe_profile_shows_units_and_sources():
    p = load_profile("pcm")
    text = describe_profile(p)
    assert p.profile_hash in text
    assert "pcm" in text
    assert "µS" in text
    g_line = next(ln for ln in text.splitlines() if ln.startswith("device.g_max_uS "))
    assert "25" in g_line and "µS" in g_line
    assert p.source_of("device.g_max_uS") in g_line
    t0_line = next(ln for ln in text.splitlines() if ln.startswith("device.drift.t0_s "))
    assert " s " in t0_line and p.source_of("device.drift.t0_s") in t0_line
    # keys the file leaves at their default say so
    lvl_line = next(ln for ln in text.splitlines() if ln.startswith("device.levels "))
    assert "(default)" in lvl_line
    assert "pJ" in text and "ns" in text
    assert p.meta.references[0] in text
