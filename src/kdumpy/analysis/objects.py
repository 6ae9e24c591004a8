"""Typed objects in the crashed kernel's memory: ``task.comm``, ``list.next[0]``, ...

An :class:`Object` is a type plus either an address (an lvalue in the dump) or a value
(a computed pointer or integer).  Method and attribute names end with ``_`` where they
could clash with a C member name (like drgn's API), so ``task.mm`` is the member and
``task.type_`` the type.
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

from kdumpy.analysis.memory import KernelMemory
from kdumpy.analysis.symbols import Symbol
from kdumpy.analysis.types import (
    ArrayType,
    EnumType,
    FloatType,
    FunctionType,
    IntType,
    PointerType,
    StructType,
    Type,
    pointer_to,
)
from kdumpy.arch.select import Architecture
from kdumpy.errors import KdumpyError

_INT_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}


class ObjectProgram(Protocol):
    """What objects and their users need of the program they live in
    (:class:`kdumpy.analysis.program.Program` implements it; a protocol because the
    program creates objects, so this module cannot import it)."""

    memory: KernelMemory

    @property
    def arch(self) -> Architecture: ...

    def read(self, address: int, size: int) -> bytes: ...
    def read_u64(self, address: int) -> int: ...
    def type(self, spec: str) -> Type: ...
    def offsetof(self, t: Type | str, member: str) -> int: ...
    def value(self, type_: Type | str, value: int) -> Object: ...
    def pointer(self, type_: Type | str, address: int) -> Object: ...
    def object_at(self, type_: Type | str, address: int) -> Object: ...
    def find_symbol(self, address: int) -> Symbol | None: ...


class ObjectError(KdumpyError):
    """A member, index or dereference that makes no sense for the object's type."""


class MemberError(ObjectError, AttributeError):
    """``obj.name`` for a member the type lacks (a kernel older or newer than a helper
    knows): an AttributeError for ``getattr``/``hasattr``, and a KdumpyError so a command
    that meets it ends in one line, not a traceback."""


class Object:
    """A typed view of kernel memory (or a computed value)."""

    __slots__ = ("prog_", "type_", "address_", "_value", "bit_offset_", "bit_size_")

    def __init__(
        self,
        prog: ObjectProgram,
        type_: Type,
        address: int | None = None,
        value: int | None = None,
        bit_offset: int = 0,
        bit_size: int = 0,
    ) -> None:
        self.prog_ = prog
        self.type_ = type_
        self.address_ = address
        self._value = value
        self.bit_offset_ = bit_offset
        self.bit_size_ = bit_size

    # -- reading ----------------------------------------------------------------------------
    def read_bytes_(self) -> bytes:
        if self.address_ is None:
            raise ObjectError("object has no address")
        return self.prog_.read(self.address_, self.type_.size)

    def value_(self) -> Any:
        """The Python value: int for integers, enums and pointers; float; bytes for
        arrays of char; a list for other arrays; a dict for structs."""
        if self._value is not None:
            return self._value
        t = self.type_.strip()
        if isinstance(t, IntType | EnumType | PointerType):
            return self._read_int(t)
        if isinstance(t, FloatType):
            fmt = "<d" if t.size == 8 else "<f"
            return struct.unpack(fmt, self.prog_.read(self._addr(), t.size))[0]
        if isinstance(t, ArrayType):
            return [self[i].value_() for i in range(t.length)]
        if isinstance(t, StructType):
            return {m: self.member_(m).value_() for m in self.member_names_()}
        raise ObjectError(f"cannot read a value of type {self.type_.spelling()}")

    def _addr(self) -> int:
        if self.address_ is None:
            raise ObjectError(f"{self.type_.spelling()} value has no address")
        return self.address_

    def _read_int(self, t: Type) -> int:
        size = t.size or 8
        signed = getattr(t, "signed", False)
        if self.bit_size_:
            first = self.bit_offset_ // 8
            span = (self.bit_offset_ % 8 + self.bit_size_ + 7) // 8
            raw = int.from_bytes(self.prog_.read(self._addr() + first, span), "little")
            value = (raw >> (self.bit_offset_ % 8)) & ((1 << self.bit_size_) - 1)
            if signed and value >> (self.bit_size_ - 1):
                value -= 1 << self.bit_size_
            return value
        fmt = _INT_FORMATS.get(size)
        if fmt is None:
            return int.from_bytes(self.prog_.read(self._addr(), size), "little", signed=signed)
        if signed:
            fmt = fmt.lower()
        return int(struct.unpack("<" + fmt, self.prog_.read(self._addr(), size))[0])

    def __int__(self) -> int:
        value = self.value_()
        if not isinstance(value, int):
            raise ObjectError(f"{self.type_.spelling()} is not an integer")
        return value

    def __index__(self) -> int:
        return self.__int__()

    def __bool__(self) -> bool:
        return bool(self.__int__())

    def string_(self, limit: int = 4096) -> bytes:
        """A C string: a char array (up to its NUL) or a char pointer's target."""
        t = self.type_.strip()
        if isinstance(t, ArrayType):
            data = self.read_bytes_()
            return data.split(b"\0", 1)[0]
        if isinstance(t, PointerType):
            address = int(self)
            if not address:
                return b""
            return self.prog_.memory.cstring(address, limit)
        raise ObjectError(f"{self.type_.spelling()} is not a string")

    # -- navigation ---------------------------------------------------------------------
    def member_names_(self) -> list[str]:
        t = self.type_.strip()
        if isinstance(t, PointerType):
            t = t.target.strip()
        if not isinstance(t, StructType):
            return []
        return [m.name for m in t.members if m.name]

    def has_member_(self, name: str) -> bool:
        t = self.type_.strip()
        if isinstance(t, PointerType):
            t = t.target.strip()
        return isinstance(t, StructType) and t.member(name) is not None

    def member_(self, name: str) -> Object:
        """A member (``a.b``; through a pointer like ``a->b``); dots allowed: ``"a.b.c"``."""
        obj = self
        for part in name.split("."):
            obj = obj._member(part)
        return obj

    def _member(self, name: str) -> Object:
        t = self.type_.strip()
        base = self
        if isinstance(t, PointerType):
            base = self.deref_()
            t = base.type_.strip()
        if not isinstance(t, StructType):
            raise ObjectError(f"{self.type_.spelling()} has no member '{name}' (not a struct)")
        found = t.member(name)
        if found is None:
            raise ObjectError(f"{t.spelling()} has no member '{name}'")
        member, bit_offset = found
        if member.bit_size:
            # Bit fields keep the struct's address and their bit offset within it.
            return Object(self.prog_, member.type, base._addr(), None, bit_offset, member.bit_size)
        return Object(self.prog_, member.type, base._addr() + bit_offset // 8)

    def __getattr__(self, name: str) -> Object:
        if name.startswith("__") or name.endswith("_"):
            raise AttributeError(name)
        try:
            return self.member_(name)
        except ObjectError as exc:
            raise MemberError(str(exc)) from None

    def __getitem__(self, index: int) -> Object:
        t = self.type_.strip()
        if isinstance(t, ArrayType):
            elem = t.element
            return Object(self.prog_, elem, self._addr() + index * elem.strip().size)
        if isinstance(t, PointerType):
            elem = t.target
            size = elem.strip().size or 1
            return Object(self.prog_, elem, int(self) + index * size)
        raise ObjectError(f"cannot index {self.type_.spelling()}")

    def deref_(self) -> Object:
        t = self.type_.strip()
        if not isinstance(t, PointerType):
            raise ObjectError(f"cannot dereference {self.type_.spelling()}")
        address = int(self)
        if address == 0:
            raise ObjectError(f"NULL {self.type_.spelling()} dereference")
        return Object(self.prog_, t.target, address)

    def address_of_(self) -> Object:
        """``&object`` as a pointer value."""
        return Object(self.prog_, pointer_to(self.type_), value=self._addr())

    def cast_(self, type_: Type | str) -> Object:
        """Reinterpret: a pointer or integer value as another pointer/integer type
        (truncated to a narrower integer, and sign-extended, as C converts), or the same
        memory as another type."""
        t = self.prog_.type(type_) if isinstance(type_, str) else type_
        s = t.strip()
        if isinstance(s, PointerType | IntType | EnumType):
            value = int(self)
            if isinstance(s, IntType) and s.size < 8:
                bits = 8 * s.size
                value &= (1 << bits) - 1
                if s.signed and value >> (bits - 1):
                    value -= 1 << bits
            return Object(self.prog_, t, value=value)
        return Object(self.prog_, t, self._addr())

    def container_of_(self, type_: Type | str, member: str) -> Object:
        """The structure that embeds this object (``self`` is ``&outer->member``)."""
        t = self.prog_.type(type_) if isinstance(type_, str) else type_
        s = t.strip()
        if not isinstance(s, StructType):
            raise ObjectError(f"container_of: {t.spelling()} is not a struct")
        offset = self.prog_.offsetof(s, member)
        address = int(self) if isinstance(self.type_.strip(), PointerType) else self._addr()
        return Object(self.prog_, pointer_to(t), value=address - offset)

    # -- misc -------------------------------------------------------------------------------
    def is_null_(self) -> bool:
        return int(self) == 0

    def is_function_(self) -> bool:
        return isinstance(self.type_.strip(), FunctionType)

    def __repr__(self) -> str:
        where = f"@{self.address_:#x}" if self.address_ is not None else f"={self._value!r}"
        return f"Object({self.type_.spelling()} {where})"
