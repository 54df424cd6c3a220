"""``ebpf prog``, ``ebpf map`` and ``ebpf link``: what is loaded on the system."""

from __future__ import annotations

import argparse
import errno
from collections.abc import Sequence
from typing import Any

from ebpf.core import records
from ebpf.core._cli._output import cell, format_fields, print_json, print_table
from ebpf.core.errors import BPFSyscallError, EBPFError

__all__ = ["add_commands"]

_PROG_COLUMNS = ("id", "type", "name", "tag", "run_cnt", "run_time_ns", "map_ids", "btf_id")
_MAP_COLUMNS = ("id", "type", "name", "key_size", "value_size", "max_entries", "flags", "btf_id")
_LINK_COLUMNS = ("id", "type", "prog_id", "attach_type")


def _columns(infos: Sequence[Any], preferred: Sequence[str]) -> list[str]:
    """The preferred columns the info records have."""
    if not infos:
        return list(preferred)
    return [c for c in preferred if hasattr(infos[0], c)]


def _listing(infos: Sequence[Any], preferred: Sequence[str], as_json: bool) -> int:
    if as_json:
        print_json(list(infos))
        return 0
    cols = _columns(infos, preferred)
    print_table([c.upper() for c in cols], ([getattr(i, c, "") for c in cols] for i in infos))
    return 0


def _fields(info: Any) -> list[tuple[str, Any]]:
    if records.is_dataclass(info):
        return [(name, getattr(info, name)) for name in records.field_names(info)]
    return list(vars(info).items())


def _prog_list(args: argparse.Namespace) -> int:
    from ebpf.core.programs import programs  # deferred: start-up time (only this command needs it)

    return _listing(sorted(programs(), key=lambda p: p.id), _PROG_COLUMNS, args.json)


def _not_found(exc: BPFSyscallError, what: str) -> EBPFError:
    if exc.errno == errno.ENOENT:
        return EBPFError(f"no {what} (see `ebpf {what.split()[0]} list`)")
    return exc


def _prog_show(args: argparse.Namespace) -> int:
    from ebpf.core.programs import Program  # deferred: start-up time (only this command needs it)

    try:
        prog = Program.from_id(args.id)
    except BPFSyscallError as exc:
        raise _not_found(exc, f"prog with id {args.id}") from exc
    with prog:
        info = prog.info()
    if args.json:
        print_json(info)
    else:
        print(format_fields(_fields(info)))
    return 0


def xlated_insns(prog_id: int) -> bytes:
    """The instructions of program ``prog_id`` as the kernel holds them (after the verifier's rewrites).

    :raises EBPFError: when there is no such program.
    """
    import ctypes  # deferred: start-up time (only this command needs it)

    from ebpf.core._sys import commands  # deferred: start-up time (only this command needs it)
    from ebpf.core._sys.attrs import ProgInfo  # deferred: start-up time (only this command needs it)
    from ebpf.core._sys.syscall import close_fd  # deferred: start-up time (only this command needs it)

    try:
        fd = commands.fd_by_id("prog", prog_id)
    except BPFSyscallError as exc:
        raise _not_found(exc, f"prog with id {prog_id}") from exc
    try:
        size = commands.prog_info(fd).xlated_prog_len
        buf = ctypes.create_string_buffer(max(size, 1))
        info = commands.obj_info(fd, ProgInfo, ProgInfo(xlated_prog_len=size, xlated_prog_insns=ctypes.addressof(buf)))
        return buf.raw[: min(size, info.xlated_prog_len)]
    finally:
        close_fd(fd)


def _prog_dump(args: argparse.Namespace) -> int:
    from ebpf.core.asm import disassemble  # deferred: start-up time (only this command needs it)

    code = xlated_insns(args.id)
    text = disassemble(code, objdump=not args.json, helper_names=True)
    if args.json:
        print_json({"id": args.id, "xlated": code, "text": text.splitlines()})
    else:
        print(text, end="")
    return 0


def _map_list(args: argparse.Namespace) -> int:
    from ebpf.core.maps import maps  # deferred: start-up time (only this command needs it)

    return _listing(sorted(maps(), key=lambda m: m.id), _MAP_COLUMNS, args.json)


def _open_map(ref: str) -> Any:
    from ebpf.core.maps import Map  # deferred: start-up time (only this command needs it)

    try:
        if ref.isdigit():
            return Map.from_id(int(ref))
        return Map.from_pinned(ref)
    except BPFSyscallError as exc:
        raise _not_found(exc, f"map with id {ref}" if ref.isdigit() else f"map pinned at {ref}") from exc


def _map_dump(args: argparse.Namespace) -> int:
    from ebpf.core.maps import dump_map  # deferred: start-up time (only this command needs it)

    with _open_map(args.map) as m:
        if args.json:
            info = m.info()
            entries = [{"key": k, "value": v} for k, v in m.items()]
            print_json({"map": info, "entries": entries})
        else:
            print(dump_map(m))
    return 0


def _link_details(info: Any) -> str:
    """The type-specific fields a link has (``tp_name=sched_switch ifindex=3``)."""
    skip = {*_LINK_COLUMNS, "details"}
    parts = []
    if records.is_dataclass(info):
        parts = [f"{name}={cell(getattr(info, name))}" for name in records.field_names(info)
                 if name not in skip and getattr(info, name) is not None]
    parts += [f"{k}={cell(v)}" for k, v in (getattr(info, "details", None) or {}).items()]
    return " ".join(parts)


def _link_list(args: argparse.Namespace) -> int:
    from ebpf.core.links import links  # deferred: start-up time (only this command needs it)

    infos = sorted(links(), key=lambda li: li.id)
    if args.json:
        print_json(infos)
        return 0
    print_table(["ID", "TYPE", "PROG_ID", "ATTACH_TYPE", "DETAILS"],
                ([i.id, i.type, i.prog_id, getattr(i, "attach_type", None), _link_details(i)] for i in infos))
    return 0


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``prog``, ``map`` and ``link`` to the ``ebpf`` parser."""
    prog = sub.add_parser("prog", help="programs loaded on the system")
    prog_sub = prog.add_subparsers(dest="prog_command", metavar="{list,show,dump}", required=True)
    p = prog_sub.add_parser("list", help="list every loaded program")
    _json_flag(p)
    p.set_defaults(func=_prog_list)
    p = prog_sub.add_parser("show", help="show one program's kernel info")
    p.add_argument("id", type=int, help="program id (see `ebpf prog list`)")
    _json_flag(p)
    p.set_defaults(func=_prog_show)

    p = prog_sub.add_parser("dump", help="disassemble a program's instructions as the kernel holds them")
    p.add_argument("id", type=int, help="program id (see `ebpf prog list`)")
    _json_flag(p)
    p.set_defaults(func=_prog_dump)

    mp = sub.add_parser("map", help="maps on the system")
    map_sub = mp.add_subparsers(dest="map_command", metavar="{list,dump}", required=True)
    p = map_sub.add_parser("list", help="list every map")
    _json_flag(p)
    p.set_defaults(func=_map_list)
    p = map_sub.add_parser("dump", help="print a map's entries")
    p.add_argument("map", metavar="ID_OR_PINNED_PATH", help="map id, or a path on bpffs where it is pinned")
    _json_flag(p)
    p.set_defaults(func=_map_dump)

    link = sub.add_parser("link", help="links on the system")
    link_sub = link.add_subparsers(dest="link_command", metavar="{list}", required=True)
    p = link_sub.add_parser("list", help="list every link")
    _json_flag(p)
    p.set_defaults(func=_link_list)

