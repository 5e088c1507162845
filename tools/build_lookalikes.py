# ruff: noqa: RUF002 -- lookalike characters are this file's subject
"""Build ``gateway/leads/lookalike_data.py``, the table that folds lookalike characters out of
identities (``gateway.leads.lookalike``), from Unicode's own data files.

Usage (the data files are not in the repository; both are Unicode 15.0.0)::

    python tools/build_lookalikes.py confusables.txt DerivedCoreProperties.txt \\
        > gateway/leads/lookalike_data.py

- ``confusables.txt``: Unicode Security Mechanisms (UTS #39) data, from unicode.org
  (Public/security/15.0.0/) or, identical, ``icu/source/data/unidata/confusables.txt`` in
  Debian bookworm's ``icu`` 72.1 source package (``apt-get source icu``).
- ``DerivedCoreProperties.txt``: from unicode.org (Public/15.0.0/ucd/) or Debian's
  ``unicode-data`` 15.0.0 package (``/usr/share/unicode/``).

What one character folds to, worked out here once so the hot path is one ``str.translate``:

1. its compatibility decomposition (NFKD: fullwidth ``ａ`` and mathematical ``𝐚`` are ``a``),
2. without default-ignorable code points (zero-width spaces and joiners, variation selectors,
   soft hyphens: invisible) and without the generic diacritics (the Combining Diacritical
   Marks blocks: ``é`` is ``e``, ``й`` is ``и``),
3. each remaining non-ASCII character replaced by its UTS #39 prototype (``confusables.txt``:
   Cyrillic ``о`` and Greek ``ο`` are ``o``), and where an ASCII character has the same
   prototype, by that ASCII character (a lookalike of ``m`` is ``m``, not the prototype
   ``rn``): what a reader takes the address for,
4. case-folded (``ß`` is ``ss``, final ``ς`` is ``σ``),

repeated until nothing changes. ASCII characters are never replaced (only upper-case letters
are lower-cased): two distinct ASCII identities never fold together, even where UTS #39's full
skeleton would merge them (``rn`` and ``m``, ``l`` and ``1``).
"""

from __future__ import annotations

import re
import sys
import unicodedata
from pathlib import Path

#: The Combining Diacritical Marks blocks: accents that sit on Latin, Greek and Cyrillic
#: letters. Marks of other scripts (Devanagari vowel signs, Thai, Hebrew points) stay: there
#: they are letters of the word, not decoration.
GENERIC_DIACRITICS = (
    (0x0300, 0x036F),
    (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF),
    (0x20D0, 0x20FF),
    (0xFE20, 0xFE2F),
)
MAX_ROUNDS = 8
_LINE = re.compile(r"^([0-9A-F]{4,6})\s*;\s*([0-9A-F ]+?)\s*;\s*MA\b")
_RANGE = re.compile(r"^([0-9A-F]{4,6})(?:\.\.([0-9A-F]{4,6}))?\s*;\s*Default_Ignorable_Code_Point")


def read_prototypes(text: str) -> dict[str, str]:
    """``confusables.txt`` as {character: its prototype} (its ``MA`` lines, the only kind)."""
    prototypes: dict[str, str] = {}
    for line in text.splitlines():
        match = _LINE.match(line.lstrip("\ufeff"))
        if match:
            source = chr(int(match[1], 16))
            prototypes[source] = "".join(chr(int(cp, 16)) for cp in match[2].split())
    return prototypes


def read_ignorables(text: str) -> set[str]:
    """The ``Default_Ignorable_Code_Point`` characters of ``DerivedCoreProperties.txt``."""
    found: set[str] = set()
    for line in text.splitlines():
        match = _RANGE.match(line)
        if match:
            first = int(match[1], 16)
            last = int(match[2] or match[1], 16)
            found.update(chr(cp) for cp in range(first, last + 1))
    return found


def build(prototypes: dict[str, str], ignorables: set[str]) -> dict[str, str]:
    """{character: what it folds to} for every character that ``NFKD`` leaves alone and that
    changes (the runtime decomposes first, so decomposable characters need no entry)."""
    dropped = set(ignorables)
    for first, last in GENERIC_DIACRITICS:
        dropped.update(chr(cp) for cp in range(first, last + 1))

    def skeleton(char: str) -> str:
        return unicodedata.normalize("NFD", prototypes.get(char, char))

    # Which ASCII character a prototype stands for: a lower-case letter first (identities are
    # lower-case), then an upper-case one, then a digit, then anything else, so "l", "I", "1"
    # and "|" (one prototype) read as "l", and "O" and "0" as "o".
    def rank(char: str) -> tuple[int, str]:
        order = 0 if char.islower() else 1 if char.isupper() else 2 if char.isdigit() else 3
        return (order, char)

    reading: dict[str, str] = {}
    for char in sorted((chr(cp) for cp in range(0x21, 0x7F)), key=rank):
        reading.setdefault(skeleton(char), char.casefold())

    def one_round(text: str) -> str:
        out = []
        for char in unicodedata.normalize("NFKD", text):
            if char in dropped:
                continue
            if char.isascii():
                out.append(char.casefold())
                continue
            proto = skeleton(char)
            out.append(reading.get(proto, proto).casefold())
        return unicodedata.normalize("NFKD", "".join(out))

    table: dict[str, str] = {}
    for cp in range(0x41, sys.maxunicode + 1):
        char = chr(cp)
        if 0xD800 <= cp <= 0xDFFF or unicodedata.normalize("NFKD", char) != char:
            continue
        text = char
        for _ in range(MAX_ROUNDS):
            folded = one_round(text)
            if folded == text:
                break
            text = folded
        else:
            raise RuntimeError(f"U+{cp:04X} does not settle in {MAX_ROUNDS} rounds")
        if text != char:
            table[char] = text
    # What a character folds to must itself fold to nothing else: one translate is enough.
    for char, folded in table.items():
        for part in folded:
            if part in table:
                raise RuntimeError(f"U+{ord(char):04X} folds to U+{ord(part):04X}, not final")
    return table


def render(table: dict[str, str]) -> str:
    """The Python module: one ``source:target`` per entry, code points in hex, ``target``
    empty for characters that are dropped and comma-separated when it is several."""
    entries = [
        f"{ord(char):X}:{','.join(f'{ord(part):X}' for part in folded)}"
        for char, folded in sorted(table.items())
    ]
    lines, line = [], ""
    for entry in entries:
        if len(line) + len(entry) + 1 > 90:
            lines.append(line)
            line = ""
        line = f"{line} {entry}" if line else entry
    lines.append(line)
    body = "\n".join(f'    "{text} "' for text in lines)
    return (
        '"""Generated by tools/build_lookalikes.py from Unicode 15.0.0 confusables.txt\n'
        "(2022-08-26) and DerivedCoreProperties.txt: do not edit, rebuild.\n\n"
        f"{len(table)} entries, space-separated: ``source:target``, code points in hex,\n"
        "several target code points comma-separated, an empty target for a character that\n"
        'is dropped."""\n\n'
        "TABLE = (\n"
        f"{body}\n"
        ")\n"
    )


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    prototypes = read_prototypes(Path(argv[1]).read_text(encoding="utf-8"))
    ignorables = read_ignorables(Path(argv[2]).read_text(encoding="utf-8"))
    sys.stdout.write(render(build(prototypes, ignorables)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
