"""leadgate: an affiliate lead-deduplication gateway."""

__version__ = "0.1.0"
