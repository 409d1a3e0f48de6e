"""A seccomp filter for the sandbox (bwrap ``--seccomp FD``): the system calls a notebook never
needs and an attacker would, refused with EPERM.

Refused: new namespaces (``unshare``, ``setns``, ``clone`` with CLONE_NEWUSER or any other
CLONE_NEW* flag; ``clone3`` answers ENOSYS so that glibc falls back to ``clone``), ``ptrace`` and
``process_vm_*`` (no reading or steering another process, the grading job included), the kernel
keyring, ``bpf``, ``perf_event_open``, ``userfaultfd``, ``kexec``, module loading and the x32
ABI. Written as classic BPF (struct sock_filter) for x86_64 and aarch64; on other machines there
is none, and :func:`program` says so. Introduced for ``python -m labkit grade``.
"""
from __future__ import annotations

import platform
import struct

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# syscall numbers: (x86_64, aarch64)
REFUSED = {
    "unshare": (272, 97), "setns": (308, 268), "ptrace": (101, 117), "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271), "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "bpf": (321, 280), "perf_event_open": (298, 241), "userfaultfd": (323, 282), "kexec_load": (246, 104),
    "kexec_file_load": (320, 294), "init_module": (175, 105), "finit_module": (313, 273),
    "delete_module": (176, 106), "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41),
    "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430), "fsmount": (432, 432),
}
CLONE = (56, 220)
CLONE3 = (435, 435)
CLONE_NEW = 0x10000000 | 0x00020000 | 0x04000000 | 0x08000000 | 0x20000000 | 0x40000000 | 0x02000000 | 0x00000080
# NEWUSER | NEWNS | NEWUTS | NEWIPC | NEWPID | NEWNET | NEWCGROUP | NEWTIME
X32_BIT = 0x40000000
EPERM, ENOSYS = 1, 38
ALLOW, ERRNO = 0x7FFF0000, 0x00050000
LD_W_ABS, JEQ, JSET, JGE, RET = 0x20, 0x15, 0x45, 0x35, 0x06


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes | None:
    """The compiled filter for this machine's architecture (None where there is none)."""
    machine = machine or platform.machine()
    if machine not in AUDIT_ARCH:
        return None
    which = 0 if machine == "x86_64" else 1
    refused = sorted(numbers[which] for numbers in REFUSED.values())
    body = [_op(LD_W_ABS, 0)]  # A = syscall number
    if machine == "x86_64":
        body.append(_op(JGE, X32_BIT, 0, 1))  # the x32 ABI: refused
        body.append(_op(RET, ERRNO | EPERM))
    for nr in refused:  # if A == nr: refuse
        body += [_op(JEQ, nr, 0, 1), _op(RET, ERRNO | EPERM)]
    body += [_op(JEQ, CLONE3[which], 0, 1), _op(RET, ERRNO | ENOSYS)]
    body += [_op(JEQ, CLONE[which], 0, 3),  # clone(flags, ...): flags in args[0], low word at offset 16
             _op(LD_W_ABS, 16), _op(JSET, CLONE_NEW, 0, 1), _op(RET, ERRNO | EPERM)]
    body.append(_op(RET, ALLOW))
    head = [_op(LD_W_ABS, 4), _op(JEQ, AUDIT_ARCH[machine], 1, 0), _op(RET, ERRNO | EPERM)]  # another ABI: refused
    return b"".join(head + body)
