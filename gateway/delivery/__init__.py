"""Delivery to advertisers' CRMs: the queue (Redis streams or embedded), the worker, adapters,
signing, retries, the breaker, dead letters and the outgoing-address guard."""
