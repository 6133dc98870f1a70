"""Output formats every table command accepts (a module of its own: the CLI reads it at start-up
without loading any data library)."""

OUTPUT_FORMATS = ("table", "csv", "json", "markdown", "latex")
