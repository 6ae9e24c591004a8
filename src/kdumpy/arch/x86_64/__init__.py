"""x86_64: the machine's record is :mod:`.machine`; see :mod:`kdumpy.arch`."""
