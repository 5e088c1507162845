# ruff: noqa: RUF002 -- lookalike characters are this file's subject
"""Lookalike characters folded out of identities, so a respelling is not a new person.

``marie@gmail.com`` typed with a Cyrillic ``а`` or a Greek ``ο``, in fullwidth or
mathematical letters, with an accent or an invisible joiner added, or at ``gmаil.com`` with a
Cyrillic ``а``, reads as the same address to a person and to a buyer, and must be the same
person to dedup. ``fold`` maps each such spelling to one form, in the spirit of the
confusable skeleton of Unicode Technical Standard #39:

1. compatibility decomposition (NFKD: fullwidth and mathematical letters are plain letters);
2. invisible characters (default-ignorable code points) and the generic diacritics (the
   Combining Diacritical Marks blocks) dropped;
3. every other non-ASCII character replaced by its UTS #39 prototype, read as the ASCII
   character with the same prototype where there is one (Cyrillic ``о`` is ``o``);
4. case folded; the result recomposed (NFC).

Unlike the UTS #39 skeleton, ASCII is never replaced: ``rn`` and ``m``, ``l`` and ``1`` stay
distinct, so two distinct plain-ASCII identities never fold together. The per-character work
is precomputed from Unicode 15.0.0's data by ``tools/build_lookalikes.py`` into
``lookalike_data``; here it is one ``str.translate``, and nothing at all for ASCII text.
"""

from __future__ import annotations

import unicodedata

from gateway.leads.lookalike_data import TABLE


def _parse(table: str) -> dict[int, str | None]:
    mapping: dict[int, str | None] = {}
    for entry in table.split():
        source, _, target = entry.partition(":")
        mapping[int(source, 16)] = (
            "".join(chr(int(part, 16)) for part in target.split(",")) if target else None
        )
    return mapping


_FOLD = _parse(TABLE)


def fold(text: str) -> str:
    """``text`` with lookalikes folded (see the module's docstring); idempotent. Plain ASCII
    is only lower-cased, so two distinct lower-case ASCII strings never fold together."""
    if text.isascii():
        return text.lower()
    folded = unicodedata.normalize("NFKD", text).translate(_FOLD)
    return folded if folded.isascii() else unicodedata.normalize("NFC", folded)
