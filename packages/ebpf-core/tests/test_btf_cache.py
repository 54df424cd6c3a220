"""The on-disk cache of the kernel BTF's record index: same answers, keyed by the blob, never stale."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ebpf.core.btf import Spec, load_vmlinux
from ebpf.core.btf.cache import cache_dir, use_index_cache
from ebpf.core.btf.records import build_index
from ebpf.core.testing import require

NAMES = ["task_struct", "file", "pid", "trace_event_raw_sys_enter", "bpf_rcu_read_lock", "no_such_name_xyz"]


@pytest.fixture
def blob() -> bytes:
    require(load_vmlinux)
    return load_vmlinux().data


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EBPF_CACHE_DIR", str(tmp_path))
    return tmp_path


def _answers(spec: Spec) -> list[list[int]]:
    return [spec.find_ids(n) for n in NAMES]


def test_the_cached_index_gives_the_same_answers(blob: bytes, cache: Path) -> None:
    reference = Spec(blob, name="vmlinux")
    expected = _answers(reference)
    use_index_cache(Spec(blob, name="vmlinux"))  # builds and writes
    files = list(cache.glob("btf-index-*.bin"))
    assert len(files) == 1
    fresh = Spec(blob, name="vmlinux")
    use_index_cache(fresh)  # reads
    assert fresh._index is not None and list(fresh._index) == list(build_index(fresh._hdr.words, 0))
    assert _answers(fresh) == expected
    assert fresh.find("task_struct") == reference.find("task_struct")


def test_another_blob_has_another_file(blob: bytes, cache: Path) -> None:
    use_index_cache(Spec(blob, name="vmlinux"))
    changed = bytearray(blob)
    changed[-2] ^= 0x01  # a different string section byte: another kernel as far as the cache knows
    use_index_cache(Spec(bytes(changed), name="vmlinux"))
    assert len(list(cache.glob("btf-index-*.bin"))) == 2


def test_a_damaged_file_is_ignored_and_rewritten(blob: bytes, cache: Path) -> None:
    expected = _answers(Spec(blob, name="vmlinux"))
    use_index_cache(Spec(blob, name="vmlinux"))
    (path,) = cache.glob("btf-index-*.bin")
    data = bytearray(path.read_bytes())
    data[16:20] = (12345).to_bytes(4, "little")  # the first record's offset: inconsistent
    path.write_bytes(bytes(data))
    spec = Spec(blob, name="vmlinux")
    use_index_cache(spec)
    assert _answers(spec) == expected
    assert path.read_bytes()[16:20] == bytes(4)  # rewritten
    path.write_bytes(b"EBPF")  # truncated
    spec = Spec(blob, name="vmlinux")
    use_index_cache(spec)
    assert _answers(spec) == expected


def test_the_cache_can_be_turned_off_and_an_unwritable_directory_is_no_error(
        blob: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EBPF_CACHE_DIR", "")
    assert cache_dir() is None
    use_index_cache(Spec(blob, name="vmlinux"))
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("EBPF_CACHE_DIR", str(blocker / "sub"))
    spec = Spec(blob, name="vmlinux")
    use_index_cache(spec)
    assert spec.find_ids("task_struct") and not os.path.exists(blocker / "sub")


def test_the_running_kernels_btf_is_named_by_its_boot_not_hashed(
        blob: bytes, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ebpf.core.btf import load
    from ebpf.core.btf.cache import kernel_btf_identity

    identity = kernel_btf_identity()
    assert identity is not None and os.uname().release.encode() in identity
    assert kernel_btf_identity() == identity  # stable for the boot
    expected = _answers(Spec(blob, name="vmlinux"))
    monkeypatch.setattr(load, "_vmlinux", None)  # as in a fresh process
    load.load_vmlinux()
    (written,) = cache.glob("btf-index-k*.bin")  # named by the identity: no sha256 of 5 MB
    monkeypatch.setattr(load, "_vmlinux", None)
    fresh = load.load_vmlinux()
    assert fresh._index is not None and _answers(fresh) == expected
    other = Spec(blob, name="vmlinux")
    use_index_cache(other, b"another boot")  # another identity: another file, never this one's index
    assert len(list(cache.glob("btf-index-k*.bin"))) == 2 and written.exists()
    assert _answers(other) == expected
