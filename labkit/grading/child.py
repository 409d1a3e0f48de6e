"""Run one step of grading in a forked child with its own memory and time limits.

Everything in the grader that parses or judges what a submission produced (its notebook's JSON
and code, the outcomes its functions returned) runs here: a submission that makes that step
blow up in memory or time fails alone, with the limit named, and the grader goes on. The
child's answer comes back as JSON through a pipe. Introduced for ``python -m labkit grade``.
"""
from __future__ import annotations

import json
import os
import resource
import select
import signal
import time
import traceback
from typing import Any, Callable

MEMORY = 4 << 30  # bytes the child may add to what it inherits
SECONDS = 120  # wall-clock limit (CPU: the same)
_ANSWER = 64 << 20  # bytes read back at most


class ChildFailed(RuntimeError):
    """The step did not finish: ``reason`` is one line ('ran out of its 4 GiB of memory')."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _vm_size() -> int:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        return 0


def in_child(fn: Callable[..., Any], *args: Any, memory: int = MEMORY, seconds: float = SECONDS) -> Any:
    """``fn(*args)`` computed in a forked child (its result must be JSON); ChildFailed if the
    child runs out of memory or time, dies, or raises (with the exception's first line)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: limits, the work, the answer, and out (no cleanup handlers)
        code = 0
        try:
            os.close(read)
            limit = _vm_size() + memory
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            resource.setrlimit(resource.RLIMIT_CPU, (int(seconds) + 1, int(seconds) + 2))
            try:
                import torch
                torch.set_num_threads(1)
            except ImportError:
                pass
            try:
                answer = {"ok": fn(*args)}
            except MemoryError:
                answer = {"failed": f"ran out of its {memory >> 30} GiB of memory"}
            except RecursionError:
                answer = {"failed": "nested too deep (RecursionError)"}
            except Exception as err:  # noqa: BLE001 - reported as the step's failure
                line = traceback.format_exception_only(type(err), err)[-1].strip()
                answer = {"failed": line[:300]}
            data = json.dumps(answer).encode()
            with os.fdopen(write, "wb") as out:
                out.write(data)
        except BaseException:  # noqa: BLE001 - never return into the parent's code
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    chunks, size, deadline = [], 0, time.monotonic() + seconds
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                raise ChildFailed(f"ran past its limit of {seconds:g} s")
            ready, _, _ = select.select([read], [], [], left)
            if not ready:
                continue
            chunk = os.read(read, 1 << 20)
            if not chunk:
                break
            size += len(chunk)
            if size > _ANSWER:
                os.kill(pid, signal.SIGKILL)
                raise ChildFailed("answered more than it may")
            chunks.append(chunk)
    finally:
        os.close(read)
        _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        why = {signal.SIGKILL: "was killed (out of memory?)", signal.SIGXCPU: f"ran past its {seconds:g} s of CPU",
               signal.SIGSEGV: "crashed"}.get(sig, f"died of signal {sig}")
        raise ChildFailed(why)
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError:
        raise ChildFailed("gave no answer (out of memory?)") from None
    if "failed" in answer:
        raise ChildFailed(answer["failed"])
    return answer["ok"]
