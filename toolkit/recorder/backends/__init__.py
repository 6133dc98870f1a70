"""Model backends behind one small interface (see base.Backend)."""

from .base import Backend, BackendError, Generation

__all__ = ["Backend", "BackendError", "Generation"]
