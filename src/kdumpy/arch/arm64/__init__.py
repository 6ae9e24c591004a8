"""arm64 (AArch64, little-endian): its record is in :mod:`.machine` (see :mod:`kdumpy.arch`)."""
