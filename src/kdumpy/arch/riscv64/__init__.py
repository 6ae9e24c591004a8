"""RISC-V 64: only the kexec system calls are known (:mod:`.kdump`); no dump reading."""
