"""Hardware profiles: one validated, hashed description of a technology per TOML file."""

from ffsim.profiles.loader import (
    ProfileError,
    ProfileIssue,
    find_profile,
    list_profiles,
    load_profile,
    profile_dirs,
    profile_from_dict,
)
from ffsim.profiles.schema import (
    ADCSpec,
    CostSpec,
    DACSpec,
    DeviceSpec,
    DriftSpec,
    FaultSpec,
    HardwareProfile,
    Meta,
    ProgrammingSpec,
    ReadNoiseSpec,
    TileSpec,
    UpdateSpec,
    VariationSpec,
)
from ffsim.profiles.show import describe_profile

__all__ = [
    "ADCSpec",
    "CostSpec",
    "DACSpec",
    "DeviceSpec",
    "DriftSpec",
    "FaultSpec",
    "HardwareProfile",
    "Meta",
    "ProfileError",
    "ProfileIssue",
    "ProgrammingSpec",
    "ReadNoiseSpec",
    "TileSpec",
    "UpdateSpec",
    "VariationSpec",
    "describe_profile",
    "find_profile",
    "list_profiles",
    "load_profile",
    "profile_dirs",
    "profile_from_dict",
]
