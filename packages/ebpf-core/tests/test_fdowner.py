"""One contract for every owner of kernel objects: fd, closed, close(), with, and a ResourceWarning
(with the fd closed) when one is collected while still open -- Map, Program, BPFLink, Collection."""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Callable, Iterator

import pytest
from ebpf.core.collection import Collection, CollectionSpec
from ebpf.core.errors import EBPFError
from ebpf.core.fdowner import FdOwner, ResourceOwner
from ebpf.core.links import BPFLink, attach_raw_tracepoint
from ebpf.core.maps import Map, MapSpec, create_map
from ebpf.core.programs import Program, ProgramSpec, load_program

pytestmark = pytest.mark.privileged

RET0 = b"\xb7\x00\x00\x00\x00\x00\x00\x00\x95\x00\x00\x00\x00\x00\x00\x00"


def _map() -> Map:
    return create_map(MapSpec("array", 4, 4, 1, name="fdowner_test"))


def _prog() -> Program:
    return load_program(prog_type="socket_filter", insns=RET0, name="fdowner_test")


_RAW_TP: list[Program] = []  # one program for every link of this module, closed at its end


@pytest.fixture(autouse=True, scope="module")
def _close_raw_tp() -> Iterator[None]:
    yield
    for prog in _RAW_TP:
        prog.close()


def _link() -> BPFLink:
    if not _RAW_TP:
        _RAW_TP.append(load_program(prog_type="raw_tracepoint", insns=RET0, name="fdowner_link"))
    return attach_raw_tracepoint(_RAW_TP[0], "sched_switch")


def _collection() -> Collection:
    spec = CollectionSpec(maps={"m": MapSpec("array", 4, 4, 1, name="fdowner_cmap")},
                          programs={"p": ProgramSpec(prog_type="socket_filter", insns=RET0, name="fdowner_cprog")})
    return spec.load()


MAKERS: dict[str, Callable[[], ResourceOwner]] = {"map": _map, "program": _prog, "link": _link,
                                                  "collection": _collection}


def _fds(owner: ResourceOwner) -> list[int]:
    if isinstance(owner, Collection):
        return [owner.maps["m"].fd, owner.programs["p"].fd]
    assert isinstance(owner, FdOwner)
    return [owner.fd]


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.mark.parametrize("kind", MAKERS)
def test_close_and_with_release_without_a_warning(kind: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        owner = MAKERS[kind]()
        assert isinstance(owner, ResourceOwner) and not owner.closed
        fds = _fds(owner)
        owner.close()
        owner.close()  # idempotent
        assert owner.closed and not any(_is_open(fd) for fd in fds)
        with MAKERS[kind]() as again:
            fds = _fds(again)
        assert again.closed and not any(_is_open(fd) for fd in fds)
        del owner, again
        gc.collect()


@pytest.mark.parametrize("kind", ["map", "program", "link"])
def test_a_closed_owner_says_so(kind: str) -> None:
    owner = MAKERS[kind]()
    owner.close()
    assert isinstance(owner, FdOwner)
    with pytest.raises(EBPFError, match=f"{kind} .* is closed"):
        owner.fd  # noqa: B018


@pytest.mark.parametrize("kind", MAKERS)
def test_collected_while_open_warns_and_closes_the_fds(kind: str) -> None:
    owner = MAKERS[kind]()
    fds = _fds(owner)
    name = type(owner).__name__
    with pytest.warns(ResourceWarning, match=f"unclosed {name}"):
        del owner
        gc.collect()
    assert not any(_is_open(fd) for fd in fds)
