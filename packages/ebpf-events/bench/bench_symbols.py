"""Symbolization speed: user addresses of a process with ~50 libraries, and kernel addresses.

Two costs, measured separately, each against a reference run in the same process:

- ``symbols.user.parse``: the first :class:`ProcessSymbols` of a Python child that imported about
  fifty extension modules (every mapped ELF file parsed: ``.symtab``/``.dynsym``, debug files,
  MiniDebugInfo), against ``nm``-based parsing of the same files (``nm --defined-only`` and
  ``nm -D --defined-only`` per file, output parsed into sorted tables: what a script does today);
- ``symbols.user.resolve``: 100,000 addresses inside those files' functions resolved with
  ``ProcessSymbols.resolve`` (``Symbol`` objects), against a plain ``bisect`` over one pre-parsed,
  pre-relocated table of (address, name) built from the ``nm`` output (tuples, no objects), and
  ``symbols.user.resolve_many``: the same addresses in one ``ProcessSymbols.resolve_many`` call;
- ``symbols.kernel.parse``: ``KernelSymbols()`` against a straightforward line-by-line parse of
  ``/proc/kallsyms`` into a sorted table;
- ``symbols.kernel.resolve``: 100,000 kernel text addresses, ``KernelSymbols.resolve`` against a
  plain ``bisect`` over the pre-parsed table.

Every resolution is cross-checked: ours and the reference must agree on the function name for
(nearly) every address.  Prints one JSON line per figure with ``speed_vs_ref`` (the reference's
time divided by ours: above 1 is faster than the reference).  Best of ``--rounds``.
Run as root: ``python3 packages/ebpf-events/bench/bench_symbols.py``.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

N_ADDRESSES = 100_000
CHILD = """
import ctypes, ctypes.util, glob, importlib, os, sys, sysconfig
def files():
    with open("/proc/self/maps") as fh:
        return {l.split(None, 5)[5].strip() for l in fh if len(l.split()) == 6 and "x" in l.split()[1] and "/" in l}
dyn = sysconfig.get_config_var("DESTSHARED") or ""
for path in sorted(glob.glob(os.path.join(dyn, "*.so"))):
    if len(files()) >= 50:
        break
    try:
        importlib.import_module(os.path.basename(path).split(".")[0])
    except Exception:
        pass
# then common system libraries until about fifty files are mapped
for name in ("z", "bz2", "lzma", "zstd", "lz4", "expat", "ffi", "crypto", "ssl", "sqlite3", "uuid", "gmp", "pcre2-8",
             "xml2", "curl", "selinux", "cap", "acl", "attr", "udev", "dbus-1", "glib-2.0", "gobject-2.0", "gio-2.0",
             "png16", "jpeg", "freetype", "fontconfig", "harfbuzz", "krb5", "gssapi_krb5", "ldap", "sasl2", "idn2",
             "unistring", "nettle", "hogweed", "gnutls", "tasn1", "p11-kit", "psl", "brotlidec", "ssh2", "rtmp"):
    if len(files()) >= 50:
        break
    found = ctypes.util.find_library(name)
    if found:
        try:
            ctypes.CDLL(found)
        except OSError:
            pass
print("ready", flush=True)
sys.stdin.read()
"""

def emit(**fields: Any) -> None:
    """Print one JSON line."""
    print(json.dumps(fields), flush=True)


def best(rounds: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The best wall time of ``rounds`` calls, and the last result."""
    times, result = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def executable_files(pid: int) -> list[tuple[int, int, int, str]]:
    """(start, end, file offset, path) of the process's file-backed executable mappings."""
    out = []
    with open(f"/proc/{pid}/maps") as fh:
        for line in fh:
            parts = line.split(None, 5)
            if len(parts) == 6 and "x" in parts[1] and parts[5].startswith("/"):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((lo, hi, int(parts[2], 16), parts[5].strip()))
    return out


def nm_table(path: str) -> list[tuple[int, int, str]]:
    """Function symbols of ``path`` through ``nm``: (address, size, name), sorted."""
    rows: dict[int, tuple[int, str]] = {}
    for extra in ([], ["-D"]):
        proc = subprocess.run(["nm", "--defined-only", "-S", *extra, path], capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[2] in "tTiW":
                addr, size = int(parts[0], 16), int(parts[1], 16)
                rows.setdefault(addr, (size, parts[3]))
    return sorted((a, s, n) for a, (s, n) in rows.items())


def nm_parse(files: list[tuple[int, int, int, str]]) -> dict[str, list[tuple[int, int, str]]]:
    """The nm reference of the parse cost: one table per distinct file."""
    return {path: nm_table(path) for path in {f[3] for f in files}}


def user_addresses(files: list[tuple[int, int, int, str]], tables: dict[str, list[tuple[int, int, str]]],
                   rng: random.Random) -> tuple[list[int], list[int], list[str]]:
    """100,000 run-time addresses inside sized functions, plus the reference's flat sorted table."""
    from ebpf.events._elfsyms import ElfImage

    flat: list[tuple[int, int, str]] = []
    candidates: list[tuple[int, int]] = []
    for start, end, offset, path in files:
        with ElfImage.from_path(path) as image:
            vaddr = image.file_offset_to_vaddr(offset)
        if vaddr is None:
            continue
        bias = start - vaddr
        for addr, size, name in tables[path]:
            run = addr + bias
            if start <= run < end and size:
                flat.append((run, size, name))
                candidates.append((run, size))
    flat.sort()
    picks = [rng.choice(candidates) for _ in range(N_ADDRESSES)]
    addresses = [a + rng.randrange(s) for a, s in picks]
    return addresses, [f[0] for f in flat], [f[2] for f in flat]


def bench_user(rounds: int, rng: random.Random) -> None:
    from ebpf.events import symbols

    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout and child.stdout.readline().strip() == "ready"
        files = executable_files(child.pid)
        distinct = len({f[3] for f in files})

        def ours_parse() -> Any:
            symbols.drop_file_cache()
            return symbols.ProcessSymbols(child.pid)

        t_ours, procsyms = best(rounds, ours_parse)
        t_nm, tables = best(rounds, lambda: nm_parse(files))
        emit(bench="symbols.user.parse", files=distinct, seconds=round(t_ours, 4), ref="nm", ref_seconds=round(t_nm, 4),
             speed_vs_ref=round(t_nm / t_ours, 2), python=platform.python_version())

        addresses, ref_addrs, ref_names = user_addresses(files, tables, rng)

        def ours_resolve() -> list[Any]:
            resolve = procsyms.resolve
            return [resolve(a) for a in addresses]

        def ref_resolve() -> list[Any]:
            out = []
            for a in addresses:
                i = bisect.bisect_right(ref_addrs, a) - 1
                out.append((ref_names[i], a - ref_addrs[i]) if i >= 0 else None)
            return out

        t_res, ours = best(rounds, ours_resolve)
        t_many, many = best(rounds, lambda: procsyms.resolve_many(addresses))
        t_ref, ref = best(rounds, ref_resolve)
        for name, t, got in (("symbols.user.resolve", t_res, ours), ("symbols.user.resolve_many", t_many, many)):
            agree = sum(1 for o, r in zip(got, ref) if o is not None and r is not None and o.offset == r[1])
            emit(bench=name, addresses=len(addresses), files=distinct,
                 per_address_us=round(1e6 * t / len(addresses), 3), ref="bisect over a pre-parsed table",
                 ref_per_address_us=round(1e6 * t_ref / len(addresses), 3), speed_vs_ref=round(t_ref / t, 2),
                 agree=round(agree / len(addresses), 4), python=platform.python_version())
    finally:
        child.kill()
        child.wait()


def kallsyms_reference() -> tuple[list[int], list[str]]:
    """A straightforward parse: every line split, text symbols kept, sorted."""
    rows = []
    with open("/proc/kallsyms") as fh:
        for line in fh:
            parts = line.split()
            if parts[1] in ("t", "T", "w", "W"):
                rows.append((int(parts[0], 16), parts[2]))
    rows.sort()
    return [r[0] for r in rows], [r[1] for r in rows]


def bench_kernel(rounds: int, rng: random.Random) -> None:
    from ebpf.events.symbols import KernelSymbols

    t_ours, kernel = best(rounds, KernelSymbols)
    if kernel.reason:
        emit(bench="symbols.kernel", skipped=kernel.reason)
        return
    t_ref, (ref_addrs, ref_names) = best(rounds, kallsyms_reference)
    emit(bench="symbols.kernel.parse", symbols=len(kernel), seconds=round(t_ours, 4), ref="line-by-line parse",
         ref_seconds=round(t_ref, 4), speed_vs_ref=round(t_ref / t_ours, 2), python=platform.python_version())
    starts = [i for i in range(len(ref_addrs) - 1) if ref_addrs[i + 1] > ref_addrs[i]]
    picks = [rng.choice(starts) for _ in range(N_ADDRESSES)]
    addresses = [ref_addrs[i] + rng.randrange(ref_addrs[i + 1] - ref_addrs[i]) for i in picks]

    def ours_resolve() -> list[Any]:
        resolve = kernel.resolve
        return [resolve(a) for a in addresses]

    def ref_resolve() -> list[Any]:
        out = []
        for a in addresses:
            i = bisect.bisect_right(ref_addrs, a) - 1
            out.append((ref_names[i], a - ref_addrs[i]))
        return out

    t_res, ours = best(rounds, ours_resolve)
    t_ref2, ref = best(rounds, ref_resolve)
    agree = sum(1 for o, r in zip(ours, ref) if o is not None and o.offset == r[1])
    emit(bench="symbols.kernel.resolve", addresses=len(addresses), per_address_us=round(1e6 * t_res / len(addresses), 3),
         ref="bisect over a pre-parsed table", ref_per_address_us=round(1e6 * t_ref2 / len(addresses), 3),
         speed_vs_ref=round(t_ref2 / t_res, 2), agree=round(agree / len(addresses), 4),
         python=platform.python_version())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("nm"):
        emit(bench="symbols", skipped="needs root (other processes' maps, kallsyms) and binutils' nm")
        return 0
    rng = random.Random(20)
    bench_user(args.rounds, rng)
    bench_kernel(args.rounds, rng)
    return 0


if __name__ == "__main__":
    sys.exit(main())
