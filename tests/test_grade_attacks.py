"""A hostile class against the sandboxed grader: every attack in tests/attacks.py must be RESISTED.

The grader is a black box driven through `python -m labkit grade` / `grade-merge`; each attack states
what "resisted" means against the public contract (README: "Instructor workflow", "What the sandbox
protects"; `grade --help`). A failing test names the attack that got through and what it did.

Set LABKIT_ATTACK_RESULTS=FILE to also write every verdict and its evidence as JSON.
"""
from __future__ import annotations

import json
import os

import pytest

import attacks as A

pytestmark = pytest.mark.needs("bubblewrap")


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    ctx = A.make_ctx(tmp_path_factory.mktemp("attacks"))
    camp = None
    try:
        camp = A.run_campaign(ctx)
        camp.verdicts = {}
        for a in A.ATTACKS:
            try:
                camp.verdicts[a.id] = a.judge(ctx, camp, a)
            except Exception as err:  # noqa: BLE001 - a judge that breaks is reported, not swallowed
                camp.verdicts[a.id] = (False, f"INCONCLUSIVE: the judge raised {err!r}")
        camp.invariants = _invariants(ctx, camp)
        out = os.environ.get("LABKIT_ATTACK_RESULTS")
        if out:
            with open(out, "w") as f:
                json.dump({"wall_s": round(camp.wall, 1),
                           "runs": {n: {"wall_s": round(r.wall, 1), "rc": r.rc, "timed_out": r.timed_out,
                                        "peak_rss_mib": r.peak_rss >> 20, "killed_for_memory": r.killed_for_memory}
                                    for n, r in camp.runs.items()},
                           "attacks": {a.id: {"class": a.cls, "what": a.what, "group": a.group,
                                              "resisted": camp.verdicts[a.id][0], "evidence": camp.verdicts[a.id][1]}
                                       for a in A.ATTACKS},
                           "invariants": camp.invariants}, f, indent=1)
        yield camp
    finally:
        A.cleanup(ctx, camp)


@pytest.mark.parametrize("attack", A.ATTACKS, ids=lambda a: a.id)
def test_attack_resisted(campaign, attack):
    ok, evidence = campaign.verdicts[attack.id]
    assert ok, (f"[{attack.id}] NOT RESISTED (class {attack.cls}: {A.ATTACK_CLASSES[attack.cls]}): "
                f"{attack.what} -> {evidence}")


# ------------------------------------------------------------------------- invariants over every run

def _invariants(ctx, camp) -> dict[str, list[str]]:
    """Whole-campaign properties (each a list of problems; empty when it holds)."""
    inv: dict[str, list[str]] = {}
    p = inv.setdefault("graders_finished", [])
    for name in ("main", "c1", "course"):
        r = camp.runs.get(name)
        if r is None:
            continue
        if r.timed_out:
            p.append(f"{name}: still running after {r.timeout} s")
        elif r.rc not in (0, 1):
            p.append(f"{name}: exit {r.rc}: {A.short(r.stderr[-300:], 300)}")
        if "Traceback (most recent call last)" in r.stderr:
            p.append(f"{name}: traceback: {A.short(r.stderr[r.stderr.rfind('Traceback'):][-300:], 300)}")
    p = inv.setdefault("grader_memory_bounded", [])
    for name, r in camp.runs.items():
        if name in ("main", "c1", "course") and (r.peak_rss > A.RSS_BOUND or r.killed_for_memory):
            p.append(f"{name}: peak RSS {r.peak_rss >> 20} MiB")
    p = inv.setdefault("controls", [])
    main = camp.runs.get("main")
    if main is not None:
        bob = A.rows_of(main, "bob")
        if not A.all_passed(bob):
            p.append(f"main: honest bob not all passed: {bob}")
        if A.rows_of(main, "victim").get("double", ("?",))[0] != "failed":
            p.append(f"main: victim's wrong double not failed: {A.rows_of(main, 'victim').get('double')}")
    course = camp.runs.get("course")
    if course is not None:
        base = A.rows_of(course, "baseline", A.COURSE_NB)
        if base.get("safe_softmax", ("?",))[0] != "passed":
            p.append(f"course: an honest safe_softmax was not passed: {base.get('safe_softmax')}")
        if base.get("logsumexp", ("?",))[0] == "passed":
            p.append("course: a logsumexp calling torch.logsumexp directly was passed (no reuse check to attack)")
    inv["course_files_unchanged"] = [f"{k} changed" for k in camp.course_before
                                     if camp.course_after.get(k) != camp.course_before[k]] + \
        [f"{k} appeared" for k in camp.course_after if k not in camp.course_before]
    vb, va = camp.venv_before, camp.venv_after
    inv["venv_unchanged"] = [f"new in site-packages: {n}" for n in va["listing"] if n not in vb["listing"]] + \
        [f"changed: {k}" for k in vb["files"] if va["files"].get(k) != vb["files"][k]]
    texts = {}
    for name, r in camp.runs.items():
        texts[f"{name} CSV"], texts[f"{name} stdout"], texts[f"{name} stderr"] = r.csv_text, r.stdout, r.stderr
    inv["no_secret_in_reports"] = A.secret_hits(ctx, texts)
    p = inv.setdefault("csv_cells_clean", [])
    for name, r in camp.runs.items():
        for row in r.rows:
            for c in row:
                p += [f"{name}: {x}" for x in A.cell_problems(c)]
    inv["no_process_left"] = [f"{name}: pid {pid}: {A.short(cmd, 100)}" for name, r in camp.runs.items()
                              for pid, cmd in r.leftovers]
    inv["no_scratch_left"] = [f"left in the grader's TMPDIR: {n}" for n in camp.scratch_left]
    inv["classmates_files_intact"] = [f"{grp}: bob's files changed" for grp in camp.classmate_hashes_before
                                      if camp.classmate_hashes_before[grp] != camp.classmate_hashes_after.get(grp)]
    return inv


INVARIANTS = ["graders_finished", "grader_memory_bounded", "controls", "course_files_unchanged", "venv_unchanged",
              "no_secret_in_reports", "csv_cells_clean", "no_process_left", "no_scratch_left",
              "classmates_files_intact"]


@pytest.mark.parametrize("name", INVARIANTS)
def test_invariant(campaign, name):
    problems = campaign.invariants[name]
    assert not problems, f"{name}: " + "; ".join(dict.fromkeys(problems))[:1500]


def test_enough_attacks():
    assert len(A.ATTACKS) >= 45
    assert {a.cls for a in A.ATTACKS} == set(range(1, 10))
