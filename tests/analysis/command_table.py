"""The command table of docs/commands.md: every command of crash 8.0.2 and of drgn
0.3.0's crash mode, whether kdumpy has it, the options drgn's crash mode takes that
kdumpy does not, and the oracle tests that prove kdumpy's answers on the lab dumps.

    python3 tests/analysis/command_table.py > docs/commands.md

kdumpy's side is read from its command registry and drgn's from drgn's own command
namespace, so neither can be copied wrong; crash's list is its ``help`` screen (crash
8.0.2 on the 6.1 lab dump), and the oracle tests are named here by hand (``ORACLES``).
``tests/analysis/test_command_table.py`` checks that the document is this output, and
that every oracle test named exists.
"""

from __future__ import annotations

import argparse
import sys

import drgn.commands._crash  # noqa: F401  (registers drgn's crash commands)
from drgn.commands._crash.common import CRASH_COMMAND_NAMESPACE

from kdumpy.analysis.commands import ALIASES, command_names, load_commands, lookup

# crash 8.0.2's `help` screen (gdb, mach, alias, extend, repeat, wr, sbitmapq included).
CRASH_802 = (
    "*", "alias", "ascii", "bpf", "bt", "btop", "dev", "dis", "eval", "exit", "extend",
    "files", "foreach", "fuser", "gdb", "help", "ipcs", "irq", "kmem", "list", "log", "mach",
    "mod", "mount", "net", "p", "ps", "pte", "ptob", "ptov", "q", "rd", "repeat", "runq",
    "sbitmapq", "search", "set", "sig", "struct", "swap", "sym", "sys", "task", "timer",
    "tree", "union", "vm", "vtop", "waitq", "whatis", "wr",
)  # fmt: skip

_D = "test_crash_commands_drgn.py"
_F = "test_flags_against_oracles.py"
_C = "test_against_crash.py"
_P = "test_ps_drgn.py"
_O = "test_crash_options_drgn.py"
_X = "test_crash_options_crash.py::test_options_match_crash"
_M = "test_more_crash_options.py"
# The VM tests that compare kdumpy's command (or the helper it prints) with drgn's crash
# mode, drgn's helpers, crash 8.0.2 or addr2line on the lab dumps (tests/analysis/FILE).
ORACLES: dict[str, tuple[str, ...]] = {
    "*": (f"{_D}::test_pointer_to_matches_drgn",),
    "ascii": (f"{_D}::test_calculator_and_bpf_match_drgn",),
    "bpf": (f"{_D}::test_calculator_and_bpf_match_drgn",
            f"{_M}::test_bpf_p_m_s_list_the_programs_and_maps_drgn_finds"),
    "bt": ("test_cli.py::test_crash_bt_agrees_with_drgn",
           f"{_D}::test_bt_of_a_cpu_and_the_panic_task_match_drgn",
           "test_bt_frames.py::test_frame_words_match_drgn",
           "test_bt_frames.py::test_exception_frames_match_drgn",
           f"{_F}::test_bt_frame_words_match_crash", f"{_F}::test_bt_exception_frames_match_crash",
           f"{_F}::test_bt_source_lines_match_crash",
           f"{_F}::test_bt_source_lines_match_addr2line",
           "test_irq_stack.py::test_crash_bt_marks_the_irq_stack_and_the_exception_frame",
           f"{_M}::test_bt_s_names_each_frame_as_drgn_symbolizes_it", f"{_M}::test_bt_s_is_crashs"),
    "btop": (f"{_D}::test_address_conversion_matches_drgn",
             f"{_C}::test_pte_ptob_btop_match_crash"),
    "dev": (f"{_D}::test_dev_matches_drgn", f"{_O}::test_dev_i_matches_drgn",
            f"{_O}::test_dev_p_matches_drgn", f"{_O}::test_dev_d_matches_drgn", _X),
    "dis": (f"{_F}::test_dis_source_lines_match_crash",
            f"{_F}::test_dis_source_lines_match_addr2line"),
    "eval": (f"{_D}::test_calculator_and_bpf_match_drgn",),
    "files": (f"{_D}::test_files_rows_match_drgn",
              "test_against_drgn.py::test_open_files_match_drgn",
              f"{_O}::test_files_options_match_drgn", f"{_O}::test_files_p_matches_drgn", _X),
    "foreach": ("test_foreach_scale.py::test_foreach_bt_covers_every_task_with_drgns_frames",
                f"{_D}::test_foreach_vm_matches_drgn_helpers",
                f"{_P}::test_foreach_passes_ps_options_like_drgn"),
    "fuser": (f"{_D}::test_fuser_matches_drgn_helpers",),
    "ipcs": (f"{_D}::test_kernel_tables_match_drgn", f"{_O}::test_ipcs_n_matches_drgn", _X),
    "irq": (f"{_D}::test_table_rows_match_drgn", f"{_O}::test_irq_d_matches_drgn", _X),
    "kmem": (f"{_D}::test_table_rows_match_drgn", f"{_D}::test_kmem_address_matches_drgn",
             f"{_D}::test_kmem_g_matches_drgn", f"{_D}::test_kmem_p_matches_drgn_pages",
             f"{_D}::test_kmem_S_slabs_hold_every_free_object_drgn_counts",
             f"{_D}::test_kmem_statistics_match_drgn", "test_kmem.py::test_kmem_figures_match_drgn",
             "test_kmem.py::test_kmem_layout_matches_crash", f"{_M}::test_kmem_n_is_crashs_text",
             f"{_M}::test_kmem_n_rows_match_drgn", f"{_M}::test_kmem_F_is_crashs_text",
             f"{_M}::test_kmem_F_lists_the_pages_drgn_lists", f"{_M}::test_kmem_m_is_crashs_text",
             f"{_M}::test_kmem_m_pages_and_flags_match_drgn"),
    "list": (f"{_D}::test_list_and_tree_match_drgn",),
    "log": (f"{_D}::test_log_matches_drgn", "test_cli.py::test_crash_log_is_drgns_dmesg",
            f"{_F}::test_log_levels_match_crash", f"{_F}::test_log_levels_match_drgn",
            f"{_F}::test_log_dates_match_crash"),
    "mod": (f"{_D}::test_mod_rows_match_drgn", f"{_D}::test_mod_t_matches_drgn",
            f"{_C}::test_mod_table_matches_crash",
            f"{_M}::test_mod_S_would_load_the_files_whose_build_ids_drgn_reads"),
    "mount": (f"{_D}::test_table_rows_match_drgn",),
    "net": (f"{_D}::test_kernel_tables_match_drgn", f"{_O}::test_net_a_matches_drgn", _X),
    "p": (f"{_D}::test_whatis_and_p_match_drgn", f"{_D}::test_hex_values_match_drgn",
          "test_print_expr.py::test_expressions_match_drgn",
          "test_print_expr.py::test_printed_like_crash"),
    "ps": (f"{_D}::test_ps_rows_match_drgn", f"{_D}::test_ps_summary_matches_drgn",
           "test_cli.py::test_crash_ps_agrees_with_drgn", f"{_P}::test_parents_match_drgn",
           f"{_P}::test_children_match_drgn", f"{_P}::test_times_match_drgn",
           f"{_P}::test_last_run_matches_drgn", f"{_P}::test_cpu_blocks_match_drgn",
           f"{_P}::test_arguments_match_drgn", f"{_P}::test_thread_groups_match_drgn",
           f"{_P}::test_rlimits_match_drgn", f"{_P}::test_kstackp_is_drgns_saved_stack_pointer",
           f"{_P}::test_no_header_matches_drgn", f"{_P}::test_arm64_matches_drgn",
           f"{_P}::test_kstackp_and_times_match_crash", f"{_P}::test_views_match_crash",
           f"{_P}::test_children_match_crash", f"{_P}::test_last_run_matches_crash"),
    "pte": (f"{_C}::test_pte_ptob_btop_match_crash",),
    "ptob": (f"{_D}::test_ptob_matches_drgn", f"{_C}::test_pte_ptob_btop_match_crash"),
    "ptov": (f"{_D}::test_address_conversion_matches_drgn",),
    "rd": (f"{_F}::test_rd_symbolic_matches_crash", f"{_F}::test_rd_symbolic_names_drgn_symbols",
           f"{_D}::test_rd_formats_match_drgn",
           f"{_M}::test_rd_S_names_the_same_slab_caches_as_drgn",
           f"{_M}::test_rd_u_reads_the_crashed_tasks_user_memory_as_drgn",
           f"{_M}::test_rd_r_writes_the_bytes_drgn_writes",
           f"{_M}::test_rd_S_names_the_same_slab_caches_as_crash"),
    "runq": (f"{_D}::test_runq_matches_drgn",
             "test_crash_kinds.py::test_runqueues_and_free_memory_match_drgn",
             f"{_M}::test_runq_g_matches_drgn"),
    "search": (f"{_D}::test_search_matches_drgn", f"{_D}::test_search_string_matches_drgn",
               f"{_D}::test_search_of_the_stacks_matches_drgn",
               f"{_O}::test_search_x_matches_drgn", _X),
    "set": (f"{_D}::test_set_names_drgns_task", f"{_D}::test_set_cpu_and_panic_match_drgn"),
    "sig": (f"{_D}::test_sig_matches_drgn", f"{_D}::test_sig_list_set_and_group_match_drgn"),
    "struct": (f"{_D}::test_struct_members_match_drgn", f"{_D}::test_hex_values_match_drgn",
               f"{_D}::test_struct_count_and_offset_match_drgn",
               f"{_F}::test_struct_offsets_match_crash",
               f"{_F}::test_struct_offsets_match_drgn"),
    "swap": (f"{_D}::test_table_rows_match_drgn",),
    "sym": (f"{_D}::test_sym_matches_drgn", f"{_D}::test_sym_search_and_neighbours_match_drgn"),
    "sys": ("test_cli.py::test_crash_sys_agrees_with_drgn", f"{_C}::test_sys_fields_match_crash"),
    "task": (f"{_D}::test_task_members_match_drgn", f"{_D}::test_hex_values_match_drgn"),
    "timer": (f"{_D}::test_kernel_tables_match_drgn", f"{_O}::test_timer_r_matches_drgn", _X),
    "tree": (f"{_D}::test_list_and_tree_match_drgn",
             f"{_F}::test_pid_xarray_and_cfs_rbtree_match_drgn"),
    "union": (f"{_D}::test_union_member_matches_drgn",),
    "vm": (f"{_D}::test_vm_matches_drgn",),
    "vtop": (f"{_D}::test_address_conversion_matches_drgn", f"{_M}::test_vtop_u_k_c_match_drgn"),
    "waitq": (f"{_D}::test_waitq_matches_drgn",),
    "whatis": (f"{_D}::test_whatis_and_p_match_drgn",),
}  # fmt: skip
# Commands of the shell itself, with nothing from the dump to compare.
SHELL = {"help": "the registry's own text", "q": "ends the session",
         "py": "runs Python (its API calls are the helpers the other rows prove)"}  # fmt: skip
# drgn-only options with no meaning here: --drgn prints drgn code (kdumpy's --python
# prints kdumpy's); ``drgn`` switches drgn's shell to Python (kdumpy: ``py``).
DRGN_ONLY = {"--drgn"}


def kdumpy_commands() -> dict[str, set[str]]:
    """Every name (and alias) kdumpy's shell takes, with its flags."""
    load_commands()
    out = {}
    for name in command_names():
        cmd = lookup(name)
        assert cmd is not None
        out[name] = set(cmd.parser.flags) | {"--python"}
        if cmd.parser.passthrough:  # drgn names passing options on "-option" (foreach)
            out[name].add("-option")
    out["*"] = out["struct"]  # "*type addr" is struct's spelling (the dispatcher's)
    return out


def drgn_commands() -> dict[str, set[str]]:
    """drgn 0.3.0's crash mode: each command's option strings, from its parser."""
    out = {}
    for name, cmd in CRASH_COMMAND_NAMESPACE._commands.items():
        parser: argparse.ArgumentParser | None = getattr(cmd, "_parser", None)
        actions = parser._actions if parser is not None else []
        out[name] = {flag for a in actions for flag in a.option_strings if flag.startswith("-")}
    return out


def _mark(yes: bool) -> str:
    return "yes" if yes else "-"


def render() -> str:
    ours, drgns = kdumpy_commands(), drgn_commands()
    names = sorted(set(CRASH_802) | set(drgns) | set(ours), key=lambda n: (n != "*", n))
    lines = [
        "# Commands: kdumpy, crash 8.0.2 and drgn 0.3.0's crash mode\n",
        "Generated by `python3 tests/analysis/command_table.py > docs/commands.md` from",
        "kdumpy's command registry and drgn's command namespace",
        "(`tests/analysis/test_command_table.py` fails when this file is stale).",
        '"drgn options missing" lists what drgn\'s crash mode takes and kdumpy does not',
        "(`--drgn` aside: kdumpy's `--python` prints kdumpy's code instead).  The oracle",
        "tests (in `tests/analysis/`, VM-marked, on the cached lab dumps of 5.10, 6.1,",
        "6.12 and 7) compare kdumpy's output with drgn's crash mode, drgn's helpers,",
        "crash 8.0.2 (5.10 and 6.1: it cannot read 6.12 or 7) or addr2line.\n",
        "| command | crash 8.0.2 | drgn crash mode | kdumpy | drgn options missing "
        "| oracle tests |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        have = name in ours
        missing = sorted(drgns.get(name, set()) - ours.get(name, set()) - DRGN_ONLY) if have else []
        if name in ORACLES:
            proof = "<br>".join(f"`{t}`" for t in ORACLES[name])
        elif have:
            proof = SHELL.get(name, "") or "alias of " + _alias_of(name)
        else:
            proof = ""
        cell = " ".join(f"`{m}`" for m in missing) or ("" if not have else "none")
        shown_name = "\\*" if name == "*" else name
        lines.append(f"| {shown_name} | {_mark(name in CRASH_802)} | {_mark(name in drgns)} "
                     f"| {_mark(have)} | {cell} | {proof} |")  # fmt: skip
    have = [n for n in names if n in ours]
    lines.append(
        f"\n{len(have)} of {len(names)} names; crash 8.0.2 has {len(CRASH_802)}, drgn's crash "
        f"mode {len(drgns)}, kdumpy {len(ours)} (aliases included)."
    )
    return "\n".join(lines) + "\n"


def _alias_of(name: str) -> str:
    return f"`{ALIASES[name]}`" if name in ALIASES else "?"


if __name__ == "__main__":
    sys.stdout.write(render())
