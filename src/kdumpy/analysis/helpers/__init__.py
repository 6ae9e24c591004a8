"""Kernel data-structure helpers, one small module per subsystem (like drgn's)."""
