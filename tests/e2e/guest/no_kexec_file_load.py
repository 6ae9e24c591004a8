"""Run a command with kexec_file_load unavailable: the system call fails with ENOSYS.

    python3 no_kexec_file_load.py COMMAND [ARGS...]

Runs in the lab's Debian guest.  A seccomp filter (inherited by the command and its
children) makes x86_64 system call 320 return ENOSYS, which is what a kernel built
without CONFIG_KEXEC_FILE returns; every other system call is untouched.  Before running
the command it checks that the call really fails so and says so on stderr.
"""

import ctypes
import errno
import os
import sys

AUDIT_ARCH_X86_64 = 0xC000003E
NR_KEXEC_FILE_LOAD = 320
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
# BPF opcodes: BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K
LD_ABS, JEQ, RET = 0x20, 0x15, 0x06


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]  # fmt: skip


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def install() -> None:
    prog = [
        SockFilter(LD_ABS, 0, 0, 4),  # seccomp_data.arch
        SockFilter(JEQ, 0, 3, AUDIT_ARCH_X86_64),  # another ABI: allow
        SockFilter(LD_ABS, 0, 0, 0),  # seccomp_data.nr
        SockFilter(JEQ, 0, 1, NR_KEXEC_FILE_LOAD),
        SockFilter(RET, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS),
        SockFilter(RET, 0, 0, SECCOMP_RET_ALLOW),
    ]
    array = (SockFilter * len(prog))(*prog)
    fprog = SockFprog(len(prog), array)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_SECCOMP): {os.strerror(ctypes.get_errno())}")
    # The proof: a harmless call (no file, no flags) that a kernel would answer with EBADF.
    ret = libc.syscall(ctypes.c_long(NR_KEXEC_FILE_LOAD), -1, -1, ctypes.c_ulong(0), None,
                       ctypes.c_ulong(0))  # fmt: skip
    err = ctypes.get_errno()
    if ret != -1 or err != errno.ENOSYS:
        sys.exit(f"kexec_file_load not blocked (ret {ret}, errno {err})")
    print("no_kexec_file_load: kexec_file_load fails with ENOSYS", file=sys.stderr, flush=True)


if __name__ == "__main__":
    install()
    os.execvp(sys.argv[1], sys.argv[1:])
