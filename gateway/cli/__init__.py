"""The ``leadgate`` command: argument parsing, and each command handed to the app."""

from gateway.cli.main import main

__all__ = ["main"]
