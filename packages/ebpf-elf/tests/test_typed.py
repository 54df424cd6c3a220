"""Map keys and values decoded from the object's BTF (ebpf.elf.typed), the default for ELF maps."""

from __future__ import annotations

import struct

import pytest
from ebpf import elf
from ebpf.core.errors import EBPFError
from ebpf.elf.typed import BTFCodec, Record

pytestmark = pytest.mark.privileged

TYPED_SRC = r"""
#include <bpf/bpf_helpers.h>
enum color { RED = 1, GREEN = 2, BLUE = 7 };
struct flow_key {
	__u32 saddr;
	__u16 port;
	__u8 proto;
	__u8 flags: 3, urgent: 1, reserved: 4;
};
struct stats {
	__u64 packets;
	union { __u64 bytes; __u32 halves[2]; };
	enum color color;
	char label[8];
	__s16 delta[3];
	struct { __u32 lo, hi; } range;
};
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, struct flow_key);
	__type(value, struct stats);
} flows SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, enum color);
} colors SEC(".maps");
SEC("socket") int s(void *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def typed_obj(tmp_path_factory: pytest.TempPathFactory) -> str:
    return elf.compile_c(TYPED_SRC, tmp_path_factory.mktemp("typed") / "typed.o", compiler="zig")


def test_struct_keys_and_values_round_trip(typed_obj):
    with elf.load_elf(typed_obj) as coll:
        flows = coll.maps["flows"]
        key = {"saddr": 0x0100007F, "port": 443, "proto": 6, "flags": 5, "urgent": 1}
        flows[key] = {"packets": 3, "bytes": 1 << 33, "color": "BLUE", "label": "web",
                      "delta": [-1, 2], "range": {"lo": 10, "hi": 20}}
        (k, v), = flows.items()
        assert isinstance(k, Record) and isinstance(v, Record)
        assert (k.saddr, k.port, k.proto, k.flags, k.urgent, k.reserved) == (0x0100007F, 443, 6, 5, 1, 0)
        assert v.packets == 3 and v.bytes == 1 << 33 and v.halves == [0, 2]  # the anonymous union, flattened
        assert v.color == 7 and v.label == "web" and v.delta == [-1, 2, 0]
        assert v.range.lo == 10 and v.range.hi == 20 and v.range == {"lo": 10, "hi": 20}
        assert flows[k] == v  # a decoded key is a key
        raw_key = flows.key_codec.encode(k)
        assert len(raw_key) == flows.key_size and flows[raw_key] == v  # raw bytes of the key size too
        raw = flows.lookup_bytes(raw_key)
        assert struct.unpack_from("<Q", raw)[0] == 3  # raw bytes one call away
        v.packets = 4
        flows[k] = v
        assert flows[k].packets == 4
        assert "struct stats(packets=4" in repr(flows[k])


def test_bad_typed_values_are_refused(typed_obj):
    with elf.load_elf(typed_obj) as coll:
        flows = coll.maps["flows"]
        with pytest.raises(EBPFError, match="no member"):
            flows[{"saddr": 1, "nope": 2}] = {}
        with pytest.raises(EBPFError, match="at most 8"):
            flows[{"saddr": 1}] = {"label": "much too long"}
        with pytest.raises(EBPFError, match="not a value of enum"):
            flows[{"saddr": 1}] = {"color": "PURPLE"}
        with pytest.raises(AttributeError, match="no member"):
            Record("struct x", {"a": 1}).b  # noqa: B018


def test_enum_names_on_request_and_raw_bytes_as_an_option(typed_obj):
    with elf.load_elf(typed_obj, enums="names") as coll:
        coll.maps["colors"][0] = "GREEN"
        assert coll.maps["colors"][0] == "GREEN" and coll.maps["colors"][1] == 0  # no enumerator 0
    with elf.load_elf(typed_obj) as coll:
        coll.maps["colors"][0] = 7
        assert coll.maps["colors"][0] == 7
    with elf.load_elf(typed_obj, typed=False) as coll:  # the core's defaults: ints of 4 and 8 bytes, else bytes
        flows = coll.maps["flows"]
        flows[0] = bytes(flows.value_size)
        assert flows[0] == bytes(flows.value_size)


def test_tool_maps_decode(obj):
    with elf.load_elf(obj("lt_runqlat")) as coll:
        hists = coll.maps["hists"]
        hists[0] = {"slots": [1, 2, 3], "comm": "python"}
        h = hists[0]
        assert h.slots[:4] == [1, 2, 3, 0] and len(h.slots) == 26 and h.comm == "python"
        assert isinstance(hists.value_codec, BTFCodec) and coll.maps["start"].lookup(5) is None
    with elf.load_elf(obj("lt_syscount")) as coll:
        coll.maps["data"][3] = {"count": 2, "total_ns": 100}
        assert dict(coll.maps["data"].items()) == {3: {"count": 2, "total_ns": 100}}
