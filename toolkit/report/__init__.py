"""Presentation: tables in several formats (and, with the plot extra, figures)."""

from ..formats import OUTPUT_FORMATS
from .tables import format_frame

__all__ = ["OUTPUT_FORMATS", "format_frame"]
