"""labkit.grading.verdict and the CSV side of labkit.grading.cli: what a student controls is
cleaned before it reaches a terminal or a spreadsheet, and grade-merge refuses parts that lie."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from labkit.grading import cli
from labkit.grading.verdict import ExerciseResult, Status, clean, csv_cell


@pytest.mark.parametrize("text, shown", [
    ("ok\r✔ alice: passed", "ok ↵ ✔ alice: passed"),  # a carriage return would overwrite the line in a terminal
    ("a\nb\n\nc", "a ↵ b ↵ ↵ c"),
    ("\x1b[2K\x1b[1Gpassed\x1b[0m", "passed"),  # ANSI: erase the line, move, reset
    ("\x1b]8;;http://x\x07link\x1b]8;;\x07", "link"),  # OSC 8 hyperlink
    ("safe\u202etxt.exe", "safetxt.exe"),  # a right-to-left override
    ("tab\there\x00\x07\x7f", "tab here"),
    ("x" * 2000, "x" * 997 + "..."),
])
def test_clean_leaves_one_plain_line(text, shown):
    assert clean(text) == shown


@pytest.mark.parametrize("text, cell", [
    ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'), ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
    ("-2+3", "'-2+3"), ("@SUM(1)", "'@SUM(1)"), ("\r=1+1", "↵ =1+1"), ("passed", "passed"), ("2/3", "2/3"),
])
def test_a_cell_a_spreadsheet_would_run_is_quoted_as_text(text, cell):
    assert csv_cell(text) == cell and csv_cell(csv_cell(text)) == cell


def test_results_carry_their_reasons_as_fields_and_survive_json():
    r = ExerciseResult("double", "7.1", Status.FAILED, "timed out", timed_out=True, raised="", limit="memory (2 GiB)")
    assert ExerciseResult.from_dict(r.as_dict()) == r and r.as_dict()["status"] == "failed"


def _part(path, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([cli.HEADER] + rows)
    return str(path)


def test_grade_merge_refuses_parts_that_disagree_or_are_malformed(tmp_path, capsys):
    good = _part(tmp_path / "a.csv", [["s1/07_x.ipynb", "double", "passed", ""], ["s1/07_x.ipynb", "", "score", "1/1"]])
    cases = {
        "graded in both": [["s1/07_x.ipynb", "double", "failed", "x"], ["s1/07_x.ipynb", "", "score", "0/1"]],
        "a second row": [["s2/07_x.ipynb", "double", "passed", ""], ["s2/07_x.ipynb", "double", "failed", ""]],
        "3 cells": [["s3/07_x.ipynb", "double", "passed"]],
        "unknown status": [["s4/07_x.ipynb", "double", "excellent", ""]],
        "is not what its exercise rows say": [["s5/07_x.ipynb", "double", "failed", ""], ["s5/07_x.ipynb", "", "score", "1/1"]],
    }
    for why, rows in cases.items():
        bad = _part(tmp_path / "b.csv", rows)
        assert cli.cli_merge([good, bad, "--out", str(tmp_path / "all.csv")]) == 2
        err = capsys.readouterr().err
        assert why in err and "nothing written" in err and "Traceback" not in err
        assert not (tmp_path / "all.csv").exists()
    (tmp_path / "c.csv").write_text("notebook,exercise\n")
    assert cli.cli_merge([good, str(tmp_path / "c.csv"), "--out", str(tmp_path / "all.csv")]) == 2
    assert "not a grade CSV" in capsys.readouterr().err
    assert cli.cli_merge([good, good, "--out", str(tmp_path / "all.csv")]) == 2


def test_grade_merge_quotes_formulas_a_forged_part_carries(tmp_path):
    part = _part(tmp_path / "a.csv", [["=cmd()", "double", "failed", "@SUM(1)"], ["=cmd()", "", "score", "0/1"]])
    assert cli.cli_merge([part, "--out", str(tmp_path / "all.csv")]) == 0
    rows = list(csv.reader(open(tmp_path / "all.csv", newline="")))
    assert rows[1] == ["'=cmd()", "double", "failed", "'@SUM(1)"]


def test_shards_split_the_sorted_list_and_merge_joins_them(tmp_path, capsys):
    paths = [Path(f"s{i}/07_x.ipynb") for i in range(7)]
    parts = [cli.shard(paths, f"{i}/3") for i in (1, 2, 3)]
    assert sorted(sum(parts, [])) == sorted(paths) and parts[0] == cli.shard(list(reversed(paths)), "1/3")
    for i, part in enumerate(parts):
        with open(tmp_path / f"{i}.csv", "w", newline="") as f:
            csv.writer(f).writerows([cli.HEADER] + [[p.as_posix(), "double", "passed", ""] for p in part])
    assert cli.cli_merge([str(tmp_path / f"{i}.csv") for i in (2, 0, 1)] + ["--out", str(tmp_path / "all.csv")]) == 0
    rows = list(csv.reader(open(tmp_path / "all.csv")))
    assert rows[0] == cli.HEADER and [r[0] for r in rows[1:]] == [p.as_posix() for p in paths]


def test_a_name_shows_its_control_characters_as_escapes_so_it_cannot_pass_for_a_line():
    from labkit.grading.verdict import clean_name
    name = "nl\nghost/07_x.ipynb\n  Exercise 7.1 (double): passed\r\x1b[2K\u202e"
    assert clean_name(name) == "nl\\nghost/07_x.ipynb\\n  Exercise 7.1 (double): passed\\r\\x1b[2K\\u202e"
    assert csv_cell(clean_name("=cmd\n")) == "'=cmd\\n"
