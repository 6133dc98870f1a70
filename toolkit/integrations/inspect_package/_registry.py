"""What the ``inspect_ai`` entry point loads: the task under this package's name, and an
offline model provider (``--model toolkit-instant/NAME``) for trying the task without a key."""

from __future__ import annotations

import functools
from typing import Any

from inspect_ai import task
from inspect_ai.model import modelapi

from toolkit.integrations import inspect_task


def _persona_moral(*args: Any, **kwargs: Any) -> Any:
    return inspect_task.persona_moral(*args, **kwargs)


functools.update_wrapper(_persona_moral, inspect_task.persona_moral)  # its name, docstring and parameters
_persona_moral.__module__ = __name__  # before registering: Inspect names a task after its module's package
persona_moral = task(_persona_moral)


@modelapi(name="toolkit-instant")
def instant() -> Any:
    from .instant_model import InstantModel

    return InstantModel
