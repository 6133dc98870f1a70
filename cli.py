"""The command line, runnable from a checkout: ``python cli.py COMMAND``. The commands live in
the ``toolkit.cli`` package (the installed ``toolkit`` script runs the same entry point)."""

from toolkit.cli import entry, main

__all__ = ["main"]

if __name__ == "__main__":
    entry()
