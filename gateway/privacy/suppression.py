"""Suppression lists: load people who must never be sent (opt-outs, customers, litigators).

A list is declared in the config (``suppression_lists``) and filled from a CSV file of emails
and phones. Each value is normalized exactly as a lead's would be (the email's identity form,
the phone in E.164), fingerprinted with the current key and stored as a member of the
identity's set of list ids (``keys.person_suppressed``): the raw values never reach the
store, and the decision checks the sets in the person's slot like network dedup.

Loading streams the file in chunks, so memory stays flat whatever the file's size.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from gateway.leads.email import normalize_email
from gateway.leads.fingerprint import Fingerprinter
from gateway.leads.phone import normalize_phone
from gateway.storage import keys
from gateway.storage.base import SuppressionStore

#: Identities sent to the store per round trip.
CHUNK = 5_000
#: Bad rows reported by line number; beyond this only counted.
MAX_REPORTED = 20
_COLUMNS = ("email", "phone")


@dataclass
class LoadReport:
    rows: int = 0
    identities: int = 0
    #: Identities newly put on the list (the others were on it already).
    changed: int = 0
    #: ``(line, column, why)`` of the first bad values; the value itself is never shown.
    invalid: list[tuple[int, str, str]] = field(default_factory=list)
    invalid_count: int = 0
    seconds: float = 0.0


def identity_keys(
    fingerprinter: Fingerprinter,
    *,
    email: str | None = None,
    phone: str | None = None,
    region: str | None = "FR",
    every_key: bool = False,
) -> list[str]:
    """The store keys of one person's identities. ``every_key``: under the previous
    fingerprint keys too (to take someone off a list loaded before a key rotation).

    Raises ``ValueError`` (no personal data in the message) for a value that is not valid.
    """
    values: list[tuple[str, str]] = []
    if email:
        values.append(("email", normalize_email(email).identity))
    if phone:
        values.append(("phone", normalize_phone(phone, region)))
    found: list[str] = []
    for kind, value in values:
        fps = (
            fingerprinter.lookups(kind, value)
            if every_key
            else (fingerprinter.fingerprint(kind, value),)
        )
        found.extend(keys.person_suppressed(fp) for fp in fps)
    return found


def _rows(text: TextIO) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(text)
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if not any(name in _COLUMNS for name in header):
        raise ValueError("the first line must name the columns, with email and/or phone")
    reader.fieldnames = header
    rows = iter(reader)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as broken:  # a NUL byte, an over-long field: says what, never the value
            raise ValueError(f"after line {reader.line_num}: not CSV ({broken})") from None
        yield (
            reader.line_num,
            {name: (row.get(name) or "").strip() for name in _COLUMNS if name in header},
        )


async def load_csv(
    store: SuppressionStore,
    fingerprinter: Fingerprinter,
    list_id: str,
    path: Path,
    *,
    region: str | None = "FR",
    remove: bool = False,
) -> LoadReport:
    """Put every email and phone of the CSV at ``path`` on the list (or, ``remove``, off it).

    Raises ``ValueError`` when the file has no header naming an email or phone column.
    """
    report = LoadReport()
    started = time.perf_counter()
    pending: list[str] = []
    with path.open(newline="", encoding="utf-8-sig") as text:
        for line, row in _rows(text):
            report.rows += 1
            for column, value in row.items():
                if not value:
                    continue
                try:
                    found = identity_keys(
                        fingerprinter,
                        email=value if column == "email" else None,
                        phone=value if column == "phone" else None,
                        region=region,
                        every_key=remove,
                    )
                except ValueError as bad:
                    report.invalid_count += 1
                    if len(report.invalid) < MAX_REPORTED:
                        report.invalid.append((line, column, str(bad)))
                    continue
                report.identities += 1
                pending.extend(found)
                if len(pending) >= CHUNK:
                    report.changed += await store.suppression_change(
                        list_id, pending, add=not remove
                    )
                    pending = []
    if pending:
        report.changed += await store.suppression_change(list_id, pending, add=not remove)
    report.seconds = time.perf_counter() - started
    return report


def describe(report: LoadReport, list_id: str, *, remove: bool) -> Iterator[str]:
    verb = "taken off" if remove else "newly put on"
    yield (
        f"{report.rows} rows, {report.identities} valid identities: {report.changed} {verb} "
        f"{list_id!r} in {report.seconds:.1f} s"
    )
    if report.invalid_count:
        yield f"{report.invalid_count} values skipped as invalid:"
        for line, column, why in report.invalid:
            yield f"  line {line}, {column}: {why}"
        if report.invalid_count > len(report.invalid):
            yield f"  ... and {report.invalid_count - len(report.invalid)} more"
