"""Grading a class: ``python -m labkit grade`` (workers, progress, CSV as results arrive, shards)
and ``python -m labkit grade-merge`` (one CSV from the shards' CSVs).

Each notebook is graded by ``labkit.grading.judge`` in its own bubblewrap sandbox; ``--workers N``
grade N at once (a process pool, one sandboxed kernel each). ``--shard i/n`` grades the i-th of n
deterministic slices of the sorted submission list, so any scheduler (a Slurm job array, a CI
matrix) can split a class over machines; ``grade-merge`` joins their CSVs and refuses parts that
disagree. Everything a student controls reaches the terminal and the CSV through
``labkit.grading.verdict.clean`` and ``csv_cell``. Introduced in notebook 00.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

HEADER = ["notebook", "exercise", "status", "detail"]
STATUSES = {"passed", "failed", "not attempted", "score", "error", "marked"}

_GRADE_HELP = """\
Grade notebooks headless, each in its own sandbox (bubblewrap): an allowlisted view (the system,
Python, the virtual environment and labkit read-only, a fresh scratch folder), not root, no
network, its own PID namespace, and a budget per submission (memory, disk, processes, time). The submission's functions are evaluated on each
checker's inputs in its kernel; the verdicts are computed here from those outputs (never from
printed text): 'passed', 'failed: <hint>' or 'not attempted'. The exercises are those of the
solved notebook of the same name (a notebook without one is an error).
Exit status: 0 if every exercise passed, 1 if not, 2 for a bad PATH or no sandbox."""


def shard(paths: list[Path], spec: str | None) -> list[Path]:
    """The i-th of n slices ('i/n', 1-based) of the sorted paths: every n-th path from the i-th."""
    if not spec:
        return paths
    i, n = (int(v) for v in spec.split("/"))
    if not 1 <= i <= n:
        raise ValueError(f"--shard {spec}: i must be between 1 and n")
    return sorted(paths)[i - 1::n]


def _grade_one(path: str, shown: str, solutions: str, limits, hidden: tuple, modules: tuple, written: bool):
    """In a pool worker: (shown, results, None, written answers) or (shown, None, one-line error, {})."""
    from labkit.grading import child
    from labkit.grading.judge import NotGradable, grade_submission
    from labkit.grading.written import answers_in
    try:
        results = grade_submission(path, solutions, limits, tuple(Path(h) for h in hidden), modules)
    except NotGradable as err:
        return shown, None, str(err), {}
    except Exception as err:  # noqa: BLE001 - one broken submission must not stop the class
        first = next((line.strip() for line in str(err).split("\n") if line.strip()), "")
        return shown, None, f"{type(err).__name__}: {first[:200]}" if first else type(err).__name__, {}
    try:
        found = child.in_child(answers_in, path, str(Path(solutions) / Path(path).name)) if written else {}
    except child.ChildFailed as err:
        found = {"error": err.reason}
    return shown, results, None, found


def _parser() -> argparse.ArgumentParser:
    from labkit import course
    p = argparse.ArgumentParser(prog="python -m labkit grade", description=_GRADE_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", metavar="PATH", help="a notebook, or a folder searched recursively for *.ipynb")
    p.add_argument("--timeout", type=int, default=120, metavar="SECONDS",
                   help="limit for each cell, and for evaluating each exercise (default: 120)")
    p.add_argument("--notebook-timeout", type=int, default=900, metavar="SECONDS",
                   help="limit for a whole notebook; past it everything it started is killed (default: 900)")
    p.add_argument("--memory", type=float, default=8, metavar="GIB",
                   help="memory of one submission, all its processes, tmpfs and page cache together, in GiB "
                        "(default: 8; 0: none); where no cgroup can be made, the limit of each process")
    p.add_argument("--disk", type=float, default=1, metavar="GIB",
                   help="what one submission may write (its scratch folder, /tmp and /dev/shm), in GiB (default: 1)")
    p.add_argument("--processes", type=int, default=256, metavar="N",
                   help="processes and threads of one submission (default: 256)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="notebooks graded at once, one sandboxed kernel each (default: the CPU count)")
    p.add_argument("--shard", metavar="I/N", help="grade only the I-th of N slices of the sorted submissions")
    p.add_argument("--csv", metavar="FILE", help="write FILE (columns notebook,exercise,status,detail) row by "
                   "row as results arrive: a row per exercise, then per notebook 'score' k/n (or 'error')")
    p.add_argument("--format", choices=("csv", "gradescope", "canvas"), default=None,
                   help="also write the grades for a gradebook: 'gradescope' (the autograder's results.json), "
                        "'canvas' (a CSV for Canvas's gradebook import, a column per notebook) or 'csv' (as --csv)")
    p.add_argument("--out", metavar="FILE", help="where --format writes (default: results.json, canvas.csv, grades.csv)")
    p.add_argument("--roster", metavar="CSV", help="with --format canvas: the course's Gradebook export, to match "
                   "each student's folder name to their SIS Login ID, ID or SIS User ID")
    p.add_argument("--written", metavar="DIR", help="collect the written answers, question by question across the "
                   "class, into DIR (a page per question, and written_scores.csv to fill in)")
    p.add_argument("--written-scores", metavar="CSV", help="with --format canvas: add the marks of a filled-in "
                   "written_scores.csv to each notebook's column")
    p.add_argument("--solutions", metavar="DIR", default=str(course.solved_notebooks()),
                   help="folder of the solved notebooks (default: the course's notebooks/)")
    p.add_argument("--unsandboxed", action="store_true",
                   help="run without bubblewrap where it is unavailable (the submissions are then trusted)")
    p.add_argument("--seed", type=int, metavar="S",
                   help="draw the checkers' random inputs with another seed (the same properties are tested): "
                        "answers looked up from a table of the usual inputs then fail")
    p.add_argument("--checkers", action="append", default=[], metavar="MODULE",
                   help="also import MODULE to register checkers (a course's own exercises)")
    return p


def cli_grade(argv: list[str]) -> int:
    """``python -m labkit grade PATH [--workers N] [--shard I/N] [--csv FILE] ...``."""
    from tqdm import tqdm

    from labkit.grading.budget import GIB, Budget, cgroup_kind
    from labkit.grading.judge import CHECKER_MODULES, Limits
    from labkit.grading.notebook import find_submissions
    from labkit.grading.sandbox import bwrap_problem
    from labkit.grading.verdict import Status, clean, clean_name, csv_cell
    parser = _parser()
    args = parser.parse_args(argv)
    if args.timeout < 1 or args.notebook_timeout < 1 or args.workers < 1 or args.processes < 16:
        parser.error("--timeout, --notebook-timeout and --workers must be at least 1, --processes at least 16")
    if args.memory < 0 or args.disk <= 0:
        parser.error("--memory must be at least 0 and --disk more than 0")
    root = Path(args.path)
    if not root.exists():
        print(f"labkit grade: no such notebook or folder: {root}", file=sys.stderr)
        return 2
    found, refused = find_submissions(root)
    try:
        mine = set(shard(sorted(found + [p for p, _ in refused]), args.shard))
    except ValueError as err:
        parser.error(str(err))
    paths, refused = [p for p in found if p in mine], [r for r in refused if r[0] in mine]
    if not paths and not refused:
        print(f"labkit grade: no notebooks (*.ipynb) under {root}" + (f" in shard {args.shard}" if args.shard else ""),
              file=sys.stderr)
        return 2
    problem = bwrap_problem() if paths else None  # refused links alone run nothing
    if problem and not args.unsandboxed:
        print(f"labkit grade: no sandbox: {problem}; refusing to run untrusted notebooks "
              "(--unsandboxed runs them anyway, with your rights)", file=sys.stderr)
        return 2
    if args.unsandboxed:
        print("labkit grade: running UNSANDBOXED: the submissions can read and write what you can", file=sys.stderr)
    if not cgroup_kind():
        print("labkit grade: no cgroup here (cgroup v1 or systemd-run): memory is limited per process, "
              "not per submission", file=sys.stderr)
    budget = Budget(memory=int(args.memory * GIB), disk=int(args.disk * GIB), processes=args.processes)
    limits = Limits(args.timeout, args.notebook_timeout, budget, not args.unsandboxed, args.seed)
    hidden = (str(root.resolve() if root.is_dir() else root.resolve().parent),)
    modules = CHECKER_MODULES + tuple(args.checkers)
    if args.format == "csv" and not args.csv:
        args.csv = args.out or "grades.csv"
    roster, extra, possible = None, {}, {}  # read before grading: a bad file is said at once
    try:
        if args.format == "canvas" and args.roster:
            from labkit.grading.export import read_roster
            roster = read_roster(args.roster)
        if args.format == "canvas" and args.written_scores:
            from labkit.grading.export import written_points
            from labkit.grading.written import read_scores
            extra, possible = written_points(read_scores(args.written_scores))
    except (OSError, ValueError) as err:
        print(f"labkit grade: {err}", file=sys.stderr)
        return 2
    out = open(args.csv, "w", newline="", encoding="utf-8") if args.csv else None
    writer = csv.writer(out) if out else None
    if writer:
        writer.writerow(HEADER)
        out.flush()
    all_passed, total, passed = not refused, 0, 0
    graded: dict = {}
    errors: dict = {}
    written: dict = {}  # notebook name -> {student: {label: answer}}

    def name_of(p: Path) -> str:
        return clean_name(p.relative_to(root).as_posix() if root.is_dir() else str(p))

    def report(shown: str, results, error, found=None) -> None:
        nonlocal all_passed, total, passed
        lines = [shown]
        if found and found.get("questions"):
            written.setdefault(Path(shown).name, {})[shown] = found["answers"]
            given = sum(bool(a) for a in found["answers"].values())
            lines.append(f"  written: {given} of {len(found['questions'])} answered, to mark by hand (--written)")
        elif found and found.get("error"):
            lines.append(f"  written: could not be read ({clean(found['error'])})")
        if error is not None:
            errors[shown] = error
            lines.append(f"  could not grade it: {clean(error)}")
            rows = [[shown, "", "error", error]]
            all_passed = False
        else:
            graded[shown] = results
            rows = []
            for r in results:
                title = f"Exercise {clean(r.label)} ({clean(r.name)})" if r.label else clean(r.name)
                lines.append(f"  {title}: {r.status}" + (f": {clean(r.detail)}" if r.detail else ""))
                rows.append([shown, r.name, r.status.value, r.detail])
            k = sum(r.status is Status.PASSED for r in results)
            lines.append(f"  {k}/{len(results)} passed" + ("" if results else " (no exercises found)"))
            rows.append([shown, "", "score", f"{k}/{len(results)}"])
            all_passed &= bool(results) and k == len(results)
            total, passed = total + len(results), passed + k
        bar.write("\n".join(lines), file=sys.stdout)
        sys.stdout.flush()
        if writer:
            writer.writerows([[csv_cell(v) for v in row] for row in rows])
            out.flush()
        bar.update()

    with tqdm(total=len(paths) + len(refused), unit="notebook", file=sys.stderr, dynamic_ncols=True) as bar:
        for p, why in refused:
            report(name_of(p), None, why)
        if paths:
            with ProcessPoolExecutor(max_workers=min(args.workers, len(paths))) as pool:
                jobs = [pool.submit(_grade_one, str(p), name_of(p), args.solutions, limits, hidden, modules,
                                    bool(args.written)) for p in paths]
                for job in as_completed(jobs):
                    report(*job.result())
    if out:
        out.close()
    if args.written:
        import nbformat

        from labkit.grading.export import student_of
        from labkit.grading.written import questions, write_pages, write_score_sheet
        folder = Path(args.written)
        sheet = []
        for name, by_student in sorted(written.items()):
            qs = questions(nbformat.read(Path(args.solutions) / name, as_version=4))
            write_pages(folder, name, qs, by_student)
            sheet += [(shown, q.label, student_of(shown), q.points) for shown in by_student for q in qs]
        folder.mkdir(parents=True, exist_ok=True)
        write_score_sheet(folder / "written_scores.csv", sheet)
        print(f"wrote the written answers to {folder} ({len(sheet)} to mark; marks go in "
              f"{folder / 'written_scores.csv'})")
    if args.format in ("gradescope", "canvas"):
        from labkit.grading import export
        target = args.out or ("results.json" if args.format == "gradescope" else "canvas.csv")
        if args.format == "gradescope":
            Path(target).write_text(json.dumps(export.gradescope(graded, errors), indent=1), encoding="utf-8")
        else:
            unknown = export.canvas(graded, errors, target, roster, extra, possible)
            if unknown:
                print(f"labkit grade: not in the roster (kept under their folder name): {', '.join(unknown)}",
                      file=sys.stderr)
        print(f"wrote {target}")
    if len(paths) + len(refused) > 1:
        print(f"{len(paths) + len(refused)} notebooks: {passed}/{total} exercises passed")
    if args.csv:
        print(f"wrote {args.csv}")
    return 0 if all_passed else 1


class BadPart(ValueError):
    """A part that grade-merge refuses (one line says why)."""


def read_part(name: str) -> list[list[str]]:
    """The rows of one grade CSV, checked: the header, four cells a row, known statuses, one
    verdict per exercise and one score (or error) per notebook."""
    from labkit.grading.notebook import NotGradable, read_file
    try:  # a regular file of its own, not a link to something else
        table = list(csv.reader(io.StringIO(read_file(name, 256 << 20).decode("utf-8"), newline="")))
    except NotGradable as err:
        raise BadPart(f"{name}: {err}") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise BadPart(f"{name}: cannot be read ({type(err).__name__})") from None
    if not table or table[0] != HEADER:
        raise BadPart(f"{name} is not a grade CSV (its header is not {','.join(HEADER)})")
    seen: set[tuple[str, str]] = set()
    for line, row in enumerate(table[1:], 2):
        if len(row) != len(HEADER):
            raise BadPart(f"{name}, line {line}: {len(row)} cells, not {len(HEADER)}")
        if row[2] not in STATUSES:
            raise BadPart(f"{name}, line {line}: unknown status (not one of {', '.join(sorted(STATUSES))})")
        key = (row[0], row[1] if row[2] not in ("score", "error") else "")
        if key in seen:
            raise BadPart(f"{name}, line {line}: a second row for {row[0][:80]!r}"
                          + (f", exercise {row[1][:40]!r}" if key[1] else ""))
        seen.add(key)
    for nb in dict.fromkeys(r[0] for r in table[1:]):  # a score must be what its notebook's rows say
        rows = [r for r in table[1:] if r[0] == nb]
        graded = [r for r in rows if r[2] in ("passed", "failed", "not attempted")]
        score = next((r[3] for r in rows if r[2] == "score"), None)
        if score is not None and score != f"{sum(r[2] == 'passed' for r in graded)}/{len(graded)}":
            raise BadPart(f"{name}: the score {score[:20]!r} of {nb[:80]!r} is not what its exercise rows say")
    return table[1:]


def cli_merge(argv: list[str]) -> int:
    """``python -m labkit grade-merge A.csv B.csv ... --out ALL.csv``: the shards' rows, one header.

    A notebook graded in two parts, a malformed part or conflicting rows are refused: nothing is
    written, and one line says which part and which line."""
    from labkit.grading.verdict import csv_cell
    p = argparse.ArgumentParser(prog="python -m labkit grade-merge",
                                description="Join the CSVs of `grade --shard i/n` runs into one (sorted by notebook).")
    p.add_argument("inputs", nargs="+", metavar="CSV")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--written", metavar="CSV", help="a filled-in written_scores.csv (grade --written): its marks "
                   "become rows 'Question N.k, marked, points/max'")
    args = p.parse_args(argv)
    rows: list[list[str]] = []
    owner: dict[str, str] = {}
    try:
        if len(set(args.inputs)) != len(args.inputs):
            raise BadPart("the same part is given twice")
        for name in args.inputs:
            part = read_part(name)
            for nb in dict.fromkeys(r[0] for r in part):
                if nb in owner:
                    raise BadPart(f"{nb[:80]!r} is graded in both {owner[nb]} and {name}")
                owner[nb] = name
            rows += part
        if args.written:
            from labkit.grading.written import read_scores
            try:
                marks = read_scores(args.written)
            except (OSError, ValueError) as err:
                raise BadPart(str(err)) from None
            seen = set()
            for m in marks:
                key = (m["notebook"], m["question"])
                if key in seen:
                    raise BadPart(f"{args.written}: two marks for {m['notebook'][:80]!r}, Question {m['question'][:20]}")
                seen.add(key)
                owner.setdefault(m["notebook"], args.written)
                rows.append([m["notebook"], f"Question {m['question']}", "marked",
                             f"{m['points']:g}/{m['max']:g}" + (f": {m['comment']}" if m["comment"] else "")])
    except BadPart as err:
        print(f"labkit grade-merge: {err}: nothing written", file=sys.stderr)
        return 2
    order = {nb: i for i, nb in enumerate(sorted(owner))}
    rows.sort(key=lambda r: order[r[0]])  # stable: each notebook's exercises keep their order
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([HEADER] + [[csv_cell(v) for v in r] for r in rows])
    print(f"wrote {args.out} ({len(order)} notebooks from {len(args.inputs)} files)")
    return 0
