"""``ebpf check``: what this machine can do with BPF, and what the plugins add."""

from __future__ import annotations

import argparse
import functools
import textwrap
from collections.abc import Callable, Iterable
from typing import Any

from ebpf.core._cli._output import format_fields, print_json
from ebpf.core.types import LinkType, MapType, ProgType

__all__ = ["add_commands", "collect_report"]


def _outcome(call: Callable[[], None]) -> str | None:
    """None when ``call`` finds the feature, else why not, or "could not tell ..."; never raises."""
    from ebpf.core._probing import outcome  # late: only `ebpf check` runs probes

    return outcome(call)


def _probe_all(probe: Callable[[Any], None] | None, members: Iterable[Any]) -> dict[str, str | None]:
    """member name -> None (supported) or why not; never raises."""
    result: dict[str, str | None] = {}
    for member in members:
        if member.value == 0:  # UNSPEC
            continue
        if probe is None:
            result[member.name.lower()] = "ebpf.core.features is not available"
        else:
            result[member.name.lower()] = _outcome(functools.partial(probe, member))
    return result


def _feature_probes() -> dict[str, Callable[[Any], None] | None]:
    try:
        import ebpf.core.features as features  # deferred: start-up time (only this command needs it)
    except ImportError:
        return {"map_types": None, "prog_types": None, "link_types": None}
    return {
        "map_types": getattr(features, "have_map_type", None),
        "prog_types": getattr(features, "have_prog_type", None),
        "link_types": getattr(features, "have_link_type", None),
    }


_KERNEL_FEATURES = {
    "batch_ops": "have_batch_ops",
    "kprobes": "have_kprobes",
    "fentry": "have_fentry",
    "lsm": "have_lsm",
}


def _kernel_features() -> dict[str, str | None]:
    """The other probes of ebpf.core.features (batch map commands, kprobes, trampolines, LSM)."""
    try:
        import ebpf.core.features as features  # deferred: start-up time (only this command needs it)
    except ImportError:
        return {}
    result: dict[str, str | None] = {}
    for label, fn_name in _KERNEL_FEATURES.items():
        fn = getattr(features, fn_name, None)
        if fn is not None:
            result[label] = _outcome(fn)
    return result


def collect_report() -> dict[str, Any]:
    """Everything ``ebpf check`` shows, as plain data; never raises for a missing feature."""
    from ebpf.core import plugins  # deferred: start-up time (only this command needs it)
    from ebpf.core.system import BTF_VMLINUX, init  # deferred: start-up time (only this command needs it)

    info = init(mount=False)
    probes = _feature_probes()
    return {
        "system": {
            "kernel_version": ".".join(map(str, info.kernel_version)),
            "bpf_available": info.bpf_available,
            "reason": info.reason,
            "has_cap_bpf": info.has_cap_bpf,
            "bpf_fs_mounted": info.bpf_fs_mounted,
            "btf_available": info.btf_available,
            "btf_path": BTF_VMLINUX if info.btf_available else None,
            "cpu_count": info.cpu_count,
        },
        "map_types": _probe_all(probes["map_types"], MapType),
        "prog_types": _probe_all(probes["prog_types"], ProgType),
        "link_types": _probe_all(probes["link_types"], LinkType),
        "features": _kernel_features(),
        "plugins": [{"name": n, "distribution": d} for n, d in plugins.registered_plugins()],
        "plugin_features": info.features,
        "broken_plugins": [
            {"name": b.name, "distribution": b.distribution, "reason": b.reason} for b in plugins.broken_plugins()
        ],
    }


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _wrapped(label: str, names: list[str], suffix: str = "") -> list[str]:
    indent = "  " + " " * len(label)
    return textwrap.wrap(", ".join(names) + suffix, width=100, initial_indent=f"  {label}", subsequent_indent=indent,
                         break_on_hyphens=False)


def _support_section(title: str, results: dict[str, str | None], verbose: bool) -> list[str]:
    ok = [name for name, why in results.items() if why is None]
    lines = [f"{title}: {len(ok)} of {len(results)} supported"]
    if ok:
        lines += _wrapped("supported: ", ok)
    for label, group in (("missing:   ", {n: why for n, why in results.items() if why and not _unknown(why)}),
                         ("could not tell: ", {n: why for n, why in results.items() if why and _unknown(why)})):
        if group and verbose:  # each reason says whether it is missing or could not tell
            lines += [f"  {n}: {why}" for n, why in group.items()]
        elif group:
            lines += _wrapped(label, list(group), "  (--verbose for reasons)")
    return lines


def _unknown(why: str) -> bool:
    return why.startswith("could not tell")


def _plugin_feature(why: str | None) -> str:
    if why is None:
        return "yes"
    return why if _unknown(why) else f"no: {why}"


def format_report(report: dict[str, Any], verbose: bool = False) -> str:
    """The human-readable form of :func:`collect_report`."""
    sysinfo = report["system"]
    lines = ["System"]
    fields = format_fields([
        ("kernel", sysinfo["kernel_version"]),
        ("bpf()", "available" if sysinfo["bpf_available"] else f"NOT available: {sysinfo['reason']}"),
        ("CAP_BPF", _yes(sysinfo["has_cap_bpf"])),
        ("bpffs", "mounted at /sys/fs/bpf" if sysinfo["bpf_fs_mounted"] else "not mounted (`ebpf.core.ensure_bpf_fs()`)"),
        ("BTF", sysinfo["btf_path"] or "not available"),
        ("CPUs", f"{sysinfo['cpu_count']} possible"),
    ])
    lines += ["  " + line for line in fields.splitlines()]
    lines.append("")
    lines += _support_section("Map types", report["map_types"], verbose)
    lines += _support_section("Program types", report["prog_types"], verbose)
    lines += _support_section("Link types", report["link_types"], verbose)
    if report["features"]:
        lines += _support_section("Other features", report["features"], verbose)
    lines.append("")
    lines.append(f"Plugins: {len(report['plugins'])}")
    for p in report["plugins"]:
        lines.append(f"  {p['name']}" + (f" ({p['distribution']})" if p["distribution"] else ""))
    features = report["plugin_features"]
    lines.append(f"Plugin features: {len(features)}")
    for name, why in features.items():
        lines.append(f"  {name}: {_plugin_feature(why)}")
    broken = report["broken_plugins"]
    lines.append(f"Broken plugins: {len(broken)}")
    for b in broken:
        lines.append(f"  {b['name']}" + (f" ({b['distribution']})" if b["distribution"] else "") + f": {b['reason']}")
    return "\n".join(lines)


def _check(args: argparse.Namespace) -> int:
    report = collect_report()
    if args.json:
        print_json(report)
    else:
        print(format_report(report, verbose=args.verbose))
    return 0 if report["system"]["bpf_available"] else 1


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``check`` to the ``ebpf`` parser."""
    p = sub.add_parser("check", help="report what this kernel supports and which plugins are installed")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("-v", "--verbose", action="store_true", help="say why each missing feature is missing")
    p.set_defaults(func=_check)
