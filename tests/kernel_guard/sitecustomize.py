"""On PYTHONPATH for the portability test's guarded runs: every Python process started with
TOOLKIT_KERNEL_GUARD=1 (the CLI, the fork server, loky and dask workers) installs the guard."""

import os

if os.environ.get("TOOLKIT_KERNEL_GUARD") == "1":
    import kernel_guard

    kernel_guard.install()
