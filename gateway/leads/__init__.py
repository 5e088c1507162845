"""The pure lead core: parse and validate a posted lead, normalize its fields, fingerprint its
identities.

Nothing here does I/O or reads a clock it was not given; every function is a plain function
over plain data, so the web layer, the batch endpoint, the CLI and the benchmarks share it.

- ``lead``: ``Lead``, the validated lead, and ``LEAD_FIELDS``, the names of its fields
- ``parse``: ``parse_lead`` (every problem of a lead in one ``InvalidLead``)
- ``email``, ``phone``, ``text``: one normalizer per kind of field
- ``fingerprint``: keyed hashes of identity values, with key rotation
- ``ids``: time-ordered lead ids
"""
