"""Refuse IPv4 connect() to chosen ports for the processes of one cgroup, written in Python.

    sudo python3 examples/lang/cgroup_connect_block.py

``blocked`` maps a port to the number of connects refused; user space fills it with the
ports to block.  A child process in the cgroup cannot connect to a blocked local listener.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from ebpf.lang import HashMap, bpf, kernel, u16, u32, u64
from ebpf.lang import ctx_types as ct

blocked = HashMap(u32, u64, max_entries=64)


@kernel("cgroup/connect4")
def block_connect(ctx: ct.bpf_sock_addr) -> int:
    port = bpf.ntohs(u16(ctx.user_port))
    refused = blocked.lookup(port)
    if refused is None:
        return 1
    refused[0] += 1    # one atomic add: map values are shared by every CPU
    return 0           # refused: connect() fails with EPERM


CHILD = """
import socket, sys
for port in sys.argv[1:]:
    try:
        socket.create_connection(("127.0.0.1", int(port)), timeout=2).close()
        print(port, "connected")
    except OSError as exc:
        print(port, "refused", exc.errno)
"""


def run_in_cgroup(cgroup: str, ports: list[int]) -> str:
    """Run a child inside ``cgroup`` that connects to each port; returns its report."""
    code = f"open({os.path.join(cgroup, 'cgroup.procs')!r}, 'w').write(str(__import__('os').getpid()))\n" + CHILD
    return subprocess.run([sys.executable, "-c", code, *map(str, ports)], capture_output=True, text=True,
                          timeout=30, check=True).stdout


def main() -> None:
    from ebpf.lang import load
    from ebpf.net.cgroup import attach_cgroup_program, cgroup_root, create_cgroup

    path = create_cgroup(os.path.join(cgroup_root(), f"ebpf-example-{os.getpid()}"))
    try:
        with load(sys.modules[__name__]) as coll, socket.socket() as a, socket.socket() as b:
            for s in (a, b):
                s.bind(("127.0.0.1", 0))
                s.listen(4)
            pa, pb = a.getsockname()[1], b.getsockname()[1]
            coll.maps["blocked"][pa] = 0
            with attach_cgroup_program(path, coll.programs["block_connect"]):
                print(run_in_cgroup(path, [pa, pb]), end="")
            print(f"refused connects to {pa}: {coll.maps['blocked'][pa]}")
    finally:
        for _ in range(40):
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.05)


if __name__ == "__main__":
    main()
