"""labkit.grading.notebook: a submission is read as an untrusted file (no link of any kind, size
caps before anything parses it) and a class folder is listed without following a link."""
from __future__ import annotations

import csv
import json
import os

import nbformat
import pytest

from labkit.grading import cli, notebook
from nbfactory import course


def test_a_link_a_fifo_a_hard_link_and_an_oversized_file_are_refused(tmp_path):
    nbformat.write(course(), tmp_path / "07_x.ipynb")
    (tmp_path / "link.ipynb").symlink_to(tmp_path / "07_x.ipynb")
    os.mkfifo(tmp_path / "fifo.ipynb")
    os.link(tmp_path / "07_x.ipynb", tmp_path / "hard.ipynb")
    (tmp_path / "big.ipynb").write_bytes(b" " * 2048)
    for name, why in [("link", "symbolic link"), ("fifo", "not a regular file"), ("hard", "hard link")]:
        with pytest.raises(notebook.NotGradable, match=why):
            notebook.read_file(tmp_path / f"{name}.ipynb")
    with pytest.raises(notebook.NotGradable, match="larger than"):
        notebook.read_file(tmp_path / "big.ipynb", cap=1024)


@pytest.mark.parametrize("cells, why", [
    ([{"cell_type": "code", "source": "x = 1\n" * 20000, "metadata": {"tags": ["check"]}, "outputs": []}],
     "cell 1 holds 117 KiB of code, more than the 64 KiB"),  # tagged check: never run, but read by ast
    ([{"cell_type": "code", "source": "x = 1\n" * 10000, "metadata": {}, "outputs": []}] * 10,
     "585 KiB of code, more than the 512 KiB a notebook may have"),
])
def test_code_is_capped_before_anything_parses_it(cells, why):
    good = json.loads(nbformat.writes(course()))
    with pytest.raises(notebook.NotGradable, match=why):
        notebook.parse_submission(json.dumps({**good, "cells": [dict(c, id=f"c{i}") for i, c in enumerate(cells)]}).encode())


def test_a_class_folder_is_listed_without_following_links(tmp_path):
    (tmp_path / "cls" / "ann").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    nbformat.write(course(), tmp_path / "cls" / "ann" / "07_x.ipynb")
    nbformat.write(course(), tmp_path / "elsewhere" / "07_x.ipynb")
    (tmp_path / "cls" / "bob").mkdir()
    (tmp_path / "cls" / "bob" / "07_x.ipynb").symlink_to(tmp_path / "elsewhere" / "07_x.ipynb")
    (tmp_path / "cls" / "eve").symlink_to(tmp_path / "elsewhere")
    found, refused = notebook.find_submissions(tmp_path / "cls")
    assert found == [tmp_path / "cls" / "ann" / "07_x.ipynb"]
    assert [p.relative_to(tmp_path / "cls").as_posix() for p, _ in refused] == ["bob/07_x.ipynb", "eve"]
    assert all("symbolic link: refused" in why for _, why in refused)


def test_linked_submissions_are_error_rows_and_never_graded(tmp_path, capsys):
    (tmp_path / "solutions").mkdir()
    nbformat.write(course(), tmp_path / "solutions" / "07_x.ipynb")
    (tmp_path / "cls" / "bob").mkdir(parents=True)
    (tmp_path / "cls" / "bob" / "07_x.ipynb").symlink_to(tmp_path / "solutions" / "07_x.ipynb")
    (tmp_path / "cls" / "eve").symlink_to(tmp_path / "solutions")
    rc = cli.cli_grade([str(tmp_path / "cls"), "--solutions", str(tmp_path / "solutions"), "--csv",
                        str(tmp_path / "grades.csv")])
    rows = list(csv.reader(open(tmp_path / "grades.csv", newline="")))
    assert rc == 1 and [r[:3] for r in rows[1:]] == [["bob/07_x.ipynb", "", "error"], ["eve", "", "error"]]
    assert "2 notebooks: 0/0 exercises passed" in capsys.readouterr().out


def test_format_csv_writes_the_grades_where_out_says(tmp_path, capsys):
    (tmp_path / "solutions").mkdir()
    nbformat.write(course(), tmp_path / "solutions" / "07_x.ipynb")
    (tmp_path / "cls" / "bob").mkdir(parents=True)
    (tmp_path / "cls" / "bob" / "07_x.ipynb").symlink_to(tmp_path / "solutions" / "07_x.ipynb")
    rc = cli.cli_grade([str(tmp_path / "cls"), "--solutions", str(tmp_path / "solutions"), "--format", "csv",
                        "--out", str(tmp_path / "out.csv")])
    rows = list(csv.reader(open(tmp_path / "out.csv", newline="")))
    assert rc == 1 and rows[0] == cli.HEADER and rows[1][:3] == ["bob/07_x.ipynb", "", "error"]
    assert f"wrote {tmp_path / 'out.csv'}" in capsys.readouterr().out
