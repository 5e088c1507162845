"""Developer tools run by hand, not shipped: generators of the package's data tables."""
