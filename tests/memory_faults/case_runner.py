"""Run one case in this (fresh) process: python case_runner.py CASE_ID [--ref EX].

Imports labkit (which turns on Triton's interpreter) BEFORE triton, writes the student's
source to a module file (triton.jit needs real source), imports it and calls the check
exactly as the notebook's check cell does. Prints one line 'RESULT_JSON: {...}' at the end.
"""
import importlib.util
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import labkit  # noqa: F401  first: picks the GPU or Triton's interpreter
from labkit import device  # noqa: F401
from labkit import check

import cases

CHECKS = {  # exercise -> (check function name, wrapper name), as in the notebooks' check cells
    "02": ("softmax_triton", "softmax_triton"),
    "03": ("online_softmax_triton", "online_softmax_triton"),
    "06": ("flash_attention_forward_triton", "flash_attention_forward_triton"),
    "07": ("flash_attention_backward_triton", "flash_attention_backward_triton"),
}


def main():
    case = cases.get(sys.argv[1])
    src_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
    os.makedirs(src_dir, exist_ok=True)
    path = os.path.join(src_dir, f"{case['id']}.py")
    with open(path, "w") as f:
        f.write(case["source"])
    spec = importlib.util.spec_from_file_location(f"student_{case['id']}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    check_name, wrapper_name = CHECKS[case["exercise"]]
    fn = getattr(mod, wrapper_name)
    res = {"id": case["id"], "passed": False, "exc_type": None, "exc_str": None, "traceback": None}
    t0 = time.time()
    print("CHECK_BEGIN", flush=True)
    try:
        getattr(check, check_name)(fn)  # e.g. check.softmax_triton(softmax_triton)
        res["passed"] = True
    except BaseException as err:  # noqa: BLE001 - we want to record everything, incl. SystemExit
        res["exc_type"] = type(err).__module__ + "." + type(err).__qualname__
        res["exc_str"] = str(err)
        res["traceback"] = traceback.format_exc()
    print("CHECK_END", flush=True)
    res["check_seconds"] = round(time.time() - t0, 2)
    print("RESULT_JSON: " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
