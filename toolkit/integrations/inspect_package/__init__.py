"""Inspect's package convention for this project (installed as ``persona_moral_toolkit``).

Inspect names a task ``<package>/<task>`` after the installed package its code lives in, and
loads a package's tasks and model providers through its ``inspect_ai`` entry point. So that
``inspect eval persona_moral_toolkit/persona_moral`` works from any folder, this small package
carries the distribution's name; the task itself lives in ``toolkit.integrations.inspect_task``.
"""
