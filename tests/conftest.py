"""Set-up for the tests under pytest-xdist (make test: -n auto), where the workers share the cores."""
import os

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # Idle OpenMP threads sleep instead of spinning. The notebooks' kernels and the other child
    # processes (which inherit this) keep torch's default thread count, and their spinning threads
    # took cores the other worker needed: the blank copies' inverted runs took ~10% longer.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import torch

    # Each worker gets its share of the cores for torch's intra-op threads in the pytest process. By
    # default every worker would use all the cores: on 2 cores two workers then run four busy
    # threads that wait on each other, and the in-process torch tests take ~1.7x as long (more
    # while notebooks run beside them).
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
