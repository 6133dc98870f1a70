"""Bridges to other evaluation tools (optional extras; nothing else in the toolkit imports them)."""
