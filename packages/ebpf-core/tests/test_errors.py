"""The one error hierarchy: what each class is, and what its message tells a person."""

from __future__ import annotations

import errno
import pickle

import ebpf.core as bpf
import pytest
from ebpf.core import errors
from ebpf.core.errors import (
    BPFSyscallError,
    EBPFError,
    KeyNotFoundError,
    MapFullError,
    NotSupportedError,
    UnsupportedFeatureError,
    VerifierError,
    syscall_error,
)


def test_every_public_error_derives_from_the_base() -> None:
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, EBPFError), name


def test_syscall_errors_are_oserrors_with_errno_command_and_hint() -> None:
    exc = syscall_error(errno.EPERM, "BPF_PROG_LOAD")
    assert isinstance(exc, OSError) and exc.errno == errno.EPERM
    assert exc.command == "BPF_PROG_LOAD"
    assert "CAP_BPF" in str(exc) and str(exc).startswith("BPF_PROG_LOAD: ")
    assert pickle.loads(pickle.dumps(exc)).errno == errno.EPERM


def test_key_not_found_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        raise KeyNotFoundError(7)
    assert "7" in str(KeyNotFoundError(7)) and KeyNotFoundError(7).errno == errno.ENOENT


def test_map_full_names_the_size() -> None:
    exc = MapFullError(max_entries=16)
    assert isinstance(exc, BPFSyscallError) and exc.errno == errno.E2BIG and "max_entries=16" in str(exc)


def test_verifier_error_keeps_the_whole_log_and_shows_its_tail() -> None:
    log = "\n".join(f"line {i}" for i in range(500))
    exc = VerifierError(errno.EACCES, "BPF_PROG_LOAD", log, name="prog")
    assert exc.log == log
    text = str(exc)
    assert "line 499" in text and "line 0\n" not in text and "last 20 of 500 lines" in text


def test_unsupported_feature_text_fits_the_running_kernel() -> None:
    exc = UnsupportedFeatureError("warp drive", "99.1", "no such thing")
    assert isinstance(exc, NotSupportedError) and exc.feature == "warp drive" and exc.min_kernel == "99.1"
    assert "requires Linux >= 99.1" in str(exc) and "no such thing" in str(exc)
    old = str(UnsupportedFeatureError("ring buffers", "5.8"))  # every kernel this suite runs on is newer
    assert "in Linux since 5.8, but not in this kernel's build" in old


@pytest.mark.privileged
def test_map_create_size_errors_name_the_sizes_and_are_not_map_full() -> None:
    # E2BIG from BPF_MAP_CREATE is a size limit (hash values over KMALLOC_MAX_SIZE), not a full map.
    with pytest.raises(BPFSyscallError) as too_big:
        bpf.create_map(map_type="hash", key_size=4, value_size=1 << 26, max_entries=4)
    assert not isinstance(too_big.value, MapFullError)
    assert too_big.value.errno == errno.E2BIG and "67108864-byte value" in str(too_big.value)
    with pytest.raises(BPFSyscallError) as no_mem:
        bpf.create_map(map_type="array", key_size=4, value_size=1 << 20, max_entries=1 << 31)
    assert no_mem.value.errno == errno.ENOMEM
    assert "2147483648 entries" in str(no_mem.value) and "TiB" in str(no_mem.value)
