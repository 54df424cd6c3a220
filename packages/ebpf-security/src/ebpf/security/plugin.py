"""ebpf-security's pluggy hook implementations (none yet: the package is a skeleton)."""
