"""The rule kinds, one module per family; ``rules.conditions`` registers them in ``KINDS``."""
