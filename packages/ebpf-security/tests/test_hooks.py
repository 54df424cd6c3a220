"""LSM hooks read from BTF: the running kernel's (it works on this host even though loads fail) and
small BTF blobs built here to show each rule (the table of hooks, the fallback, no hooks at all)."""

from __future__ import annotations

import pytest
from ebpf.core.btf import Builder, IntEncoding, Spec, load_vmlinux
from ebpf.core.btf.types import Func, FuncProto
from ebpf.core.errors import EBPFError, UnsupportedFeatureError
from ebpf.security import hooks as hk
from ebpf.security import lsm
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st


def test_every_hook_is_a_bpf_lsm_function_of_the_running_kernel() -> None:
    spec = load_vmlinux()
    hooks = lsm.list_lsm_hooks()
    assert len(hooks) > 100  # every kernel since 5.7 has well over a hundred hooks
    assert [h.name for h in hooks] == sorted(h.name for h in hooks)
    for h in hooks:
        func = spec.type_by_id(h.btf_id)
        assert isinstance(func, Func) and func.name == f"bpf_lsm_{h.name}" == h.function
        proto = spec.type_by_id(func.type_id)
        assert isinstance(proto, FuncProto) and len(proto.params) == len(h.args)
        assert h.can_deny == (proto.type_id != 0) == (h.return_type != "void")
        assert h.category in lsm.CATEGORIES


def test_the_kernels_helpers_named_bpf_lsm_are_not_hooks() -> None:
    names = {h.name for h in lsm.list_lsm_hooks()}
    strings = load_vmlinux().strings
    for helper in ("verify_prog", "is_sleepable_hook", "find_cgroup_shim", "get_retval_range", "is_trusted"):
        if b"\0bpf_lsm_" + helper.encode() + b"\0" in strings:  # helpers come and go between versions
            assert helper not in names
    assert "file_open" in names and "bprm_check_security" in names


def test_hook_arguments_and_return_type_come_from_the_prototype() -> None:
    file_open = lsm.find_lsm_hook("file_open")
    assert file_open.args == (("file", "struct file *"),)
    assert file_open.return_type == "int" and file_open.can_deny
    assert file_open.signature() == "int file_open(struct file *file)"
    bprm = lsm.find_lsm_hook("bpf_lsm_bprm_check_security")
    assert bprm.args == (("bprm", "struct linux_binprm *"),) and bprm.category == "process"
    mount = lsm.find_lsm_hook("lsm/sb_mount")
    assert [name for name, _ in mount.args] == ["dev_name", "path", "type", "flags", "data"]
    assert mount.args[0][1] == "const char *" and mount.args[1][1] == "const struct path *"


def test_void_hooks_cannot_deny() -> None:
    void = [h for h in lsm.list_lsm_hooks() if h.return_type == "void"]
    assert void and not any(h.can_deny for h in void)
    assert "file_free_security" in {h.name for h in void}


@pytest.mark.parametrize(("hook", "category"), [
    ("file_open", "file-system"), ("inode_unlink", "file-system"), ("path_mkdir", "file-system"),
    ("sb_statfs", "file-system"), ("task_kill", "process"), ("bprm_check_security", "process"),
    ("bprm_committing_creds", "process"), ("socket_connect", "network"), ("sk_alloc_security", "network"),
    ("inet_conn_request", "network"), ("tun_dev_create", "network"), ("xfrm_policy_lookup", "network"),
    ("cred_prepare", "credentials"), ("capable", "credentials"), ("task_fix_setuid", "credentials"),
    ("sb_mount", "mount"), ("sb_umount", "mount"), ("move_mount", "mount"), ("sb_pivotroot", "mount"),
    ("key_alloc", "other"), ("bpf_map_create", "other"),
])
def test_categories_follow_the_name_rules(hook: str, category: str) -> None:
    assert hk._category(hook) == category
    if hook in {h.name for h in lsm.list_lsm_hooks()}:  # hooks are added and renamed between versions
        assert lsm.get_hook_category(hook) == category


def test_list_hooks_by_category_partitions_the_hooks() -> None:
    every = lsm.list_lsm_hooks()
    parts = {c: lsm.list_hooks_by_category(c) for c in lsm.CATEGORIES}
    assert sum(len(p) for p in parts.values()) == len(every)
    assert all(h.category == c for c, p in parts.items() for h in p)
    assert {h.name for h in parts["mount"]} >= {"sb_mount", "sb_umount"}
    assert lsm.list_lsm_hooks("network") == parts["network"]


def test_unknown_category_is_refused() -> None:
    with pytest.raises(EBPFError, match="unknown LSM hook category 'files'; choose one of file-system"):
        lsm.list_hooks_by_category("files")


def test_unknown_hook_suggests_close_names() -> None:
    with pytest.raises(EBPFError, match=r"unknown LSM hook 'file_opn'.*did you mean file_open"):
        lsm.find_lsm_hook("file_opn")
    with pytest.raises(EBPFError, match="did you mean bprm_check_security"):
        lsm.get_hook_category("bprm_check_securty")
    with pytest.raises(EBPFError, match=r"unknown LSM hook 'zzzz'.*ebpf lsm hooks"):
        lsm.find_lsm_hook("zzzz")


@pytest.mark.parametrize("bad", ["", "lsm/", "file open", 7, None])
def test_bad_hook_names_are_refused(bad: object) -> None:
    with pytest.raises(EBPFError, match="hook"):
        lsm.find_lsm_hook(bad)


# -- BTF built here ---------------------------------------------------------------------------------------


def _kernel_like_btf(table: str | None, names: list[str], void: tuple[str, ...] = ()) -> Spec:
    """A BTF blob with ``bpf_lsm_<name>(struct file *file)`` functions (``void`` ones return void) and,
    unless ``table`` is None, a hooks table struct listing all names but the helper ``verify_prog``."""
    b = Builder()
    i = b.add_int("int", 4, IntEncoding.SIGNED)
    file_ptr = b.add_pointer(b.add_struct("file", []))
    for name in names:
        proto = b.add_func_proto(0 if name in void else i, [("file", file_ptr)])
        b.add_func(f"bpf_lsm_{name}", proto)
    if table is not None:
        b.add_struct(table, [(n, i) for n in names if n != "verify_prog"])
    return Spec(b.encode(), name="test")


@pytest.mark.parametrize("table", ["lsm_static_calls_table", "security_hook_heads"])
def test_the_kernels_table_of_hooks_decides(table: str) -> None:
    spec = _kernel_like_btf(table, ["file_open", "verify_prog", "file_free_security", "task_kill"],
                            void=("file_free_security",))
    hooks = lsm.list_lsm_hooks(btf=spec)
    assert [h.name for h in hooks] == ["file_free_security", "file_open", "task_kill"]
    assert [h.can_deny for h in hooks] == [False, True, True]
    assert hooks[1].args == (("file", "struct file *"),) and hooks[1].category == "file-system"
    assert lsm.get_hook_category("task_kill", btf=spec) == "process"


def test_without_a_table_the_known_helpers_are_left_out() -> None:
    spec = _kernel_like_btf(None, ["file_open", "verify_prog", "is_sleepable_hook"])
    assert [h.name for h in lsm.list_lsm_hooks(btf=spec)] == ["file_open"]


def test_btf_without_lsm_hooks_means_no_bpf_lsm() -> None:
    b = Builder()
    b.add_int("int", 4)
    with pytest.raises(UnsupportedFeatureError, match="CONFIG_BPF_LSM"):
        lsm.list_lsm_hooks(btf=Spec(b.encode(), name="nolsm"))


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # slow under the VM's emulation
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=40))
def test_every_name_gets_one_category_and_one_spelling(name: str) -> None:
    assume(not name.startswith("bpf_lsm_") and not name[0].isdigit())
    assert hk._category(name) in lsm.CATEGORIES
    assert hk.hook_name(f"lsm/{name}") == hk.hook_name(f"bpf_lsm_{name}") == hk.hook_name(f" {name} ") == name
