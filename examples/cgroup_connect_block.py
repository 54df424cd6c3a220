"""Block connect() for the processes of one cgroup with a cgroup/connect4 program.

    sudo python3 examples/cgroup_connect_block.py

A child cgroup gets a program that refuses every IPv4 connect (return 0 = EPERM); a child
process placed in it cannot connect to a local listener, this process (outside) can.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

from ebpf.core import asm
from ebpf.core.asm import R0
from ebpf.net.cgroup import attach_cgroup_program, cgroup_root, create_cgroup, load_cgroup_sock_addr_program

CHILD = """
import os, socket, sys
open(sys.argv[1], "w").write(str(os.getpid()))      # move into the cgroup
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=2)
    print("child in the cgroup: connected")
except OSError as exc:
    print(f"child in the cgroup: connect() failed: {exc.strerror}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=0.0, help="extra seconds to keep the program attached")
    args = parser.parse_args()

    path = create_cgroup(os.path.join(cgroup_root(), f"ebpf-example-{os.getpid()}"))
    try:
        with socket.socket() as listener, \
                load_cgroup_sock_addr_program([asm.mov64(R0, 0), asm.exit_insn()], "connect4",
                                              name="no_connect") as prog, \
                attach_cgroup_program(path, prog):   # a cgroup BPF link
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            port = listener.getsockname()[1]
            child = subprocess.run([sys.executable, "-c", CHILD, os.path.join(path, "cgroup.procs"), str(port)],
                                   capture_output=True, text=True, timeout=30)
            print(child.stdout.strip())
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                print("this process (outside the cgroup): connected")
            time.sleep(args.duration)
    finally:
        for _ in range(40):  # the child's exit takes a moment to leave the cgroup
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.05)


if __name__ == "__main__":
    main()
