"""BPF LSM: programs that run on the kernel's security hooks and may refuse the operation.

``from ebpf.security import lsm``::

    insns = [asm.mov64(asm.R0, lsm.lsm_return_code("deny", "file_mprotect")), asm.exit_()]
    with lsm.lsm_hook(insns, "file_mprotect") as setup:   # load + attach; detached at the end
        ...                                                 # mprotect() fails with EPERM here

Two flavours: ``BPF_LSM_MAC`` programs apply to every process (attached through BPF_LINK_CREATE,
or BPF_RAW_TRACEPOINT_OPEN on kernels before links for LSM); ``BPF_LSM_CGROUP`` programs
(``cgroup=``, Linux >= 6.0) apply only to the processes of one cgroup v2 directory.  Return
values differ: a MAC program returns 0 to allow or ``-errno`` to deny, a cgroup program 1 to
allow or 0 to deny (EPERM); :func:`lsm_return_code` gives the right one.

The hooks (:func:`list_lsm_hooks` & co., from :mod:`ebpf.security.hooks`) come from the running
kernel's BTF.  A kernel that refuses LSM programs (the ``bpf`` LSM not active, lockdown,
missing capabilities) gets an :class:`UnsupportedFeatureError` that says which.
Requires Linux >= 5.7 with CONFIG_BPF_LSM and ``bpf`` in the active LSMs (``lsm=...,bpf``).
"""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ebpf.core.errors import (
    ENOTSUPP,
    AttachError,
    BPFSyscallError,
    EBPFError,
    ProbeInconclusiveError,
    UnsupportedFeatureError,
    VerifierError,
    errno_name,
)
from ebpf.core.fdowner import Setup
from ebpf.core.features import feature_test, fully_privileged
from ebpf.core.links import Link, attach_raw_tracepoint, create_link
from ebpf.core.programs import Program, load_program
from ebpf.core.records import dataclass, field
from ebpf.core.types import AttachType, ProgType
from ebpf.security.hooks import (
    CATEGORIES,
    LsmHook,
    find_lsm_hook,
    get_hook_category,
    list_hooks_by_category,
    list_lsm_hooks,
)

__all__ = [
    "CATEGORIES",
    "LsmHook",
    "LsmSetup",
    "list_lsm_hooks",
    "list_hooks_by_category",
    "get_hook_category",
    "find_lsm_hook",
    "lsm_available",
    "have_bpf_lsm",
    "have_lsm_cgroup",
    "active_lsms",
    "lockdown_mode",
    "explain_refusal",
    "denying_returns",
    "load_lsm_program",
    "attach_lsm_program",
    "detach_lsm_program",
    "setup_lsm_hook",
    "teardown_lsm_hook",
    "lsm_hook",
    "lsm_return_code",
]

#: The kernel's list of active LSMs (securityfs).
LSM_LIST = "/sys/kernel/security/lsm"
#: The kernel lockdown state (securityfs): ``none [integrity] confidentiality``.
LOCKDOWN = "/sys/kernel/security/lockdown"

_FEATURE = "BPF LSM"
_CGROUP_FEATURE = "cgroup-scoped BPF LSM (BPF_LSM_CGROUP)"
_GPL_COMPATIBLE = frozenset({"GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL",
                             "Dual MPL/GPL"})
_CAP_SYS_ADMIN, _CAP_PERFMON, _CAP_BPF = 21, 38, 39
_CGROUP2_MAGIC = 0x63677270
_PROBE_HOOK = "file_mprotect"
_MOV_IMM = (0xB7, 0xB4)  # BPF_ALU64|BPF_MOV|BPF_K, BPF_ALU|BPF_MOV|BPF_K
_EXIT = 0x95


# -- what the kernel allows --------------------------------------------------------------------------


def _read_securityfs(path: str) -> str | None:
    if path.startswith("/sys/kernel/security/"):
        try:
            from ebpf.core.system import ensure_securityfs

            ensure_securityfs()
        except (OSError, EBPFError):
            pass  # not mounted and cannot mount: the read below says so
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


def active_lsms() -> list[str] | None:
    """The active LSMs in the kernel's order (``["lockdown", "capability", "bpf"]``), or None
    when securityfs cannot be read."""
    text = _read_securityfs(LSM_LIST)
    return None if text is None else [name for name in text.split(",") if name]


def lockdown_mode() -> str | None:
    """The kernel lockdown mode (``"none"``, ``"integrity"``, ``"confidentiality"``), or None
    when the kernel has no lockdown LSM or securityfs cannot be read."""
    text = _read_securityfs(LOCKDOWN)
    if not text:
        return None
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return None


def _effective_caps() -> int | None:
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _not_active_reason(active: Sequence[str]) -> str:
    return (f"the 'bpf' LSM is not active (active: {','.join(active) or 'none'}); boot with "
            f"lsm={','.join([*active, 'bpf'])}")


def explain_refusal(err: int, active: Sequence[str] | None, lockdown: str | None, caps: int | None) -> str:
    """Why the kernel refused an LSM program with ``err``, from what this process can see.

    :param err: the errno of BPF_PROG_LOAD or BPF_LINK_CREATE.
    :param active: the active LSMs (None: unknown).
    :param lockdown: the lockdown mode (None: unknown or no lockdown LSM).
    :param caps: the effective capability mask (None: unknown).
    :returns: one sentence naming the cause: the ``bpf`` LSM not active, a missing capability, or lockdown.
    """
    code = _errno.errorcode.get(err, str(err))
    if active is not None and "bpf" not in active:
        return f"{code}: {_not_active_reason(active)}"
    if caps is not None:
        def has(cap: int) -> bool:
            return bool(caps >> cap & 1)

        missing = [name for name, ok in (("CAP_BPF", has(_CAP_BPF) or has(_CAP_SYS_ADMIN)),
                                         ("CAP_PERFMON", has(_CAP_PERFMON) or has(_CAP_SYS_ADMIN)),
                                         ("CAP_SYS_ADMIN", has(_CAP_SYS_ADMIN))) if not ok]
        if missing:
            return f"{code}: missing capability {', '.join(missing)} (run as root)"
    seen = (f"the 'bpf' LSM is active (lsm={','.join(active or ())}) and this process holds CAP_BPF, CAP_PERFMON "
            "and CAP_SYS_ADMIN")
    if active is None or caps is None:
        seen = "the active LSMs or capabilities could not be read"
    if lockdown not in (None, "none"):
        return (f"{code} although {seen}: the kernel refuses BPF trampolines (kernel lockdown is "
                f"'{lockdown}', or a hardened kernel)")
    return f"{code} although {seen}: the kernel refuses BPF trampolines (a hardened kernel or a security policy)"


def _refusal(exc: BPFSyscallError, feature: str = _FEATURE) -> UnsupportedFeatureError:
    why = explain_refusal(exc.errno or 0, active_lsms(), lockdown_mode(), _effective_caps())
    return UnsupportedFeatureError(feature, "6.0" if feature == _CGROUP_FEATURE else "5.7", why)


def _is_refusal(exc: BPFSyscallError) -> bool:
    # EPERM is the kernel saying no; EACCES from the verifier is a bad program, not a refusal.
    if exc.errno == _errno.EPERM:
        return True
    return exc.errno == _errno.EACCES and not (isinstance(exc, VerifierError) and exc.log.strip())


def _check_active() -> None:
    active = active_lsms()
    if active is not None and "bpf" not in active:
        # Programs would load and attach, then never run: refuse instead of a silent no-op.
        raise UnsupportedFeatureError(_FEATURE, "5.7", _not_active_reason(active))


@feature_test
def _probe_load(cgroup: bool) -> None:
    hook = find_lsm_hook("file_open" if cgroup else _PROBE_HOOK)
    # r0 = 0 (MAC: allow) or 1 (cgroup: allow); exit
    insns = bytes([0xB7, 0, 0, 0, int(cgroup), 0, 0, 0, _EXIT, 0, 0, 0, 0, 0, 0, 0])
    feature = _CGROUP_FEATURE if cgroup else _FEATURE
    try:
        prog = load_program(prog_type=ProgType.LSM, expected_attach_type=_attach_type(cgroup),
                            attach_btf_id=hook.btf_id, insns=insns, name="lsm_probe")
    except BPFSyscallError as exc:
        if _is_refusal(exc) and not fully_privileged():
            # Not everything is allowed to us, so the refusal does not say the kernel lacks it.
            raise ProbeInconclusiveError(feature, explain_refusal(exc.errno or 0, active_lsms(), lockdown_mode(),
                                                                  _effective_caps()), exc.errno) from None
        if _is_refusal(exc):
            raise _refusal(exc, feature) from None
        if exc.errno in (_errno.EINVAL, _errno.EOPNOTSUPP, ENOTSUPP):
            raise UnsupportedFeatureError(feature, "6.0" if cgroup else "5.7", "the kernel does not load them",
                                          errno_name(exc.errno)) from None
        raise
    prog.close()


def have_bpf_lsm() -> None:
    """Probe for BPF LSM programs: the ``bpf`` LSM active, hooks in the kernel's BTF, and a real load.

    :raises UnsupportedFeatureError: naming the reason (``bpf`` not among the active LSMs, no BTF,
        no CONFIG_BPF_LSM, lockdown, missing capability).
    Requires Linux >= 5.7.
    """
    _check_active()  # not cached: cheap, and the answer may change (securityfs mounted later)
    list_lsm_hooks()
    _probe_load(False)


def _check_cgroup_kernel() -> None:
    from ebpf.core.system import kernel_version

    if kernel_version()[:2] < (6, 0):
        raise UnsupportedFeatureError(_CGROUP_FEATURE, "6.0")


def have_lsm_cgroup() -> None:
    """Probe for cgroup-scoped LSM programs (``BPF_LSM_CGROUP``).

    :raises UnsupportedFeatureError: when BPF LSM is unavailable or the kernel predates 6.0.
    Requires Linux >= 6.0.
    """
    have_bpf_lsm()
    _check_cgroup_kernel()
    _probe_load(True)


def lsm_available() -> bool:
    """True when BPF LSM programs can be loaded here (see :func:`have_bpf_lsm` for the reason when not)."""
    try:
        have_bpf_lsm()
    except UnsupportedFeatureError:
        return False
    return True


# -- return codes and program checks -----------------------------------------------------------------


def lsm_return_code(action: str, hook: object = None, *, cgroup: bool = False, errno: int = _errno.EPERM) -> int:
    """The value an LSM program returns (in R0) to ``"allow"`` or ``"deny"`` the operation.

    :param action: ``"allow"`` or ``"deny"``.
    :param hook: the hook the program runs on; a deny on a hook returning void is refused.
    :param cgroup: for ``BPF_LSM_CGROUP`` programs (allow 1, deny 0) instead of MAC (allow 0, deny -errno).
    :param errno: the error a MAC program denies with (default EPERM).
    :returns: the return value.
    :raises EBPFError: for an unknown action, a bad errno, an unknown hook, or a deny on a void hook.
    """
    if action not in ("allow", "deny"):
        raise EBPFError(f"an LSM program can 'allow' or 'deny', not {action!r}")
    if not isinstance(errno, int) or isinstance(errno, bool) or not 0 < errno < 4096:
        raise EBPFError(f"errno must be a positive error number below 4096, not {errno!r}")
    if hook is not None and action == "deny":
        _refuse_void(find_lsm_hook(hook))
    if cgroup:
        return 1 if action == "allow" else 0
    return 0 if action == "allow" else -errno


def _refuse_void(hook: LsmHook, detail: str = "") -> None:
    if not hook.can_deny:
        raise EBPFError(f"LSM hook {hook.name!r} returns void and cannot deny anything ({hook.signature()})"
                        f"{detail}; pick a hook returning int")


def _program_text(insns: Any) -> bytes:
    if isinstance(insns, (bytes, bytearray, memoryview)):
        return bytes(insns)
    if hasattr(insns, "assemble"):
        raw = insns.assemble()
    elif isinstance(insns, (list, tuple, str)):
        from ebpf.core import asm

        raw = asm.assemble(insns if isinstance(insns, str) else list(insns))
    else:
        raise EBPFError(f"insns must be bytes, a list of instructions or assembler text, not {type(insns).__name__}")
    if not isinstance(raw, (bytes, bytearray)):
        raise EBPFError(f"assembling insns gave {type(raw).__name__}, not bytes")
    return bytes(raw)


def denying_returns(text: bytes, cgroup: bool = False) -> list[int]:
    """The deny values a program returns as constants: each ``r0 = imm`` directly followed by ``exit``
    whose value denies (a negative errno for MAC programs, 0 for cgroup programs).

    :param text: the program's instructions (8 bytes each).
    :returns: the denying values found, in program order.
    """
    found = []
    for at in range(0, len(text) - 15, 8):
        op, regs = text[at], text[at + 1]
        if op in _MOV_IMM and regs & 0x0F == 0 and text[at + 8] == _EXIT:
            imm = int.from_bytes(text[at + 4:at + 8], "little", signed=True)
            if (imm == 0) if cgroup else (-4096 < imm < 0):
                found.append(imm)
    return found


def _attach_type(cgroup: bool) -> AttachType:
    return AttachType.LSM_CGROUP if cgroup else AttachType.LSM_MAC


# -- load, attach, detach ----------------------------------------------------------------------------


def load_lsm_program(insns: Any, hook: object, name: str = "", license: str = "GPL", *, cgroup: bool = False,
                     **fields: Any) -> Program:
    """Load a BPF LSM program for ``hook`` (``attach_btf_id`` resolved from the kernel's BTF).

    :param insns: the instructions (bytes, a list of :mod:`ebpf.core.asm` instructions, assembler text).
    :param hook: the hook name (``"file_open"``; ``"bpf_lsm_file_open"`` and ``"lsm/file_open"`` work too).
    :param name: the program name (default: the hook's, cut to 15 characters).
    :param license: must be GPL-compatible (the kernel allows LSM programs only under GPL).
    :param cgroup: load for ``BPF_LSM_CGROUP`` (attach to a cgroup later) instead of ``BPF_LSM_MAC``.
    :param fields: other :class:`~ebpf.core.programs.ProgramSpec` fields (``maps=``, ``log_level=``, ...).
    :returns: the loaded program (prog type ``LSM``).
    :raises EBPFError: for an unknown hook (with close names), a non-GPL license, or a program that
        returns a deny value on a hook returning void; all before any syscall.
    :raises UnsupportedFeatureError: when the kernel refuses (``bpf`` LSM not active, lockdown,
        missing capability, BPF_LSM_CGROUP before Linux 6.0).
    :raises VerifierError: when the verifier rejects the program.
    Requires Linux >= 5.7 (>= 6.0 with ``cgroup=True``).
    """
    for key in ("prog_type", "expected_attach_type", "attach_btf_id", "attach_to"):
        if key in fields:
            raise EBPFError(f"load_lsm_program sets {key} itself (from the hook and cgroup=)")
    target = find_lsm_hook(hook)
    if not isinstance(license, str) or license not in _GPL_COMPATIBLE:
        raise EBPFError(f"LSM programs must be GPL-compatible; license {license!r} is not "
                        f"(use one of {', '.join(sorted(_GPL_COMPATIBLE))})")
    text = _program_text(insns)
    if not target.can_deny:
        denies = denying_returns(text, cgroup)
        if denies:
            _refuse_void(target, f"; the program returns {denies[0]}")
    if cgroup:
        _check_cgroup_kernel()
    _check_active()
    try:
        return load_program(prog_type=ProgType.LSM, expected_attach_type=_attach_type(cgroup), attach_to=target.name,
                            attach_btf_id=target.btf_id, insns=text, name=name or target.name, license=license,
                            **fields)
    except BPFSyscallError as exc:
        if _is_refusal(exc):
            raise _refusal(exc, _CGROUP_FEATURE if cgroup else _FEATURE) from exc
        raise


def _check_program(prog: object, what: str) -> Program:
    if not isinstance(prog, Program):
        raise AttachError(f"{what} needs a loaded Program, not {type(prog).__name__}")
    if prog.fd < 0:
        raise AttachError(f"{what}: program {prog.name!r} is closed")
    if prog.prog_type != ProgType.LSM:
        raise AttachError(f"{what} needs an lsm program; {prog.name or 'this'} is a {prog.prog_type.lower_name} "
                          "program (load it with load_lsm_program)")
    return prog


def _cgroup_target(cgroup: object) -> str | int:
    """A cgroup v2 directory path or an fd, checked (nothing opened)."""
    from ebpf.core.system import fs_type

    if isinstance(cgroup, int) and not isinstance(cgroup, bool):
        if cgroup < 0:
            raise AttachError(f"a cgroup fd must be >= 0, not {cgroup}")
        return cgroup
    if not isinstance(cgroup, (str, os.PathLike)):
        raise AttachError(f"a cgroup is a cgroup v2 directory path or fd, not {type(cgroup).__name__}")
    path = os.fspath(cgroup)
    if not isinstance(path, str) or not os.path.isdir(path) or fs_type(path) != _CGROUP2_MAGIC:
        raise AttachError(f"{path!r} is not a cgroup v2 directory")
    return path


def _open_cgroup(cgroup: object) -> tuple[int, bool, str]:
    """(fd, whether we opened it, a label) for a cgroup path or an open cgroup directory fd."""
    target = _cgroup_target(cgroup)
    if isinstance(target, int):
        return target, False, f"cgroup fd {target}"
    try:
        return os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), True, target
    except OSError as exc:
        raise AttachError(f"cannot open cgroup {target}: {exc.strerror}") from exc


def attach_lsm_program(prog: Program, cgroup: object = None) -> Link:
    """Attach a loaded LSM program: to its hook for every process, or (``BPF_LSM_CGROUP`` programs)
    for the processes of ``cgroup``.

    MAC programs attach through BPF_LINK_CREATE, falling back to BPF_RAW_TRACEPOINT_OPEN on kernels
    whose links do not take LSM programs; cgroup programs through BPF_LINK_CREATE on the cgroup.

    :param prog: a program from :func:`load_lsm_program`.
    :param cgroup: for cgroup programs only: a cgroup v2 directory path or an open fd of one.
    :returns: the :class:`~ebpf.core.links.Link`; closing it detaches the program.
    :raises AttachError: for a program that is not LSM, a missing or unexpected cgroup, a bad cgroup.
    :raises UnsupportedFeatureError: when the kernel refuses (lockdown, capability).
    """
    prog = _check_program(prog, "attach_lsm_program")
    is_cgroup = prog.expected_attach_type == AttachType.LSM_CGROUP
    if is_cgroup and cgroup is None:
        raise AttachError(f"{prog.name or 'program'} was loaded for BPF_LSM_CGROUP: give the cgroup to attach to")
    if not is_cgroup and cgroup is not None:
        raise AttachError(f"{prog.name or 'program'} was loaded for BPF_LSM_MAC (every process); load it with "
                          "cgroup=True to attach it to a cgroup")
    feature = _CGROUP_FEATURE if is_cgroup else _FEATURE
    try:
        if is_cgroup:
            fd, owned, label = _open_cgroup(cgroup)
            try:
                return create_link(prog, fd, AttachType.LSM_CGROUP,
                                   description=f"{prog.name or 'lsm'} lsm_cgroup on {label}")
            finally:
                if owned:
                    os.close(fd)
        try:
            return create_link(prog, 0, AttachType.LSM_MAC, description=f"{prog.name or 'lsm'} lsm on "
                               f"{prog.spec.attach_to or 'its hook'}")
        except BPFSyscallError as exc:
            if exc.errno not in (_errno.EINVAL, _errno.EOPNOTSUPP, ENOTSUPP):
                raise
        # kernels whose BPF_LINK_CREATE does not take LSM programs
        return attach_raw_tracepoint(prog)
    except BPFSyscallError as exc:
        if _is_refusal(exc):
            raise _refusal(exc, feature) from exc
        raise


def detach_lsm_program(link: Link) -> None:
    """Detach what :func:`attach_lsm_program` attached (closes the link).  Twice is harmless.

    :raises EBPFError: when ``link`` is not a Link.
    """
    if not isinstance(link, Link):
        raise EBPFError(f"detach_lsm_program needs the Link from attach_lsm_program, not {type(link).__name__}")
    link.detach()


# -- setup / teardown --------------------------------------------------------------------------------


@dataclass
class LsmSetup(Setup):
    """What :func:`setup_lsm_hook` made: the hook, the program, its link and the cgroup (if any); the
    :class:`~ebpf.core.fdowner.Setup` contract: ``close()`` / ``with`` / :func:`teardown_lsm_hook` undo it."""

    hook: LsmHook
    program: Program
    link: Link
    cgroup: str | int | None = None
    owns_program: bool = True
    torn_down: bool = field(default=False, repr=False)

    def _teardown(self) -> None:
        try:
            self.link.detach()
        finally:
            if self.owns_program:
                self.program.close()


def setup_lsm_hook(insns: Any, hook: object, name: str = "", license: str = "GPL", *, cgroup: object = None,
                   **fields: Any) -> LsmSetup:
    """Load (when given instructions) and attach an LSM program in one step.

    :param insns: instructions for :func:`load_lsm_program`, or a loaded LSM program for ``hook``.
    :param hook: the hook name.
    :param cgroup: a cgroup v2 path (or fd): load for ``BPF_LSM_CGROUP`` and attach there.
    :param fields: passed to :func:`load_lsm_program`.
    :returns: an :class:`LsmSetup` for :func:`teardown_lsm_hook`.
    :raises EBPFError: as :func:`load_lsm_program` and :func:`attach_lsm_program`; nothing stays
        loaded or attached when it raises.
    """
    target = find_lsm_hook(hook)
    where = None if cgroup is None else _cgroup_target(cgroup)  # checked before anything is loaded
    if isinstance(insns, Program):
        prog = _check_program(insns, "setup_lsm_hook")
        if prog.spec.attach_btf_id not in (None, target.btf_id):
            raise EBPFError(f"setup_lsm_hook: the program was loaded for another hook than {target.name!r}")
        owned = False
    else:
        prog = load_lsm_program(insns, target, name, license, cgroup=where is not None, **fields)
        owned = True
    try:
        link = attach_lsm_program(prog, where)
    except BaseException:
        if owned:
            prog.close()
        raise
    return LsmSetup(target, prog, link, where, owned)


def teardown_lsm_hook(setup: LsmSetup) -> None:
    """``setup.close()``: detach what :func:`setup_lsm_hook` attached and close the program it loaded.
    Twice is harmless.

    :raises EBPFError: when ``setup`` is not an :class:`LsmSetup`.
    """
    if not isinstance(setup, LsmSetup):
        raise EBPFError(f"teardown_lsm_hook needs an LsmSetup, not {type(setup).__name__}")
    setup.close()


@contextmanager
def lsm_hook(insns: Any, hook: object, name: str = "", license: str = "GPL", *, cgroup: object = None,
             **fields: Any) -> Iterator[LsmSetup]:
    """An LSM program loaded and attached for the duration of a ``with`` block (see :func:`setup_lsm_hook`)."""
    setup = setup_lsm_hook(insns, hook, name, license, cgroup=cgroup, **fields)
    try:
        yield setup
    finally:
        teardown_lsm_hook(setup)
