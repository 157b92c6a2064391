"""CSV mappings: header and delimiter detected, every problem named by its row."""

from __future__ import annotations

from pathlib import Path

import pytest

from kai.datasets.csvmap import match_files, read_mapping
from kai.db.tables import Split
from kai.errors import InvalidCsv

IMAGES = ["images/a.jpg", "images/b.jpg", "images/c.jpg", "images/d.jpg"]


def mapping_file(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "labels.csv"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_header_with_split_and_group(tmp_path: Path) -> None:
    path = mapping_file(
        tmp_path,
        "filename,class,split,group\na.jpg,stone,train,g1\nb.jpg,wood,val,g2\n",
    )
    mapping = read_mapping(path, max_rows=100)
    assert mapping.has_header and mapping.delimiter == ","
    layout = match_files(mapping, IMAGES)
    assert {(f.name, f.label, f.split, f.group) for f in layout.files} == {
        ("images/a.jpg", "stone", Split.TRAIN, "g1"),
        ("images/b.jpg", "wood", Split.VAL, "g2"),
    }
    assert {s.name for s in layout.skipped} == {"images/c.jpg", "images/d.jpg"}


def test_no_header_and_semicolons(tmp_path: Path) -> None:
    path = mapping_file(tmp_path, "images/a.jpg;stone\nimages/b.jpg;wood\nimages/c.jpg;wood\n")
    mapping = read_mapping(path, max_rows=100)
    assert not mapping.has_header and mapping.delimiter == ";"
    assert next((r.file, r.label) for r in mapping.rows) == ("images/a.jpg", "stone")


def test_missing_label_column_is_named(tmp_path: Path) -> None:
    path = mapping_file(tmp_path, "file,colour\na.jpg,red\n")
    with pytest.raises(InvalidCsv, match=r"header.*no label column"):
        read_mapping(path, max_rows=100)


def test_unknown_files_name_their_rows(tmp_path: Path) -> None:
    path = mapping_file(tmp_path, "file,label\na.jpg,stone\nzzz.jpg,wood\n")
    with pytest.raises(InvalidCsv, match=r"row 3: names file .zzz\.jpg.") as caught:
        match_files(read_mapping(path, max_rows=100), IMAGES)
    assert caught.value.details["problems"] == [
        {"row": 3, "message": "names file 'zzz.jpg', which is not among the images"}
    ]


def test_duplicate_rows_are_named(tmp_path: Path) -> None:
    path = mapping_file(tmp_path, "file,label\na.jpg,stone\nb.jpg,wood\na.jpg,stone\n")
    with pytest.raises(InvalidCsv, match="row 4: repeats row 2"):
        read_mapping(path, max_rows=100)


def test_conflicting_labels_are_named(tmp_path: Path) -> None:
    path = mapping_file(tmp_path, "file,label\na.jpg,stone\na.jpg,wood\n")
    with pytest.raises(InvalidCsv, match=r"row 3: labels .a\.jpg. as .wood. but row 2"):
        read_mapping(path, max_rows=100)


def test_non_utf8_text_names_the_row(tmp_path: Path) -> None:
    path = mapping_file(tmp_path, "file,label\na.jpg,stone\nb.jpg,m\xe1rmol\n".encode("latin-1"))
    with pytest.raises(InvalidCsv, match="not UTF-8 text: row 3"):
        read_mapping(path, max_rows=100)


def test_bad_split_value_is_named(tmp_path: Path) -> None:
    path = mapping_file(tmp_path, "file,label,split\na.jpg,stone,holdout\n")
    with pytest.raises(InvalidCsv, match="row 2: has split 'holdout'"):
        read_mapping(path, max_rows=100)


def test_paths_that_climb_out_are_refused(tmp_path: Path) -> None:
    path = mapping_file(tmp_path, "file,label\n../etc/passwd.jpg,stone\nb.jpg,wood\n")
    with pytest.raises(InvalidCsv, match="row 2"):
        match_files(read_mapping(path, max_rows=100), IMAGES)
