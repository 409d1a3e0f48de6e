"""Run every case of cases.py in its own fresh subprocess and save results.json.

    .venv/bin/python tests/memory_faults/run.py [CASE_ID ...] [--jobs 2]

Each case: `<this python> tests/memory_faults/case_runner.py ID`, cwd=the repository root, timeout 300 s.
Per case we record the return code / signal, whether the process survived (exited normally with
status 0 and printed its RESULT_JSON line), whether the check printed a pass line (a stdout line
starting with ✔) or raised, the exception's type and full str(), and the 'hint:' line(s).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cases  # noqa: E402

PY = sys.executable
CWD = os.path.dirname(os.path.dirname(HERE))  # the repository root
TIMEOUT = 300


def run_case(c: dict) -> dict:
    t0 = time.time()
    rec = dict(id=c["id"], exercise=c["exercise"], description=c["description"], expected=c["expected"])
    try:
        p = subprocess.run([PY, os.path.join(HERE, "case_runner.py"), c["id"]], cwd=CWD,
                           capture_output=True, text=True, timeout=TIMEOUT,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
        rc, out, err, timed_out = p.returncode, p.stdout, p.stderr, False
    except subprocess.TimeoutExpired as e:
        rc = None
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        timed_out = True
    rec["seconds"] = round(time.time() - t0, 2)
    rec["returncode"] = rc
    rec["timed_out"] = timed_out
    rec["signal"] = signal.Signals(-rc).name if (rc is not None and rc < 0) else None
    result = None
    for line in out.splitlines():
        if line.startswith("RESULT_JSON: "):
            result = json.loads(line[len("RESULT_JSON: "):])
    rec["result_line_seen"] = result is not None
    rec["survived"] = (rc == 0 and result is not None)
    pass_lines = [l for l in out.splitlines() if l.lstrip().startswith("✔")]
    rec["pass_lines"] = pass_lines
    rec["check_passed"] = bool(result and result["passed"])
    rec["check_raised"] = bool(result and not result["passed"])
    rec["rejected"] = not rec["check_passed"]  # a crash or timeout also counts as "not accepted"
    rec["exc_type"] = result["exc_type"] if result else None
    rec["exc_str"] = result["exc_str"] if result else None
    rec["traceback"] = result["traceback"] if result else None
    text = rec["exc_str"] or ""
    rec["hint_lines"] = [l.strip() for l in text.splitlines() if l.strip().startswith("hint:")]
    rec["stdout"] = out[-20000:]
    rec["stderr"] = err[-20000:]
    status = ("SURVIVED" if rec["survived"] else f"DIED rc={rc} sig={rec['signal']} timeout={timed_out}")
    verdict = "PASS" if rec["check_passed"] else ("REJECTED" if rec["check_raised"] else "no verdict")
    print(f"{c['id']:6} {rec['seconds']:6.1f}s {status:30} {verdict:9} "
          f"{(rec['hint_lines'] or [''])[0][:110]}", flush=True)
    return rec


def main(argv: list[str]) -> None:
    jobs = 2
    if "--jobs" in argv:
        i = argv.index("--jobs")
        jobs = int(argv[i + 1])
        del argv[i:i + 2]
    wanted = argv or [c["id"] for c in cases.CASES]
    todo = [cases.get(i) for i in wanted]
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=min(jobs, 2)) as ex:
        results = list(ex.map(run_case, todo))
    out_path = os.path.join(HERE, "results.json")
    if argv:  # partial run: merge into an existing results.json
        old = {}
        if os.path.exists(out_path):
            with open(out_path, encoding="utf-8") as f:
                old = {r["id"]: r for r in json.load(f)["cases"]}
        old.update({r["id"]: r for r in results})
        order = [c["id"] for c in cases.CASES]
        results = [old[i] for i in order if i in old]
    summary = {
        "n_cases": len(results),
        "survived": sum(r["survived"] for r in results),
        "rejected": sum(r["rejected"] for r in results),
        "passed": sum(r["check_passed"] for r in results),
        "wall_seconds_this_run": round(time.time() - t0, 1),
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"summary": summary, "cases": results}, f, indent=1, ensure_ascii=False)
    print(json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv[1:])
