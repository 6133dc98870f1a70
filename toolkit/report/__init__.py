"""Presentation: tables in several formats (and, with the plot extra, figures)."""

from .tables import FORMATS, format_frame

__all__ = ["FORMATS", "format_frame"]
