"""`kdumpy save`: the capture kernel's job (implemented in kdumpy.capture)."""

from kdumpy.capture.cli import register

__all__ = ["register"]
