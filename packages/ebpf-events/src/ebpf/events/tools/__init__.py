"""The tools behind ``ebpf trace ...`` and ``ebpf list ...`` (one module per tool)."""
