"""Private implementation of :mod:`ebpf.core.maps` (fast paths, batches, kinds, creation)."""
