"""Before-load settings of an object's spec: what libbpf's skeleton lets a tool change before load.

``load_elf(path, maps={...}, programs={...}, constants={...})`` applies them in one call;
the same can be done on ``load_spec(path)`` directly (``spec.maps[name].max_entries = n``,
``spec.programs[name].autoload = False``, ``spec.programs[name].prog_type = "kprobe"``).
Everything is checked here, before any syscall.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ebpf.core import records
from ebpf.core.collection import CollectionSpec
from ebpf.core.errors import EBPFError, ELFError
from ebpf.core.types import AttachType, ProgType

__all__ = ["configure", "MAP_SETTINGS", "PROGRAM_SETTINGS"]

#: Keys accepted in ``maps={name: {...}}``.
MAP_SETTINGS = ("max_entries", "key_size", "value_size", "flags", "pinning", "pin_path", "numa_node", "map_extra")
#: Keys accepted in ``programs={name: {...}}``.
PROGRAM_SETTINGS = ("autoload", "type", "attach_type", "attach_to", "flags")
_PINNING = {"none": False, "by_name": True, 0: False, 1: True}


def configure(spec: CollectionSpec, maps: Mapping[str, Mapping[str, Any]] | None = None,
              programs: Iterable[str] | Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Apply map and program settings to ``spec`` (in place).

    :param maps: ``{map name: {"max_entries": n, "value_size": n, "flags": n, "pinning": "by_name"|"none",
        "pin_path": path, "key_size": n, "numa_node": n, "map_extra": n}}``.
    :param programs: names to load (the others are not loaded), or ``{program name: {"autoload": bool,
        "type": prog type, "attach_type": attach type, "attach_to": BTF target, "flags": n}}``.
    :raises ELFError: an unknown map, program or setting, or a value of the wrong kind.
    """
    if maps is not None:
        if not isinstance(maps, Mapping):
            raise ELFError(f"maps= takes {{name: {{setting: value}}}}, not {type(maps).__name__}")
        for name, settings in maps.items():
            _configure_map(spec, name, settings)
    if programs is None:
        return
    if isinstance(programs, Mapping):
        for name, settings in programs.items():
            _configure_program(spec, name, settings)
        return
    if isinstance(programs, (str, bytes)) or not isinstance(programs, Iterable):
        raise ELFError(f"programs= takes a list of names or {{name: {{setting: value}}}}, not {programs!r}")
    wanted = list(programs)
    missing = [p for p in wanted if p not in spec.programs]
    if missing:
        raise ELFError(f"no program(s) {missing} (programs: {sorted(spec.programs)})")
    for name in list(spec.programs):
        if name not in wanted:
            spec.programs[name].autoload = False


def _int_setting(where: str, key: str, value: Any, bits: int = 32) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise ELFError(f"{where}: {key} must be an int in [0, 2**{bits}), not {value!r}")
    return value


def _configure_map(spec: CollectionSpec, name: str, settings: Mapping[str, Any]) -> None:
    where = f"map {name!r}"
    mspec = spec.maps.get(name)
    if mspec is None:
        raise ELFError(f"no map {name!r} (maps: {sorted(spec.maps)})")
    if not isinstance(settings, Mapping):
        raise ELFError(f"{where}: settings must be a dict, not {type(settings).__name__}")
    unknown = sorted(set(settings) - set(MAP_SETTINGS))
    if unknown:
        raise ELFError(f"{where}: unknown setting(s) {unknown} (known: {', '.join(MAP_SETTINGS)})")
    internal = name.startswith(".")
    changes: dict[str, Any] = {}
    for key, value in settings.items():
        if key == "pinning":
            if value not in _PINNING:
                raise ELFError(f"{where}: pinning must be 'none' or 'by_name', not {value!r}")
            if _PINNING[value]:
                spec.pin_by_name.add(name)
            else:
                spec.pin_by_name.discard(name)
        elif key == "pin_path":
            if value is not None and not isinstance(value, str):
                raise ELFError(f"{where}: pin_path must be a str, not {type(value).__name__}")
            changes["pin_path"] = value
        elif key == "numa_node":
            changes["numa_node"] = None if value is None else _int_setting(where, key, value)
        elif key == "map_extra":
            changes["map_extra"] = _int_setting(where, key, value, 64)
        else:
            if internal and key in ("key_size", "value_size", "max_entries"):
                raise ELFError(f"{where}: the {key} of global data is the section's; set variables instead")
            changes[key] = _int_setting(where, key, value)
    if ("key_size" in changes and changes["key_size"] != mspec.key_size) or (
            "value_size" in changes and changes["value_size"] != mspec.value_size):
        # The BTF types no longer describe the new sizes: create the map without them.
        changes.update(btf_key_type_id=0, btf_value_type_id=0, key_codec=None, value_codec=None)
    for key, value in changes.items():
        setattr(mspec, key, value)


def _configure_program(spec: CollectionSpec, name: str, settings: Mapping[str, Any]) -> None:
    where = f"program {name!r}"
    pspec = spec.programs.get(name)
    if pspec is None:
        raise ELFError(f"no program {name!r} (programs: {sorted(spec.programs)})")
    if not isinstance(settings, Mapping):
        raise ELFError(f"{where}: settings must be a dict, not {type(settings).__name__}")
    unknown = sorted(set(settings) - set(PROGRAM_SETTINGS))
    if unknown:
        raise ELFError(f"{where}: unknown setting(s) {unknown} (known: {', '.join(PROGRAM_SETTINGS)})")
    changes: dict[str, Any] = {}
    for key, value in settings.items():
        if key == "autoload":
            if not isinstance(value, bool):
                raise ELFError(f"{where}: autoload must be True or False, not {value!r}")
            changes["autoload"] = value
        elif key == "type":
            try:
                changes["prog_type"] = ProgType.parse(value)
            except EBPFError as exc:
                raise ELFError(f"{where}: {exc}") from None
        elif key == "attach_type":
            try:
                changes["expected_attach_type"] = None if value is None else AttachType.parse(value)
            except EBPFError as exc:
                raise ELFError(f"{where}: {exc}") from None
        elif key == "attach_to":
            if value is not None and not isinstance(value, str):
                raise ELFError(f"{where}: attach_to must be a str, not {type(value).__name__}")
            changes["attach_to"] = value
        else:
            changes["flags"] = _int_setting(where, key, value)
    spec.programs[name] = records.replace(pspec, **changes)
