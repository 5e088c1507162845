"""Privacy operations on people: erasure (forget a person everywhere) and suppression lists."""
