"""Imported by the fork server after the warm-up when the analysis will use the compiled kernels.

Why: numba's import and its first load of the cached machine code take ~0.45 s of a core.
Here they happen once, in the server, while the CLI process is still importing, and every
worker forked from it starts with the kernels loaded, instead of paying for them each. Nothing
here starts a thread (numba compiles and loads on the calling thread; a test counts them).
"""

from __future__ import annotations

from . import kernels

kernels.warm()
