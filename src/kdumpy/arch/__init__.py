"""The architecture layer: every machine question answered in one place.

A dump picks its :class:`Architecture` from its ELF machine (``e_machine``), the machine
name in a kdump-compressed header (``utsname.machine``), or, lacking both, from the
VMCOREINFO entries only one architecture writes.  The layer reads the dump through the
small :class:`DumpMemory` protocol and imports nothing from kdumpy above it.

Map (module: what it answers):

* :mod:`kdumpy.arch.base`: the protocols (:class:`DumpMemory`, :class:`Translator`), the
  :class:`Architecture` record, :class:`RegisterLayout`, :class:`TranslationError`.
* :mod:`kdumpy.arch.select`: which :class:`Architecture` a dump has, and the names the
  layers above import.
* :mod:`kdumpy.arch.stack`, ``kdumpy.arch.<machine>.stack`` and
  :mod:`kdumpy.arch.stack_select`: what ``bt`` needs of a machine (its unwinder's step,
  exception frames), kept out of :class:`Architecture` so that reading and collecting a
  dump do not load every machine's unwinder.
* ``kdumpy.arch.<machine>`` (``x86_64``, ``arm64``): ``.machine`` the machine's
  :class:`Architecture`;
  ``.translate`` kernel virtual -> physical from the page tables and VMCOREINFO;
  ``.registers`` the ``NT_PRSTATUS`` register layout and names; ``.unwind`` the
  machine's stack-unwinding steps (x86_64 also ``.orc`` and ``.unwind_fp``);
  ``.frames`` how ``bt`` shows and finds exception frames.
* :mod:`kdumpy.arch.kdump` and ``kdumpy.arch.<machine>.kdump`` (also ``ppc64le``, ``s390x``,
  ``riscv64``, whose dumps kdumpy does not read): kdump's facts per machine (crashkernel
  defaults, capture command line, kexec syscalls); :mod:`kdumpy.arch.kdump_select` picks one.

DEVELOPERS.md has the table of which module answers what.
"""

# This package and its machines' packages import nothing: the arm64 kexec loader
# (``arm64.kexec_load``) runs in a minimal guest and in early kdump's initramfs with the
# standard library only, and importing a submodule runs every parent's ``__init__``.
