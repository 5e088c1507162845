"""Everything that remembers: Redis (scripts, keys, pipelining) and the embedded store."""
