"""Measure the checkers on first contact with tests/wrong_answers_fresh.py.

Every wrong answer (and every unusual right one) is fed to the notebook's own check,
``getattr(labkit.check, exercise)(fn)``, in a fresh Python process of its own (2 at a time,
120 s each), and the outcome recorded:

- rejected: the check raised CheckFailed; its ``hint`` is kept, and whether one of the wrong
  answer's ``names`` regexes matches it (named);
- accepted: the check printed its pass line;
- crashed: the process died (exit code or signal recorded); timeout: it ran past 120 s;
- other: anything else (the check said "not implemented", or raised something that is not
  CheckFailed).

Whether a hint names the mistake in substance, only restates the rule or what was seen
("generic"), or instead names some *other* specific mistake ("misleading") is a human
judgement: it is read from tests/fresh_judgements.json (keyed by "exercise | mistake", with a
"verdict" and a "note"), written after reading the hints. A rejected answer without a
judgement counts as "names" when a regex matched, and as "not judged yet" otherwise.

    PYTHONPATH=.:tests python tests/measure_fresh.py            # run everything, write the report
    PYTHONPATH=.:tests python tests/measure_fresh.py --report   # rebuild the report from the JSON
    PYTHONPATH=.:tests python tests/measure_fresh.py --only 3 17  # rerun some wrong answers

Writes tests/fresh_results.json and tests/fresh_first_contact.md.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "tests" / "fresh_results.json"
REPORT = ROOT / "tests" / "fresh_first_contact.md"
JUDGEMENTS = ROOT / "tests" / "fresh_judgements.json"
TIMEOUT = 120
WORKERS = 2


# ---------------------------------------------------------------- the child: one check
def child(kind: str, index: int, out: str) -> None:
    import labkit  # noqa: F401  (first)
    from labkit import check
    import wrong_answers_fresh as fresh

    if kind == "wrong":
        wa = fresh.WRONG[index]
        exercise, fn = wa.exercise, wa.fn
    else:
        exercise, fn = fresh.RIGHT[index]
    record = {"outcome": None, "hint": None, "message": None, "stdout": None}
    buf = io.StringIO()
    t0 = time.time()
    try:
        with contextlib.redirect_stdout(buf):
            getattr(check, exercise)(fn)
    except check.CheckFailed as err:
        record.update(outcome="rejected", hint=getattr(err, "hint", None), message=str(err))
    except BaseException as err:  # noqa: BLE001  (the checker itself failed, or something else)
        record.update(outcome="other", message=f"{type(err).__name__}: {err}")
    else:
        text = buf.getvalue()
        passed = any(line.startswith("✔") and exercise in line for line in text.splitlines())
        record.update(outcome="accepted" if passed else "other")
    record["stdout"] = buf.getvalue()[-4000:]
    record["seconds"] = round(time.time() - t0, 2)
    Path(out).write_text(json.dumps(record), encoding="utf-8")


# ---------------------------------------------------------------- the parent
def _signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except (ValueError, TypeError):
        return f"signal {-rc}"


def run_one(kind: str, index: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, str(index), out]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")] +
                                            ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env.setdefault("PYTHONWARNINGS", "ignore")
        t0 = time.time()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired as err:
            tail = (err.stderr or b"")
            tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
            return {"outcome": "timeout", "hint": None, "message": f"ran past {TIMEOUT} s",
                    "stderr": tail[-2000:], "seconds": TIMEOUT}
        seconds = round(time.time() - t0, 1)
        if os.path.exists(out):
            record = json.loads(Path(out).read_text(encoding="utf-8"))
            record["wall_seconds"] = seconds
            if proc.returncode != 0:
                record["exit"] = proc.returncode
            return record
        code = (_signal_name(proc.returncode) if proc.returncode < 0 else f"exit code {proc.returncode}")
        return {"outcome": "crashed", "hint": None, "message": f"process died: {code}",
                "exit": proc.returncode, "stderr": proc.stderr[-3000:], "wall_seconds": seconds}


def named(names, hint) -> bool:
    return bool(hint) and any(re.search(p, hint, re.I) for p in names)


def key(exercise: str, mistake: str) -> str:
    return f"{exercise} | {mistake}"


def measure(only: list[int] | None, only_right: list[int] | None = None) -> dict:
    import wrong_answers_fresh as fresh

    jobs = [("wrong", i) for i in range(len(fresh.WRONG))] + [("right", i) for i in range(len(fresh.RIGHT))]
    partial = only is not None or only_right is not None
    if partial:
        jobs = [("wrong", i) for i in only or []] + [("right", i) for i in only_right or []]
    old = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() and partial else None
    results = {"wrong": [None] * len(fresh.WRONG), "right": [None] * len(fresh.RIGHT)}
    if old:
        for kind in ("wrong", "right"):
            for i, r in enumerate(old.get(kind, [])[:len(results[kind])]):
                results[kind][i] = r
    done = 0

    def work(job):
        return job, run_one(*job)

    with ThreadPoolExecutor(WORKERS) as pool:
        for (kind, i), rec in pool.map(work, jobs):
            done += 1
            if kind == "wrong":
                wa = fresh.WRONG[i]
                rec.update(index=i, exercise=wa.exercise, mistake=wa.mistake, names=list(wa.names),
                           named=named(wa.names, rec.get("hint")))
            else:
                ex, fn = fresh.RIGHT[i]
                rec.update(index=i, exercise=ex, variant=i)
                previous = (old or {}).get("right", [None] * (i + 1))[i] if old else None
                if previous and previous.get("outcome") != rec["outcome"]:  # keep the first contact
                    rec["first_contact"] = {k: previous.get(k) for k in ("outcome", "hint", "message")}
                    rec["first_contact"]["note"] = (previous.get("first_contact") or {}).get("note")
            results[kind][i] = rec
            print(f"[{done}/{len(jobs)}] {kind} {i} {rec['exercise']}: {rec['outcome']}"
                  + (f" named={rec.get('named')}" if kind == "wrong" else ""), flush=True)
    return results


# ---------------------------------------------------------------- the report
def load_judgements() -> dict:
    if JUDGEMENTS.exists():
        return json.loads(JUDGEMENTS.read_text(encoding="utf-8"))
    return {}


def report(results: dict) -> None:
    judgements = load_judgements()
    wrong = [r for r in results["wrong"] if r]
    right = [r for r in results["right"] if r]
    for r in wrong:
        j = judgements.get(key(r["exercise"], r["mistake"])) or {}
        if r["outcome"] != "rejected":
            verdict = None
        elif "verdict" in j:
            verdict = j["verdict"]
        else:
            verdict = "names" if r["named"] else None  # None: not judged yet
        r["verdict"] = verdict
        r["misleading"] = verdict == "misleading"
        r["judgement"] = j.get("note")
    n = len(wrong)
    rejected = [r for r in wrong if r["outcome"] == "rejected"]
    accepted = [r for r in wrong if r["outcome"] == "accepted"]
    crashed = [r for r in wrong if r["outcome"] == "crashed"]
    timeouts = [r for r in wrong if r["outcome"] == "timeout"]
    other = [r for r in wrong if r["outcome"] == "other"]
    named_n = sum(bool(r["named"]) for r in wrong)
    substance = [r for r in wrong if r["verdict"] == "names"]
    misleading = [r for r in wrong if r["misleading"]]
    mis_unnamed = [r for r in misleading if not r["named"]]
    mis_false_pos = [r for r in misleading if r["named"]]
    generic = [r for r in wrong if r["verdict"] == "generic"]
    unjudged = [r for r in rejected if r["verdict"] is None]
    false_pos = [r for r in wrong if r["named"] and r["verdict"] != "names"]
    missed = [r for r in wrong if not r["named"] and r["verdict"] == "names"]
    right_ok = sum(r["outcome"] == "accepted" for r in right)
    right_first = [r for r in right if (r.get("first_contact") or {}).get("outcome", r["outcome"]) == "accepted"]
    summary = {
        "wrong_answers": n, "rejected": len(rejected), "accepted": len(accepted), "named": named_n,
        "named_in_substance": len(substance), "misleading": len(misleading),
        "misleading_not_named": len(mis_unnamed), "misleading_named_by_regex_only": len(mis_false_pos),
        "generic": len(generic), "unjudged": len(unjudged), "crashed": len(crashed),
        "timeouts": len(timeouts), "other": len(other), "right_variants": len(right),
        "right_accepted_first_contact": len(right_first), "right_accepted_now": right_ok,
    }
    results["summary"] = summary
    RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")

    def hint_of(r):
        h = r.get("hint") or r.get("message") or ""
        return " ".join(h.split())

    lines = ["# Fresh wrong answers: the checkers on first contact", "",
             "Wrong answers written from the notebooks' statements and labkit's reference code only "
             "(`tests/wrong_answers_fresh.py`), each shown to differ from labkit's reference on a valid "
             "input (`tests/verify_fresh.py`), then run through `labkit.check` in a fresh process each, "
             "2 at a time, 120 s each (`tests/measure_fresh.py`). CPU only, Triton in its interpreter.", "",
             "*named* is the mechanical test (one of the mistake's regexes matches the hint). Every hint "
             "was also read (`tests/fresh_judgements.json`): *names* (names this mistake in substance), "
             "*generic* (restates the rule or what was seen, names no particular mistake), *misleading* "
             "(names some other specific mistake).", "",
             "## Totals (first contact)", "",
             f"- rejected: **{len(rejected)}/{n}**",
             f"- named (regex): **{named_n}/{n}**; named in substance (read): **{len(substance)}/{n}**"
             f" ({len(false_pos)} regex matches that do not really name the mistake, {len(missed)} hint(s) "
             f"that name it in words the regexes missed)",
             f"- misleading: **{len(misleading)}/{n}** — {len(mis_unnamed)} among the hints the regexes "
             f"did not match, {len(mis_false_pos)} among regex matches that were accidental",
             f"- generic: {len(generic)}/{n}" + (f"; not judged yet: {len(unjudged)}" if unjudged else ""),
             f"- accepted (wrong answer passed): **{len(accepted)}/{n}**",
             f"- crashes: **{len(crashed)}**, timeouts: {len(timeouts)}, other: {len(other)}",
             f"- right variants accepted: **{len(right_first)}/{len(right)}** on first contact, "
             f"{right_ok}/{len(right)} now (see the last section)", ""]
    by_ex = {}
    for r in wrong:
        by_ex.setdefault(r["exercise"], []).append(r)
    lines += ["| exercise | wrong | rejected | named (regex) | names (read) | misleading | accepted | crashed |",
              "|---|---|---|---|---|---|---|---|"]
    for ex, rs in by_ex.items():
        lines.append(f"| {ex} | {len(rs)} | {sum(r['outcome'] == 'rejected' for r in rs)} | "
                     f"{sum(bool(r['named']) for r in rs)} | {sum(r['verdict'] == 'names' for r in rs)} | "
                     f"{sum(bool(r['misleading']) for r in rs)} | {sum(r['outcome'] == 'accepted' for r in rs)} | "
                     f"{sum(r['outcome'] == 'crashed' for r in rs)} |")
    lines.append("")

    def section(title, rows, fmt, intro=None):
        lines.append(f"## {title} ({len(rows)})")
        lines.append("")
        if intro:
            lines.extend([intro, ""])
        lines.extend(fmt(r) for r in rows) if rows else lines.append("none")
        lines.append("")

    def note(r):
        return f"\n  - note: {r['judgement']}" if r.get("judgement") else ""

    section("Accepted wrong answers", accepted,
            lambda r: f"- `{r['exercise']}` #{r['index']}: {r['mistake']}{note(r)}")
    section("Crashed", crashed,
            lambda r: f"- `{r['exercise']}` #{r['index']}: {r['mistake']} — {r['message']}{note(r)}")
    section("Timed out", timeouts, lambda r: f"- `{r['exercise']}` #{r['index']}: {r['mistake']}")
    section("Other outcomes", other, lambda r: f"- `{r['exercise']}` #{r['index']}: {r['mistake']} — {hint_of(r)}")
    section("Misleading hints", misleading,
            lambda r: f"- `{r['exercise']}` #{r['index']}: {r['mistake']}"
                      f"{' (the regex matched by accident)' if r['named'] else ''}\n  - hint: {hint_of(r)}{note(r)}")
    section("Generic hints", generic,
            lambda r: f"- `{r['exercise']}` #{r['index']}: {r['mistake']}"
                      f"{' (the regex matched by accident)' if r['named'] else ''}\n  - hint: {hint_of(r)}{note(r)}")
    section("Named in substance, missed by the regexes", missed,
            lambda r: f"- `{r['exercise']}` #{r['index']}: {r['mistake']}\n  - hint: {hint_of(r)}{note(r)}")
    if unjudged:
        section("Not judged yet", unjudged,
                lambda r: f"- `{r['exercise']}` #{r['index']}: {r['mistake']}\n  - hint: {hint_of(r)}")
    bad_right = [r for r in right if r["outcome"] != "accepted" or r.get("first_contact")]
    section("Right variants not accepted (first contact)", bad_right,
            lambda r: (f"- `{r['exercise']}` variant #{r['index']}: first contact "
                       f"{(r.get('first_contact') or r)['outcome']} — {' '.join(((r.get('first_contact') or r).get('hint') or (r.get('first_contact') or r).get('message') or '').split())}"
                       + (f"\n  - {r['first_contact']['note']}" if (r.get('first_contact') or {}).get('note') else "")
                       + f"\n  - now: {r['outcome']}"))
    REPORT.write_text("\n".join(lines), encoding="utf-8")
    print(json.dumps(summary, indent=1))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=3, metavar=("KIND", "INDEX", "OUT"))
    ap.add_argument("--report", action="store_true", help="rebuild the report from fresh_results.json")
    ap.add_argument("--only", nargs="*", type=int, help="rerun these wrong answers only")
    ap.add_argument("--right", nargs="*", type=int, help="rerun these right variants only")
    args = ap.parse_args(argv)
    if args.child:
        kind, index, out = args.child
        child(kind, int(index), out)
        return
    if args.report:
        report(json.loads(RESULTS.read_text(encoding="utf-8")))
        return
    report(measure(args.only, args.right))


if __name__ == "__main__":
    main()
