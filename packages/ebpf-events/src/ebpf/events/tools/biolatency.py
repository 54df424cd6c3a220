"""biolatency: block I/O latency (issue to completion) as a log2 histogram, optionally per disk.

tp_btf programs on ``block_rq_issue`` store the issue time under the request's address and
``block_rq_complete`` counts ``now - issue`` (bcc/libbpf-tools ``biolatency``).  With
``queued`` (bcc's ``-Q``) the time starts at ``block_rq_insert`` (I/O scheduler queue) instead;
requests that bypass the queue (direct issue, no insert) start at issue as libbpf-tools' do.
``pid`` keeps the requests started (inserted or issued) in that process's context.  Per disk,
the key is ``dev << 32 | slot`` with ``dev`` read through ``rq->q->disk`` (major, first_minor)
at the running kernel's BTF offsets, and sections print as disk names (``/sys/dev/block``).
Requires tp_btf (Linux >= 5.5) and vmlinux BTF.
"""

from __future__ import annotations

import functools
from typing import Any

from ebpf.core import asm
from ebpf.core.asm import R0, R1, R2, R3, R4, R6, R7, R8, R9, R10
from ebpf.core.errors import BTFError, EBPFError
from ebpf.events.hist import HIGH32, Histogram
from ebpf.events.tools._common import UNITS, ToolBase, check_common, ktime_to, pid_filter

__all__ = ["BioLatency", "disk_name", "flags_name"]

_SLOTS = 64


def disk_name(dev: int) -> str:
    """``"loop3"`` for the device number ``major << 20 | minor`` (``"MAJ:MIN"`` when unknown)."""
    major, minor = dev >> 20, dev & 0xFFFFF
    try:
        with open(f"/sys/dev/block/{major}:{minor}/uevent") as fh:
            for line in fh:
                if line.startswith("DEVNAME="):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return f"{major}:{minor}"


def _offsets() -> tuple[int, int, int, int, int]:
    from ebpf.core.btf import Struct, load_vmlinux

    spec = load_vmlinux()
    rq, queue, disk = spec.find("request"), spec.find("request_queue"), spec.find("gendisk")
    if not all(isinstance(t, Struct) for t in (rq, queue, disk)):
        raise BTFError("vmlinux BTF lacks struct request/request_queue/gendisk")
    assert isinstance(rq, Struct) and isinstance(queue, Struct) and isinstance(disk, Struct)
    return (rq.member("q").offset, queue.member("disk").offset, disk.member("major").offset,
            disk.member("first_minor").offset, rq.member("cmd_flags").offset)


def _camel(name: str, prefix: str) -> str:
    """``"WriteZeroes"`` for ``REQ_OP_WRITE_ZEROES`` (``prefix`` ``"REQ_OP_"``)."""
    return "".join(part.capitalize() for part in name.removeprefix(prefix).split("_"))


@functools.lru_cache(maxsize=1)
def _request_names() -> tuple[int, dict[int, str], list[tuple[int, str]]]:
    """(operation bits, operation names, flag bits and names) from the kernel's ``req_op`` and
    ``req_flag_bits`` enums (empty when the BTF has neither: numbers are printed instead)."""
    from ebpf.core.btf import Enum, load_vmlinux

    try:
        spec = load_vmlinux()
        ops, bits = spec.find("req_op"), spec.find("req_flag_bits")
    except BTFError:
        return 8, {}, []
    op_names = {v.value: _camel(v.name, "REQ_OP_") for v in ops.values} if isinstance(ops, Enum) else {}
    flags = [(v.value, _camel(v.name, "__REQ_")) for v in bits.values
             if not v.name.endswith("_NR_BITS")] if isinstance(bits, Enum) else []
    op_bits = min((bit for bit, _ in flags), default=8)  # the flags start where the operation ends
    return op_bits, op_names, sorted(flags)


def flags_name(flags: int) -> str:
    """bcc's name for a request's ``cmd_flags``: the flags set, then the operation (``"Sync-Write"``, ``"Read"``).

    Names come from this kernel's BTF (``enum req_op``, ``enum req_flag_bits``); unknown bits show as hex.
    """
    op_bits, op_names, bits = _request_names()
    op = flags & ((1 << op_bits) - 1)
    parts = [name for bit, name in bits if flags >> bit & 1]
    known = sum(1 << bit for bit, _ in bits) | ((1 << op_bits) - 1)
    if flags & ~known:
        parts.append(f"{flags & ~known:#x}")
    parts.append(op_names.get(op, f"Op{op}"))
    return "-".join(parts)


class BioLatency(ToolBase):
    """Block I/O latency histogram, attached when created.

    :param per_disk: one histogram per disk (sections are device numbers; :func:`disk_name` names them).
    :param per_flags: one histogram per set of request flags (bcc's ``-F``; sections are ``cmd_flags``
        values, :func:`flags_name` names them: ``"Sync-Write"``); not with ``per_disk``.
    :param unit: ``"usecs"`` (default), ``"nsecs"`` or ``"msecs"``.
    :param disk: only this disk (a name such as ``"loop3"``; implies nothing else).
    :param pid: only requests started in this process's context (bcc's biosnoop records the same
        pid; I/O that a kernel worker submits on a process's behalf is the worker's).
    :param queued: include the time spent in the I/O scheduler queue (bcc's ``-Q``: from
        ``block_rq_insert``, or from issue for requests that were never queued).
    :raises EBPFError: bad arguments or unknown disk (before loading).
    """

    def __init__(self, *, per_disk: bool = False, unit: str = "usecs", disk: str | None = None,
                 pid: int | None = None, queued: bool = False, per_flags: bool = False) -> None:
        """Create the maps, load and attach the programs."""
        super().__init__()
        check_common(unit=unit, pid=pid)
        if per_disk and per_flags:
            raise EBPFError("biolatency: one histogram per disk or per flags, not both")
        self.per_disk, self.unit, self.pid, self.queued = per_disk, unit, pid, bool(queued)
        self.per_flags = bool(per_flags)
        self.dev = None if disk is None else _dev_of(disk)
        #: The loaded programs by tracepoint (``block_rq_insert`` only with ``queued``).
        self.programs: dict[str, Any] = {}
        from ebpf.core.maps import create_array_map, create_hash_map
        from ebpf.events.tracing import attach_tp_btf, load_tracing_program

        self._q, self._disk, self._major, self._minor, self._flags = _offsets()
        keyed = per_disk or self.per_flags
        try:
            self.start = self._hold(create_hash_map(10240, key_size=8, value_size=8, name="bio_start"))
            self.hist = self._hold(create_hash_map(4096, key_size=8, value_size=8, name="bio_hist") if keyed
                                   else create_array_map(_SLOTS, value_size=8, name="bio_hist"))
            maps = (self.start, self.hist)
            # -Q: insert stamps first; issue only stamps requests that were never inserted (BPF_NOEXIST).
            starts = [("block_rq_insert", self._start(0)), ("block_rq_issue", self._start(1))] if self.queued \
                else [("block_rq_issue", self._start(0))]
            for target, insns in (*starts, ("block_rq_complete", self._complete())):
                prog = self._hold(load_tracing_program(insns, "tp_btf", target, name=f"bio_{target[9:]}", maps=maps))
                self.programs[target] = prog
                self._hold(attach_tp_btf(prog))
        except BaseException:
            self.close()
            raise

    def _dev(self, rq: Any, dst: Any) -> list[Any]:
        """dst = rq->q->disk->major << 20 | first_minor (0 when there is no disk)."""
        return [asm.ldx_mem("dw", R2, rq, self._q), asm.ldx_mem("dw", R2, R2, self._disk), asm.jeq(R2, 0, "nodisk"),
                asm.ldx_mem("w", dst, R2, self._major), asm.lsh64(dst, 20), asm.ldx_mem("w", R3, R2, self._minor),
                asm.or64(dst, R3), asm.ja("devdone"), asm.label("nodisk"), asm.mov64(dst, 0), asm.label("devdone")]

    def _start(self, update_flags: int) -> list[Any]:
        """start[rq] = now (after the disk and pid filters), with map_update_elem's ``update_flags``."""
        only = [*self._dev(R6, R9), asm.jne(R9, self.dev, "out")] if self.dev is not None else []
        only += pid_filter(self.pid, "out")
        return [asm.ldx_mem("dw", R6, R1, 0), *only, asm.stx_mem("dw", R10, R6, -8),
                asm.call("ktime_get_ns"), asm.stx_mem("dw", R10, R0, -16),
                asm.ld_map_fd(R1, self.start), asm.mov64(R2, R10), asm.add64(R2, -8),
                asm.mov64(R3, R10), asm.add64(R3, -16), asm.mov64(R4, update_flags), asm.call("map_update_elem"),
                asm.label("out"), asm.mov64(R0, 0), asm.exit_()]

    def _complete(self) -> list[Any]:
        count = [*asm.log2(R8, R0, tmp=R7)]
        if self.per_disk or self.per_flags:
            section = self._dev(R6, R9) if self.per_disk else [asm.ldx_mem("w", R9, R6, self._flags)]
            count += [*section, asm.lsh64(R9, 32), asm.or64(R8, R9),
                      *asm.hist_increment(self.hist, R8, key_size=8, key_off=-24, create=True)]
        else:
            count += asm.hist_increment(self.hist, R8, max_slots=_SLOTS, key_off=-24)
        return [
            asm.ldx_mem("dw", R6, R1, 0), asm.stx_mem("dw", R10, R6, -8),
            asm.ld_map_fd(R1, self.start), asm.mov64(R2, R10), asm.add64(R2, -8), asm.call("map_lookup_elem"),
            asm.jeq(R0, 0, "out"), asm.ldx_mem("dw", R7, R0, 0),
            asm.call("ktime_get_ns"), asm.sub64(R0, R7), asm.jslt(R0, 0, "drop"), *ktime_to(UNITS[self.unit]),
            *count,
            asm.label("drop"),
            asm.stx_mem("dw", R10, R6, -8),
            asm.ld_map_fd(R1, self.start), asm.mov64(R2, R10), asm.add64(R2, -8), asm.call("map_delete_elem"),
            asm.label("out"), asm.mov64(R0, 0), asm.exit_(),
        ]

    def histogram(self) -> Histogram:
        """The latencies so far (keyed by device number with ``per_disk``, by ``cmd_flags`` with ``per_flags``)."""
        if self.per_disk or self.per_flags:
            return Histogram.from_map(self.hist, key=HIGH32)
        return Histogram.from_map(self.hist)

    def format(self) -> str:
        """bcc's printout (``disk = 'sda'`` sections with ``per_disk``, ``flags = 'Sync-Write'`` with ``per_flags``)."""
        if self.per_flags:
            return self.histogram().format_log2_hist(self.unit, section_header="flags", section_print_fn=flags_name)
        return self.histogram().format_log2_hist(self.unit, section_header="disk", section_print_fn=disk_name)

    def clear(self) -> None:
        """Zero the histogram."""
        if self.per_disk or self.per_flags:
            self.hist.clear()
        else:
            for i in range(_SLOTS):
                self.hist[i] = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: unit and the histogram (sections named by disk or by flags)."""
        d = {"unit": self.unit, **self.histogram().to_dict()}
        if "sections" in d:
            name = flags_name if self.per_flags else disk_name
            d["sections"] = {name(int(k)): v for k, v in d["sections"].items()}
        return d


def _dev_of(disk: str) -> int:
    from ebpf.core.errors import EBPFError

    if not isinstance(disk, str) or not disk or "/" in disk.removeprefix("/dev/"):
        raise EBPFError(f"bad disk name {disk!r}")
    name = disk.removeprefix("/dev/")
    try:
        with open(f"/sys/class/block/{name}/dev") as fh:
            major, minor = (int(x) for x in fh.read().split(":"))
    except (OSError, ValueError):
        raise EBPFError(f"no block device {name!r} (see /sys/class/block)") from None
    return (major << 20) | minor



