"""Named published datasets (a catalogue kept as data) and how to fetch them."""

from .catalogue import Dataset, DatasetFile, load_catalogue

__all__ = ["Dataset", "DatasetFile", "load_catalogue"]
