"""ebpf-security: a plugin package for ebpf-core (skeleton: its capability issue has not landed yet).

It registers with ebpf-core through the ``ebpf`` entry-point group (``ebpf.security.plugin``),
exactly as a third-party plugin would.
"""

__all__: list[str] = []
