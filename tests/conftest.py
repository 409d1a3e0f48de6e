"""Set-up for the tests that run in the pytest process (the notebooks run in kernels of their own)."""
import os

# Under pytest-xdist (make test: -n auto) each worker gets its share of the cores for torch's
# intra-op threads. By default every worker would use all the cores: on 2 cores two workers then
# run four busy threads that wait on each other, and the in-process torch tests take ~1.7x as long
# (more while notebooks run beside them).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
