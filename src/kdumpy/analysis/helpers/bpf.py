"""Loaded BPF programs and maps (``bpf``): the ``prog_idr`` and ``map_idr`` IDRs."""

from __future__ import annotations

from kdumpy.analysis.helpers.trees import xarray_entries
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.errors import KdumpyError


def _idr(prog: Program, name: str, struct: str) -> list[Object]:
    head = int(prog.object(name).idr_rt.xa_head)
    return [prog.pointer(struct, entry) for _i, entry in xarray_entries(prog, head)]


def bpf_progs(prog: Program) -> list[Object]:
    """Every loaded ``struct bpf_prog *``, by id."""
    return _idr(prog, "prog_idr", "struct bpf_prog")


def bpf_maps(prog: Program) -> list[Object]:
    """Every ``struct bpf_map *``, by id."""
    return _idr(prog, "map_idr", "struct bpf_map")


def enum_name(prog: Program, enum: str, value: int, prefix: str) -> str:
    """An enumerator's name without its prefix (``BPF_PROG_TYPE_KPROBE`` -> ``KPROBE``)."""
    try:
        name = prog.type(f"enum {enum}").strip().name_of(value)  # type: ignore[attr-defined]
    except KdumpyError:
        name = None
    return name.removeprefix(prefix) if name else str(value)


def used_map_ids(bpf_prog: Object) -> list[int]:
    """Ids of the maps a program uses."""
    aux = bpf_prog.aux
    count = min(int(aux.used_map_cnt), 64)
    return [int(aux.used_maps[i].id) for i in range(count)]
