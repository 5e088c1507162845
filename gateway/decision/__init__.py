"""The decision: what one lead's check-and-commit consists of, and the protocol that runs it."""
