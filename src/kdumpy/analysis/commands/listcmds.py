"""list, tree: walk a kernel linked list or search tree from an address."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from kdumpy.analysis.commands import parse_number, resolve_address
from kdumpy.analysis.commands.addrcmds import address_code
from kdumpy.analysis.commands.base import Arg, CommandError, Session, command
from kdumpy.analysis.commands.output import RADIX_ARGS, member_lines
from kdumpy.analysis.helpers.lists import walk
from kdumpy.analysis.helpers.trees import (
    maple_entries,
    rbtree_inorder,
    rbtree_preorder,
    xarray_entries,
)
from kdumpy.analysis.printing import format_value
from kdumpy.analysis.program import Program
from kdumpy.errors import KdumpyError

_PRELUDE = "# prog = kdumpy.open(DUMP)\n"


def _offset(prog: Program, spec: str | None) -> tuple[int, str | None]:
    """``-o``: a number, or ``struct.member`` (the offset of the member and the struct)."""
    if not spec:
        return 0, None
    name, dot, member = spec.partition(".")
    if not dot:
        return parse_number(spec) if not spec.isdigit() else int(spec), None
    return prog.offsetof(f"struct {name}", member), name


def _members(prog: Program, spec: str | None, address: int, default: str | None,
             radix: int = 10) -> str:  # fmt: skip
    """``-s struct[.member,member]``: the structure (or members) at an entry."""
    if not spec:
        return ""
    name, _, members = spec.partition(".")
    obj = prog.object_at(f"struct {name or default}", address)
    if not members:
        return f"struct {name} {format_value(obj, 0, radix)}\n"
    return member_lines(obj, members.split(","), radix)


def _list_python(opts: argparse.Namespace) -> str:
    walk_name = "list_for_each_reverse" if opts.reverse else "list_for_each"
    stop = f"    if node == {parse_number(opts.end):#x}:\n        break\n" if opts.end else ""
    return _PRELUDE + (
        f"from kdumpy.analysis.helpers.lists import {walk_name}\n"
        f"head = prog.object_at('struct list_head', {address_code(opts.start)})\n"
        f"offset = {opts.offset!r}  # a number, or prog.offsetof('struct NAME', 'MEMBER')\n"
        f"for node in {walk_name}(head):\n"
        f"{stop}"
        "    print(hex(node))  # node - offset: the entry\n"
    )


@command("list", "linked list",
         Arg("-o", dest="offset", metavar="offset|struct.member",
             help="where the next pointer (list_head) sits in each entry"),
         Arg("-s", "-S", dest="show", metavar="struct[.member[,member]]",
             help="show each entry"),
         Arg("-l", dest="node_offset", metavar="offset|struct.member",
             help="with -s, instead of -o: where the list_head sits in each entry (the "
                  "list's node addresses are printed, the entries shown)"),
         Arg("-O", dest="head_offset", metavar="offset|struct.member",
             help="with -h: start is a structure holding the list head at this offset"),
         Arg("-H", dest="head", action="store_true", help="start is a list_head list head"),
         Arg("-h", dest="embedded", action="store_true",
             help="start is an entry holding a list_head at the offset"),
         Arg("-r", dest="reverse", action="store_true",
             help="follow list_head.prev (backwards); implies -h unless -H is given"),
         Arg("-e", dest="end", metavar="address", help="stop before this node address"),
         Arg("words", nargs="+", metavar="[struct.member] start"), *RADIX_ARGS,
         usage="list [-o offset|struct.member | -l offset|struct.member] [-s struct[.member]] "
               "[-H|-h [-O offset]] [-r] [-e end] [-x|-d] [struct.member] start",
         python=lambda o: _list_python(argparse.Namespace(
             start=o.words[-1], offset=o.offset or (o.words[0] if len(o.words) > 1 else None),
             reverse=o.reverse, end=o.end)),
         )  # fmt: skip
def cmd_list(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    if len(opts.words) > 2:
        raise CommandError("give at most an offset and a start address")
    spec = opts.offset or (opts.words[0] if len(opts.words) == 2 else None)
    if opts.node_offset and (spec or not opts.show):
        raise CommandError("-l goes with -s, and not with -o")
    if opts.head_offset and not opts.embedded:
        raise CommandError("-O goes with -h")
    offset, struct = _offset(prog, spec)
    node_offset, node_struct = _offset(prog, opts.node_offset)
    start = resolve_address(session, opts.words[-1])
    end = parse_number(opts.end) if opts.end else None
    what = f"list at {start:#x}"
    embedded = opts.embedded or (opts.reverse and not opts.head)  # as crash: -r means -h
    if opts.head_offset:  # -h -O: a structure holding the head, walked as -H
        start += _offset(prog, opts.head_offset)[0]
        embedded = False
    if opts.head or embedded or opts.head_offset:
        head = start + (offset if embedded else 0)
        link = 8 if opts.reverse else 0  # list_head.prev follows .next

        def step(node: int) -> int:
            return prog.read_u64(node + link)

        entries = [start] if embedded else []
        entries += [n - offset for n in _until(walk(step(head), step, head, what), end)]
    else:
        nodes = walk(start, lambda e: prog.read_u64(e + offset), 0, what)
        entries = list(_until(nodes, end))
        entries = entries[: entries.index(start, 1)] if start in entries[1:] else entries
    out = []
    for entry in entries:
        out.append(f"{entry:x}\n")
        shown = entry - node_offset  # -l: the entry holding this node
        out.append(_members(prog, opts.show, shown, struct or node_struct, opts.radix))
    return "".join(out)


def _until(nodes: Iterator[int], end: int | None) -> Iterator[int]:
    """The nodes before ``end`` (``list -e``): all of them when it is None."""
    for node in nodes:
        if node == end:
            return
        yield node


_TREE_KINDS = ("rbtree", "radix", "xarray", "maple")


def _tree_kind(word: str) -> str:
    """``-t``: a kind or its abbreviation (``rb``, ``ra``, ``x``, ``m``)."""
    found = [kind for kind in _TREE_KINDS if kind.startswith(word)] if word else []
    if len(found) != 1:
        raise argparse.ArgumentTypeError(f"invalid tree kind: {word}")
    return found[0]


@command("tree", "search tree",
         Arg("-t", dest="kind", type=_tree_kind, default="rbtree",
             help="the tree's kind: rbtree, radix, xarray or maple (rb, ra, x, m)"),
         Arg("-r", dest="root_offset", metavar="offset|struct.member",
             help="the address given is a structure holding the root at this offset"),
         Arg("-o", dest="offset", metavar="offset|struct.member",
             help="rbtree: where the rb_node sits in each entry"),
         Arg("-s", "-S", dest="show", metavar="struct[.member[,member]]",
             help="show each entry"),
         Arg("-l", dest="linear", action="store_true", help="rbtree: in order (else root first)"),
         Arg("root", metavar="address|symbol", help="the rb_root, xarray or maple_tree"),
         *RADIX_ARGS,
         usage="tree [-t rbtree|radix|xarray|maple] [-r offset] [-o struct.member] [-s struct] "
               "[-l] [-x|-d] root",
         python=lambda o: _PRELUDE + (
             "from kdumpy.analysis.helpers.trees import rbtree_inorder, xarray_entries,"
             " maple_entries\n"
             f"# -t {o.kind}: rbtree_inorder(prog, int(root.rb_node)),"
             " xarray_entries(prog, int(xa.xa_head)),\n"
             "# maple_entries(prog, int(mt.ma_root)); entry - offset is the structure\n"
         ))  # fmt: skip
def cmd_tree(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    offset, struct = _offset(prog, opts.offset)
    root = resolve_address(session, opts.root) + _offset(prog, opts.root_offset)[0]
    try:
        first = prog.read_u64(root)
    except KdumpyError as exc:
        raise CommandError(str(exc)) from None
    if opts.kind == "rbtree":
        order = rbtree_inorder if opts.linear else rbtree_preorder
        entries = [n - offset for n in order(prog, first)]
    elif opts.kind == "maple":
        ma_root = prog.object_at("struct maple_tree", root).ma_root
        entries = [e for _a, _b, e in maple_entries(prog, int(ma_root))]
    else:  # radix trees are XArrays since 4.20: xa_head follows the lock and flags
        head = prog.object_at("struct xarray", root).xa_head
        entries = [e for _i, e in xarray_entries(prog, int(head))]
    return "".join(f"{e:x}\n" + _members(prog, opts.show, e, struct, opts.radix) for e in entries)
