"""The `counter` workload of shared/WORKLOADS.md with Python's multiprocessing
(P = 2 forked processes each add 1 to one shared Value('q') K = 1e5 times
under its lock). A thin wrapper: the code lives in workloads.py, which runs
every workload; this prints only the counter line (impl "python")."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workloads  # noqa: E402

if __name__ == "__main__":
    sys.exit(workloads.main(["--workload", "counter"] + sys.argv[1:]))
