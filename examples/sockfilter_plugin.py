"""Use a third-party attach plugin: ebpf-sockfilter-example attaches SOCKET_FILTER programs to
Python sockets (tests/plugins/ebpf-sockfilter-example in this repository).

    pip install tests/plugins/ebpf-sockfilter-example
    sudo python3 examples/sockfilter_plugin.py

Installed, the plugin is found through its entry point (group "ebpf"); this example also
registers it at run time when it is importable but not installed, which is how a plugin
is tried out before packaging it.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

from ebpf.core import asm, plugins
from ebpf.core.asm import R0
from ebpf.core.programs import load_program
from ebpf.core.types import ProgType


def send_and_count(rx: socket.socket, count: int) -> int:
    """Send ``count`` datagrams to ``rx`` over loopback; returns how many arrived."""
    got = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for _ in range(count):
            tx.sendto(b"ping", rx.getsockname())
        try:
            while got < count:
                rx.recv(64)
                got += 1
        except OSError:
            pass
    return got


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=0.0, help="extra seconds to keep the filter")
    args = parser.parse_args()
    try:
        import ebpf_sockfilter_example  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        print("the plugin is not installed: pip install tests/plugins/ebpf-sockfilter-example")
        return 0
    if not any(b.name == ebpf_sockfilter_example.NAME for b in plugins.attach_backends()):
        plugins.register(ebpf_sockfilter_example, name="sockfilter-example")  # not installed: register by hand
    for name, dist in plugins.registered_plugins():
        print(f"plugin {name:<20} {dist or '(registered in code)'}")

    # A socket filter returns how many bytes of each packet to keep: 0 drops it.
    with load_program(prog_type="socket_filter", insns=[asm.mov64(R0, 0), asm.exit_insn()],
                      name="drop_all") as prog, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(0.2)
        print(f"without the filter: {send_and_count(rx, 5)}/5 datagrams arrived")
        link = ebpf_sockfilter_example.attach_socket_filter(prog, rx)  # the plugin's attach function
        with link:
            print(f"with the filter ({link.description}): {send_and_count(rx, 5)}/5 arrived")
            time.sleep(args.duration)
        print(f"after detach: {send_and_count(rx, 5)}/5 arrived")
        # Program.attach dispatches through the plugins too: the first backend (in this order)
        # that serves socket filters and accepts the target attaches it.
        serving = [f"{b.name} ({b.distribution or 'registered in code'})" for b in plugins.attach_backends()
                   if any(p == ProgType.SOCKET_FILTER for p, _ in b.serves)]
        print(f"backends for socket_filter programs, in dispatch order: {', '.join(serving)}")
        with prog.attach(rx):
            print(f"through prog.attach(sock): {send_and_count(rx, 5)}/5 arrived")
    return 0


if __name__ == "__main__":
    sys.exit(main())
