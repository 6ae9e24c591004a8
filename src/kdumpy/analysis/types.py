"""C types of the crashed kernel, as the debugger core sees them.

Types come from BTF (see :mod:`kdumpy.analysis.btf`); they are built lazily because
kernel structures point at each other (``task_struct`` -> ``mm_struct`` -> ...).
Qualifiers (const, volatile, restrict, type tags) are dropped: a post-mortem reader
never writes, so they change nothing but the printed name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property


class Type:
    """Base of every type: a kind, a name ("" when anonymous) and a size in bytes."""

    kind = "void"

    def __init__(self, name: str = "", size: int = 0) -> None:
        self.name = name
        self.size = size

    def strip(self) -> Type:
        """The type behind typedefs."""
        return self

    def spelling(self) -> str:
        """How C spells the type (``struct task_struct``, ``unsigned long``)."""
        return self.name or "void"

    def __repr__(self) -> str:
        return f"<{self.spelling()}>"


class VoidType(Type):
    kind = "void"


class IntType(Type):
    kind = "int"

    def __init__(self, name: str, size: int, signed: bool, is_bool: bool = False) -> None:
        super().__init__(name, size)
        self.signed = signed
        self.is_bool = is_bool


class FloatType(Type):
    kind = "float"


class PointerType(Type):
    kind = "pointer"

    def __init__(self, target: Callable[[], Type], size: int = 8) -> None:
        super().__init__("", size)
        self._target = target

    @cached_property
    def target(self) -> Type:
        # Resolved on first use: BTF types refer to each other in cycles.
        return self._target()

    def spelling(self) -> str:
        target = self.target
        if isinstance(target, FunctionType):
            return f"{target.ret.spelling()} (*)()"
        if isinstance(target, ArrayType):  # C puts the * inside: char (*)[16]
            return f"{target.element.spelling()} (*)[{target.length}]"
        return f"{target.spelling()} *"


class ArrayType(Type):
    kind = "array"

    def __init__(self, element: Callable[[], Type], length: int) -> None:
        super().__init__("", 0)
        self._element = element
        self.length = length

    @cached_property
    def element(self) -> Type:
        # Resolved on first use: BTF types refer to each other in cycles.
        return self._element()

    @property
    def size(self) -> int:
        return self.length * self.element.strip().size

    @size.setter
    def size(self, value: int) -> None:  # set by Type.__init__, recomputed on read
        pass

    def spelling(self) -> str:
        return f"{self.element.spelling()} [{self.length}]"


@dataclass
class Member:
    """A structure member: bit offset from the start, bit size when it is a bit field."""

    name: str
    type_fn: Callable[[], Type]
    bit_offset: int
    bit_size: int = 0
    _type: Type | None = field(default=None, repr=False)

    @property
    def type(self) -> Type:
        if self._type is None:
            self._type = self.type_fn()
        return self._type

    @property
    def offset(self) -> int:
        return self.bit_offset // 8


class StructType(Type):
    """``struct`` or ``union`` (``kind`` tells which); members parsed on first use."""

    def __init__(
        self, kind: str, name: str, size: int, members: Callable[[], list[Member]] | None
    ) -> None:
        super().__init__(name, size)
        self.kind = kind
        self._members_fn = members
        self._members: list[Member] | None = None
        self._index: dict[str, tuple[Member, int]] | None = None

    @property
    def is_complete(self) -> bool:
        return self._members_fn is not None

    @property
    def members(self) -> list[Member]:
        if self._members is None:
            self._members = self._members_fn() if self._members_fn else []
        return self._members

    def spelling(self) -> str:
        return f"{self.kind} {self.name or '{...}'}"

    def member(self, name: str) -> tuple[Member, int] | None:
        """``(member, bit offset from this struct's start)``, looking through anonymous
        structs and unions like C does; None if there is no such member."""
        if self._index is None:
            self._index = dict(self._flatten(0))
        return self._index.get(name)

    def _flatten(self, base: int) -> Iterator[tuple[str, tuple[Member, int]]]:
        for m in self.members:
            if m.name:
                yield m.name, (m, base + m.bit_offset)
            else:
                inner = m.type.strip()
                if isinstance(inner, StructType):
                    yield from inner._flatten(base + m.bit_offset)


class EnumType(Type):
    kind = "enum"

    def __init__(self, name: str, size: int, signed: bool, values: list[tuple[str, int]]) -> None:
        super().__init__(name, size)
        self.signed = signed
        self.values = values

    def spelling(self) -> str:
        return f"enum {self.name or '{...}'}"

    def name_of(self, value: int) -> str | None:
        for n, v in self.values:
            if v == value:
                return n
        return None


class TypedefType(Type):
    kind = "typedef"

    def __init__(self, name: str, target: Callable[[], Type]) -> None:
        super().__init__(name, 0)
        self._target = target

    @cached_property
    def target(self) -> Type:
        # Resolved on first use: BTF types refer to each other in cycles.
        return self._target()

    @property
    def size(self) -> int:
        return self.target.size

    @size.setter
    def size(self, value: int) -> None:
        pass

    def strip(self) -> Type:
        return self.target.strip()


class FunctionType(Type):
    kind = "function"

    def __init__(self, name: str, ret: Callable[[], Type], params: list[str]) -> None:
        super().__init__(name, 0)
        self._ret = ret
        self.params = params

    @property
    def ret(self) -> Type:
        return self._ret()


def pointer_to(target: Type) -> PointerType:
    """A pointer type built on the fly (for casts and ``&object``)."""
    return PointerType(lambda: target)


def array_of(element: Type, length: int) -> ArrayType:
    return ArrayType(lambda: element, length)


U8 = IntType("unsigned char", 1, False)
U16 = IntType("unsigned short", 2, False)
U32 = IntType("unsigned int", 4, False)
U64 = IntType("unsigned long", 8, False)
S32 = IntType("int", 4, True)
S64 = IntType("long", 8, True)
CHAR = IntType("char", 1, True)
VOID = VoidType()
