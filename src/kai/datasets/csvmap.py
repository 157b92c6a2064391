"""CSV mappings: a file column and a label column, with optional split and group.

The delimiter (comma, semicolon, tab or bar) is detected from the first
lines, and so is the header: a first row naming known columns (``file``,
``label``, ``split``, ``group`` and their usual synonyms) is a header, any
other first row is data read as ``file, label``. Every problem names its
row (counting the header as row 1) so a user can fix the file in a
spreadsheet; up to :data:`MAX_REPORTED_PROBLEMS` are reported at once.
"""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TextIO

from kai.datasets.layouts import (
    MIN_CLASSES,
    Layout,
    PlannedFile,
    SkippedFile,
    reason_to_skip,
    require_classes,
)
from kai.db.tables import Split
from kai.errors import InvalidCsv

logger = logging.getLogger(__name__)

SNIFF_BYTES = 64 * 1024
MAX_REPORTED_PROBLEMS = 20
DELIMITERS = ",;\t|"

FILE_COLUMNS = (
    "file",
    "filename",
    "file_name",
    "filepath",
    "file_path",
    "path",
    "image",
    "image_path",
    "image_name",
    "img",
    "image_file",
)
LABEL_COLUMNS = ("label", "class", "category", "target", "class_name", "label_name")
SPLIT_COLUMNS = ("split", "subset", "partition", "set")
GROUP_COLUMNS = ("group", "group_id", "groupid", "group_name")

SPLIT_VALUES: dict[str, Split] = {
    "train": Split.TRAIN,
    "training": Split.TRAIN,
    "val": Split.VAL,
    "valid": Split.VAL,
    "validation": Split.VAL,
    "test": Split.TEST,
    "testing": Split.TEST,
}


@dataclass(frozen=True)
class CsvColumns:
    """Column names chosen by the user; None means detect."""

    file: str | None = None
    label: str | None = None
    split: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class CsvRow:
    """One data row of a mapping."""

    row: int
    file: str
    label: str
    split: Split | None
    group: str | None


@dataclass
class CsvMapping:
    """A parsed, validated mapping."""

    rows: list[CsvRow]
    has_header: bool
    delimiter: str
    columns: dict[str, int] = field(default_factory=dict)


class _Problems:
    """Collects row problems and raises them together."""

    def __init__(self) -> None:
        self.items: list[tuple[int, str]] = []

    def add(self, row: int, message: str) -> None:
        self.items.append((row, message))

    def raise_if_any(self, subject: str) -> None:
        if not self.items:
            return
        first_row, first = self.items[0]
        more = len(self.items) - 1
        suffix = f" (and {more} more problems)" if more else ""
        shown = self.items[:MAX_REPORTED_PROBLEMS]
        raise InvalidCsv(
            f"{subject}: row {first_row}: {first}{suffix}",
            details={"problems": [{"row": row, "message": msg} for row, msg in shown]},
        )


def read_mapping(path: Path, *, columns: CsvColumns | None = None, max_rows: int) -> CsvMapping:
    """Read and validate a CSV mapping file.

    Raises:
        InvalidCsv: Not UTF-8, no usable columns, or bad rows; the message names the row.
    """
    chosen = columns or CsvColumns()
    dialect = _sniff_dialect(path)
    with open(path, encoding="utf-8-sig", newline="") as source:
        records = _records(source, dialect)
        first = next(records, None)
        if first is None:
            raise InvalidCsv(f"The CSV {path.name!r} is empty; it needs a file and a label column")
        has_header = _is_header(first[1], chosen)
        index = _resolve_columns(first[1] if has_header else None, chosen, len(first[1]))
        data = records if has_header else _chain(first, records)
        rows = _parse_rows(data, index, max_rows)
    _check_consistency(rows)
    logger.info("Read CSV mapping", extra={"rows": len(rows), "header": has_header})
    return CsvMapping(rows, has_header, dialect.delimiter, index)


def match_files(
    mapping: CsvMapping, names: Iterable[str], *, min_classes: int = MIN_CLASSES
) -> Layout:
    """Tie the mapping's rows to the names of the image source.

    A row's file matches a name exactly or as its trailing path (``a.jpg``
    matches ``images/a.jpg`` when no other name ends the same way). Images
    no row names are skipped with a reason.

    Raises:
        InvalidCsv: A row names a file the source lacks, or matches several.
        InvalidDatasetLayout: The rows span fewer than two classes.
    """
    all_names = list(names)
    by_base: dict[str, list[str]] = defaultdict(list)
    for name in all_names:
        by_base[PurePosixPath(name).name].append(name)
    problems = _Problems()
    files: list[PlannedFile] = []
    for row in mapping.rows:
        found = _find(row, by_base, problems)
        if found:
            files.append(PlannedFile(found, row.label, row.split, row.group))
    problems.raise_if_any("The CSV names files the images do not contain")
    used = {planned.name for planned in files}
    skipped = [SkippedFile(n, reason_to_skip(n) or "not listed in the CSV") for n in all_names]
    layout = Layout(files, [s for s in skipped if s.name not in used], shape="csv")
    require_classes(layout.files, min_classes=min_classes)
    return layout


def _sniff_dialect(path: Path) -> type[csv.Dialect] | csv.Dialect:
    with open(path, "rb") as source:
        head = source.read(SNIFF_BYTES)
    if len(head) == SNIFF_BYTES and b"\n" in head:
        head = head[: head.rindex(b"\n")]
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        row = head[: exc.start].count(b"\n") + 1
        raise _not_utf8(path, row) from exc
    try:
        return csv.Sniffer().sniff(text, delimiters=DELIMITERS)
    except csv.Error:
        # One column, or too little text to tell: the comma is the usual choice.
        return csv.excel


def _not_utf8(path: Path, row: int) -> InvalidCsv:
    return InvalidCsv(
        f"The CSV {path.name!r} is not UTF-8 text: row {row} has bytes that are not UTF-8. "
        "Save it as UTF-8 (in a spreadsheet: CSV UTF-8) and upload it again",
        details={"row": row},
    )


def _records(
    source: TextIO, dialect: type[csv.Dialect] | csv.Dialect
) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(source, dialect)
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise _not_utf8(
                Path(getattr(source, "name", "mapping.csv")), reader.line_num + 1
            ) from exc
        except csv.Error as exc:
            raise InvalidCsv(f"The CSV is malformed at row {reader.line_num}: {exc}") from exc
        if any(cell.strip() for cell in record):
            yield reader.line_num, [cell.strip() for cell in record]


def _chain(
    first: tuple[int, list[str]], rest: Iterator[tuple[int, list[str]]]
) -> Iterator[tuple[int, list[str]]]:
    yield first
    yield from rest


def _normal(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _is_header(cells: list[str], chosen: CsvColumns) -> bool:
    known = set(FILE_COLUMNS + LABEL_COLUMNS + SPLIT_COLUMNS + GROUP_COLUMNS)
    known |= {_normal(n) for n in (chosen.file, chosen.label, chosen.split, chosen.group) if n}
    return any(_normal(cell) in known for cell in cells)


def _resolve_columns(header: list[str] | None, chosen: CsvColumns, width: int) -> dict[str, int]:
    if header is None:
        if width < 2:
            raise InvalidCsv(
                f"Row 1 has {width} column; a CSV mapping needs a file and a label column"
            )
        return {"file": 0, "label": 1}
    normal = [_normal(cell) for cell in header]
    index: dict[str, int] = {}
    wanted = (
        ("file", chosen.file, FILE_COLUMNS, True),
        ("label", chosen.label, LABEL_COLUMNS, True),
        ("split", chosen.split, SPLIT_COLUMNS, False),
        ("group", chosen.group, GROUP_COLUMNS, False),
    )
    for role, name, synonyms, required in wanted:
        options = (_normal(name),) if name else synonyms
        found = next((i for i, cell in enumerate(normal) if cell in options), None)
        if found is not None:
            index[role] = found
        elif required or name:
            raise InvalidCsv(
                f"Row 1 (the header) has no {role} column; expected one named "
                f"{' or '.join(repr(o) for o in options[:4])}; found {header}",
                details={"row": 1, "missing": role, "header": header},
            )
    return index


def _parse_rows(
    records: Iterable[tuple[int, list[str]]], index: dict[str, int], max_rows: int
) -> list[CsvRow]:
    problems = _Problems()
    rows: list[CsvRow] = []
    width = max(index.values()) + 1
    for number, cells in records:
        if len(rows) >= max_rows:
            raise InvalidCsv(f"The CSV has more than {max_rows} rows, the configured limit")
        if len(cells) < width:
            problems.add(number, f"has {len(cells)} columns; expected at least {width}")
            continue
        row = _parse_row(number, cells, index, problems)
        if row:
            rows.append(row)
    problems.raise_if_any("The CSV has malformed rows")
    if not rows:
        raise InvalidCsv("The CSV has a header but no data rows")
    return rows


def _parse_row(
    number: int, cells: list[str], index: dict[str, int], problems: _Problems
) -> CsvRow | None:
    file, label = cells[index["file"]], cells[index["label"]]
    split_text = cells[index["split"]] if "split" in index else ""
    group = cells[index["group"]] if "group" in index else ""
    split = SPLIT_VALUES.get(split_text.lower()) if split_text else None
    if not file:
        problems.add(number, "has an empty file name")
    elif not label:
        problems.add(number, f"has an empty label for file {file!r}")
    elif split_text and split is None:
        problems.add(number, f"has split {split_text!r}; use train, val or test")
    else:
        return CsvRow(
            number, file.replace("\\", "/").removeprefix("./"), label, split, group or None
        )
    return None


def _check_consistency(rows: list[CsvRow]) -> None:
    problems = _Problems()
    seen: dict[str, CsvRow] = {}
    for row in rows:
        earlier = seen.get(row.file)
        if earlier is None:
            seen[row.file] = row
        elif (earlier.label, earlier.split, earlier.group) == (row.label, row.split, row.group):
            problems.add(row.row, f"repeats row {earlier.row} ({row.file!r}, {row.label!r})")
        elif earlier.label != row.label:
            problems.add(
                row.row,
                f"labels {row.file!r} as {row.label!r} but row {earlier.row} "
                f"labels it {earlier.label!r}",
            )
        else:
            problems.add(
                row.row, f"gives {row.file!r} a different split or group than row {earlier.row}"
            )
    split_rows = [row for row in rows if row.split]
    if split_rows and len(split_rows) != len(rows):
        missing = next(row for row in rows if not row.split)
        problems.add(missing.row, "has no split while other rows have one; fill in every split")
    problems.raise_if_any("The CSV contradicts itself")


def _find(row: CsvRow, by_base: dict[str, list[str]], problems: _Problems) -> str | None:
    ref = row.file
    if ref.startswith("/") or ".." in PurePosixPath(ref).parts or ":" in ref.split("/")[0]:
        problems.add(row.row, f"names {ref!r}; use a path relative to the images")
        return None
    candidates = [
        name
        for name in by_base.get(PurePosixPath(ref).name, [])
        if name == ref or name.endswith("/" + ref)
    ]
    exact = [name for name in candidates if name == ref]
    if exact or len(candidates) == 1:
        return (exact or candidates)[0]
    if candidates:
        problems.add(row.row, f"file {ref!r} matches several images: {candidates[:3]}")
    else:
        problems.add(row.row, f"names file {ref!r}, which is not among the images")
    return None
