"""A kernel built in a test: symbols, types, globals, per-CPU data, functions with ORC
entries and call sites, stacks, and the finished dump.

Everything kdumpy reads is put in memory the way Linux lays it out, through the
interfaces kdumpy uses on a real dump (VMCOREINFO, kallsyms, BTF, ORC, page tables),
so a test knows every answer before it asks: the builder's records are the oracle.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .cdecl import CType, TypeSystem
from .kernel_types import KERNEL_TYPES
from .memory import KERNEL_VIRT, PAGE, START_KERNEL_MAP, Memory
from .tables import (
    ORC_TYPE_CALL,
    ORC_TYPE_REGS,
    ORC_TYPE_UNDEFINED,
    PRINTK_VMCOREINFO,
    encode_kallsyms,
    encode_printk,
    orc_entry,
)

TEXT_SIZE = 0x40000
DATA_START = KERNEL_VIRT + TEXT_SIZE
IMAGE_END = KERNEL_VIRT + (2 << 20)
THREAD_SIZE = 16384
PT_REGS = (
    "r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8",
    "ax", "cx", "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss",
)  # fmt: skip
USER_CS, USER_SS, KERNEL_CS, KERNEL_SS = 0x33, 0x2B, 0x10, 0x18
PROLOGUE = bytes.fromhex("554889e5")  # push %rbp; mov %rsp,%rbp


@dataclass
class Function:
    name: str
    address: int
    size: int
    frame: int  # bytes of locals between the return address and the stack pointer
    orc: int  # ORC type for the whole function
    module: str | None = None
    sites: dict[str, int] = field(default_factory=dict)  # callee -> return address


@dataclass
class StackFrame:
    """What ``bt`` must print for one frame."""

    function: str
    pc: int
    slot: int


class SyntheticKernel:
    """Build a kernel image and memory, then :meth:`dump` it to an ELF vmcore."""

    def __init__(self, release: str = "6.8.0-synthetic", cpus: int = 2) -> None:
        self.mem = Memory()
        self.types = TypeSystem()
        self.types.declare(KERNEL_TYPES)
        self.release = release
        self.cpus = cpus
        self.symbols: dict[str, tuple[int, str]] = {}
        self.functions: dict[str, Function] = {}
        self._text = KERNEL_VIRT + 0x1000
        self._data = DATA_START
        self.percpu_vars: dict[str, str] = {}
        self._percpu_size = 0
        self.percpu_areas = [self.mem.alloc(0x4000, PAGE) for _ in range(cpus)]
        self.log: list[tuple[int, bytes]] = []
        self.prstatus: dict[int, dict[str, int]] = {}
        self.crash_time = 1_764_750_000
        self.vmcoreinfo_extra: dict[str, str] = {}
        self.symbol("_stext", KERNEL_VIRT, "T")
        self.symbol("_text", KERNEL_VIRT, "T")
        self._percpu_start = self.data("__per_cpu_start", 0x2000, align=PAGE)
        self.list_init(self.global_("modules", "struct list_head"))

    # -- symbols and data ----------------------------------------------------------------------
    def symbol(self, name: str, address: int, kind: str = "D") -> int:
        self.symbols[name] = (address, kind)
        return address

    def data(self, name: str | None, size: int, kind: str = "D", align: int = 64) -> int:
        """Space in the kernel image's data (a global); registered as a symbol."""
        at = (self._data + align - 1) & -align
        self._data = at + max(size, 1)
        if self._data > IMAGE_END:
            raise MemoryError("synthetic kernel image full")
        if name:
            self.symbol(name, at, kind)
        return at

    def type(self, spec: str) -> CType:
        return self.types.lookup(spec)

    def offsetof(self, spec: str, path: str) -> int:
        return self.types.path(self.type(spec), path)[1]

    def global_(self, name: str, spec: str, values: dict[str, object] | None = None,
                kind: str = "D") -> int:  # fmt: skip
        """A global variable of type ``spec`` (e.g. ``"struct task_struct"``)."""
        t = self.type(spec)
        address = self.data(name, t.size, kind, max(8, t.align))
        self.write(address, spec, values or {})
        return address

    def write(self, address: int, spec: str, values: dict[str, object]) -> None:
        """Store members by path: ``{"pid": 1, "comm": b"init", "se.run_node.rb_left": 0}``.
        Integers fill integer, enum and pointer members; bytes fill arrays and structs."""
        t = self.type(spec)
        for path, value in values.items():
            m_type, offset = self.types.path(t, path) if path else (t, 0)
            size = m_type.size
            if isinstance(value, bytes):
                assert len(value) <= size, f"{spec}.{path}: {len(value)} bytes > {size}"
                self.mem.write(address + offset, value.ljust(size, b"\0"))
            else:
                assert isinstance(value, int), f"{spec}.{path}: {value!r}"
                self.mem.write(
                    address + offset, (value & (1 << 8 * size) - 1).to_bytes(size, "little")
                )

    def new(self, spec: str, values: dict[str, object] | None = None) -> int:
        """A zeroed object on the heap (kmalloc), with ``values`` written."""
        t = self.type(spec)
        address = self.mem.alloc(t.size, max(8, t.align))
        self.write(address, spec, values or {})
        return address

    def string(self, text: bytes) -> int:
        address = self.mem.alloc(len(text) + 1, 1)
        self.mem.write(address, text + b"\0")
        return address

    # -- linked structures ----------------------------------------------------------------------
    def list_init(self, head: int) -> None:
        self.mem.u64(head, head)
        self.mem.u64(head + 8, head)

    def list_add_tail(self, head: int, node: int) -> None:
        """``list_add_tail(node, head)`` on ``struct list_head`` addresses."""
        prev = int.from_bytes(self.mem.read(head + 8, 8), "little")
        self.mem.u64(node, head)
        self.mem.u64(node + 8, prev)
        self.mem.u64(prev, node)
        self.mem.u64(head + 8, node)

    def list_add(self, head: int, node: int) -> None:
        """``list_add(node, head)``: insert right after the head (newest first)."""
        nxt = int.from_bytes(self.mem.read(head, 8), "little")
        self.list_add_tail(nxt, node)

    def rb_tree(self, nodes: list[int]) -> int:
        """A balanced tree of ``struct rb_node`` addresses whose in-order walk is
        ``nodes``; returns the root (colours are not checked by readers)."""
        left = self.offsetof("struct rb_node", "rb_left")
        right = self.offsetof("struct rb_node", "rb_right")

        def build(part: list[int], parent: int) -> int:
            if not part:
                return 0
            mid = len(part) // 2
            node = part[mid]
            self.mem.u64(node, parent)
            self.mem.u64(node + left, build(part[:mid], node))
            self.mem.u64(node + right, build(part[mid + 1 :], node))
            return node

        return build(nodes, 0)

    # -- per-CPU data ------------------------------------------------------------------------
    def percpu(self, name: str, spec: str) -> int:
        """A per-CPU variable (a BTF VAR, like the kernel's); returns its symbol address
        (Linux >= 6.15 style: an ordinary kernel address that ``__per_cpu_offset``
        moves to each CPU's copy)."""
        t = self.type(spec)
        offset = (self._percpu_size + 63) & -64
        self._percpu_size = offset + t.size
        self.percpu_vars[name] = spec
        return self.symbol(name, self._percpu_start + offset, "D")

    def percpu_alloc(self, size: int) -> int:
        """A ``__percpu`` pointer value (alloc_percpu)."""
        offset = (self._percpu_size + 7) & -8
        self._percpu_size = offset + size
        return self._percpu_start + offset

    def per_cpu_address(self, percpu_pointer: int, cpu: int) -> int:
        return self.percpu_areas[cpu] + percpu_pointer - self._percpu_start

    # -- code ---------------------------------------------------------------------------------
    def function(self, name: str, frame: int = 0x18, orc: int = ORC_TYPE_CALL,
                 size: int = 0x80, kind: str = "T") -> Function:  # fmt: skip
        """A function in vmlinux text: a prologue, ``int3`` filler, one ORC entry."""
        address = self._text
        self._text += size
        self.mem.write(address, PROLOGUE + b"\xcc" * (size - len(PROLOGUE)))
        self.symbol(name, address, kind)
        fn = Function(name, address, size, frame, orc)
        self.functions[name] = fn
        return fn

    def call_site(self, caller: str, callee: str, direct: bool = True) -> int:
        """A call from ``caller`` to ``callee``; returns the return address.  Direct calls
        are ``call rel32`` (what a stack scan recognises), others ``call *%rax``."""
        fn = self.functions[caller]
        if callee in fn.sites:
            return fn.sites[callee]
        ret = fn.address + 0x10 + 0x10 * len(fn.sites)
        assert ret < fn.address + fn.size, f"{caller}: too many call sites"
        target = self.functions[callee].address
        if direct:
            self.mem.write(ret - 5, b"\xe8" + struct.pack("<i", target - ret))
        else:
            self.mem.write(ret - 2, b"\xff\xd0")
        fn.sites[callee] = ret
        return ret

    def module(self, name: bytes, taints: int, functions: list[tuple[str, int, int]]) -> int:
        """A loaded module (``struct module`` on the ``modules`` list) whose text holds
        ``(function, frame, orc type)``, with its own symbol table and ORC table."""
        text_size, data_size = 0x100 * len(functions), 0x3000
        text = self.mem.module_alloc(text_size)
        data = self.mem.module_alloc(data_size)
        strtab = bytearray(b"\0")
        syms = bytearray(24)  # symbol 0 is the null symbol
        for i, (fname, frame, orc) in enumerate(functions):
            address = text + 0x100 * i
            self.mem.write(address, PROLOGUE + b"\xcc" * (0x100 - len(PROLOGUE)))
            fn = Function(fname, address, 0x100, frame, orc, name.decode("latin-1"))
            self.functions[fname] = fn
            syms += struct.pack("<IBBHQQ", len(strtab), 0x12, 0, 1, address, 0x100)
            strtab += fname.encode() + b"\0"
        count = len(functions)
        mod = data
        ks = mod + self.type("struct module").size
        at = (ks + self.type("struct mod_kallsyms").size + 7) & -8
        symtab, at = at, at + len(syms)
        strs, at = at, at + len(strtab)
        types, at = at, at + count + 1
        ips, at = (at + 3) & -4, ((at + 3) & -4) + 4 * count
        orcs = at
        self.mem.write(symtab, bytes(syms))
        self.mem.write(strs, bytes(strtab))
        self.mem.write(types, b"?" + b"T" * count)
        for i, (_f, frame, orc) in enumerate(functions):
            place = ips + 4 * i
            self.mem.u32(place, text + 0x100 * i - place)
            self.mem.write(orcs + 6 * i, orc_entry(orc, 0 if orc == ORC_TYPE_REGS else frame + 8))
        self.write(ks, "struct mod_kallsyms", {"symtab": symtab, "num_symtab": count + 1,
                                               "strtab": strs, "typetab": types})  # fmt: skip
        self.write(mod, "struct module", {
            "name": name, "taints": taints, "kallsyms": ks,
            "mem[0].base": text, "mem[0].size": text_size,
            "mem[1].base": data, "mem[1].size": data_size,
            "arch.num_orcs": count, "arch.orc_unwind_ip": ips, "arch.orc_unwind": orcs,
        })  # fmt: skip
        head = self.symbols["modules"][0]
        self.list_add(head, mod + self.offsetof("struct module", "list"))
        return mod

    # -- stacks -------------------------------------------------------------------------------
    def stack(self, chain: list[str], user_regs: dict[str, int] | None = None,
              indirect: tuple[str, ...] = ()) -> tuple[int, list[int], int]:  # fmt: skip
        """A kernel stack holding the call chain ``chain`` (innermost first).

        The outermost function is entered from user mode (``user_regs`` become the
        ``pt_regs`` at the stack's top) or is where the stack ends.  Functions named in
        ``indirect`` were called through a pointer.  Returns ``(stack base, the stack
        pointer of each frame, frame-pointer value for the innermost frame)``.
        """
        base = self.mem.vmalloc(THREAD_SIZE)
        top = base + THREAD_SIZE
        if user_regs is not None:
            regs_at = top - 8 * len(PT_REGS)
            regs = {"cs": USER_CS, "ss": USER_SS, "flags": 0x246, **user_regs}
            self.mem.write(regs_at, struct.pack("<21Q", *(regs.get(r, 0) for r in PT_REGS)))
            sps = [regs_at]
        else:
            sps = [top - 0x30]
        bp = 0
        for inner, outer in zip(reversed(chain[:-1]), reversed(chain[1:]), strict=True):
            ret = self.call_site(outer, inner, direct=inner not in indirect)
            slot = sps[0] - 8
            self.mem.u64(slot, ret)
            if inner in indirect:  # a frame-pointer frame: saved %rbp below the return
                self.mem.u64(slot - 8, bp)
                bp = slot - 8
            sps.insert(0, slot - self.functions[inner].frame)
        return base, sps, bp

    def expected_frames(self, chain: list[str], sps: list[int], first_pc: int,
                        first_slot: int) -> list[StackFrame]:  # fmt: skip
        """The frames ``bt`` must show for a stack built by :meth:`stack`."""
        frames = [StackFrame(chain[0], first_pc, first_slot)]
        for i in range(1, len(chain)):
            ret = self.functions[chain[i]].sites[chain[i - 1]]
            frames.append(StackFrame(chain[i], ret, sps[i] - 8))
        return frames

    # -- the dump -----------------------------------------------------------------------------
    def _write_orc(self) -> None:
        fns = sorted(self.functions.values(), key=lambda f: f.address)
        fns = [f for f in fns if f.module is None]
        count = len(fns) + 1
        ips = self.data("__start_orc_unwind_ip", 4 * count, align=4)
        self.symbol("__stop_orc_unwind_ip", ips + 4 * count)
        entries = self.data("__start_orc_unwind", 6 * count, align=2)
        self.symbol("__stop_orc_unwind", entries + 6 * count)
        places = [f.address for f in fns] + [self._text]
        kinds = [(f.orc, f.frame + 8) for f in fns] + [(ORC_TYPE_UNDEFINED, 0)]
        for i, (ip, (orc, sp_offset)) in enumerate(zip(places, kinds, strict=True)):
            self.mem.u32(ips + 4 * i, ip - (ips + 4 * i))
            if orc == ORC_TYPE_REGS:
                sp_offset = 0
            self.mem.write(entries + 6 * i, orc_entry(orc, sp_offset))

    def _write_printk(self) -> None:
        descs = self.mem.alloc(24 << 7, 8)
        infos = self.mem.alloc(88 << 7, 8)
        data = self.mem.alloc(1 << 15, 8)
        ring = encode_printk(self.log, descs, infos, data)
        rb = self.data("printk_rb_static", len(ring.ringbuffer))
        self.mem.write(rb, ring.ringbuffer)
        self.mem.write(descs, ring.descs)
        self.mem.write(infos, ring.infos)
        self.mem.write(data, ring.data)
        prb = self.data("prb", 8)
        self.mem.u64(prb, rb)

    def _write_percpu_offsets(self) -> None:
        offsets = self.data("__per_cpu_offset", 8 * 64)
        for cpu, area in enumerate(self.percpu_areas):
            self.mem.u64(offsets + 8 * cpu, area - self._percpu_start)
        self.global_("nr_cpu_ids", "unsigned int", {"": self.cpus})
        mask = (1 << self.cpus) - 1
        for name in ("__cpu_online_mask", "__cpu_possible_mask", "__cpu_present_mask"):
            self.global_(name, "struct cpumask", {"bits[0]": mask})

    def _write_btf(self) -> None:
        blob = self.types.btf(self.percpu_vars)
        start = self.data("__start_BTF", len(blob), "R", align=4)
        self.symbol("__stop_BTF", start + len(blob), "R")
        self.mem.write(start, blob)

    def _write_kallsyms(self) -> dict[str, int]:
        self.symbol("_etext", self._text, "T")
        syms = sorted((addr, name, kind) for name, (addr, kind) in self.symbols.items())
        tables = encode_kallsyms([(n, a, k) for a, n, k in syms], KERNEL_VIRT)
        where = {}
        for field_name in ("num_syms", "names", "markers", "token_table", "token_index",
                           "offsets", "relative_base", "seqs_of_names"):  # fmt: skip
            blob = getattr(tables, field_name)
            where[field_name] = self.data(None, len(blob), align=8)
            self.mem.write(where[field_name], blob)
        return where

    def vmcoreinfo(self, kallsyms: dict[str, int], pgd: int) -> str:
        lines = [
            f"OSRELEASE={self.release}",
            f"PAGESIZE={PAGE}",
            f"SYMBOL(init_top_pgt)={pgd:x}",
            "NUMBER(phys_base)=0",
            "NUMBER(pgtable_l5_enabled)=0",
            f"SYMBOL(_stext)={KERNEL_VIRT:x}",
            f"SYMBOL(prb)={self.symbols['prb'][0]:x}",
            f"KERNELOFFSET={KERNEL_VIRT - 0xFFFFFFFF81000000:x}",
        ]
        lines += [f"SYMBOL(kallsyms_{n})={a:x}" for n, a in kallsyms.items() if n != "markers"]
        if "init_uts_ns" in self.symbols:  # what makedumpfile checks the release with
            lines.append(f"SYMBOL(init_uts_ns)={self.symbols['init_uts_ns'][0]:x}")
            lines.append(
                f"OFFSET(uts_namespace.name)={self.offsetof('struct uts_namespace', 'name')}"
            )
        lines += PRINTK_VMCOREINFO.splitlines()
        lines += [f"{k}={v}" for k, v in self.vmcoreinfo_extra.items()]
        lines.append(f"CRASHTIME={self.crash_time}")
        return "\n".join(lines) + "\n"

    def dump(self) -> bytes:
        """Finish the image and return the ELF vmcore's bytes (the builder is spent)."""
        self._write_percpu_offsets()
        self._write_printk()
        self._write_orc()
        self._write_btf()
        pgd = self.data("init_top_pgt", PAGE, align=PAGE)
        kallsyms = self._write_kallsyms()
        self.mem.build_page_tables(pgd - START_KERNEL_MAP)
        regs = [(0, self.prstatus.get(cpu, {})) for cpu in range(self.cpus)]
        return self.mem.elf(self.vmcoreinfo(kallsyms, pgd), regs)
