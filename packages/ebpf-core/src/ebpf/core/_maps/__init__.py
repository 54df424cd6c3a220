"""Private implementation of :mod:`ebpf.core.maps` (fast paths, batches, kinds, creation)."""

# Loaded with the package so that Map.from_fd & co. always find the kinds (create installs its wrapper
# into base, which must not import create: create imports base).
from ebpf.core._maps import create as _create
