"""RQ's side of `multiproc bench --workload redis_pool`: T trivial jobs through
P `rq worker`s on the server at URL, with RQ's default worker (a fork per job)
and with SimpleWorker (jobs in the worker process). Prints JSON lines
(impl "python", us_per_task from the first enqueue to the last job finished).

Usage: python rq_bench.py URL T P (run by rq_bench.sh, inside a venv with rq)."""
import json
import os
import subprocess
import sys
import time

from redis import Redis
from rq import Queue, Worker
from rq.job import Job

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import rq_tasks  # noqa: E402

LIMIT = 600.0


def run(conn, url, t, p, variant, worker_class):
    qname = f"multiproc-bench-{os.getpid()}-{variant}"
    q = Queue(qname, connection=conn)
    env = dict(os.environ, PYTHONPATH=HERE)
    rq = os.path.join(os.path.dirname(sys.executable), "rq")
    workers = [
        subprocess.Popen(
            [rq, "worker", "--url", url, "--worker-class", worker_class, "--quiet", qname],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(p)
    ]
    try:
        t0 = time.monotonic()
        while len(Worker.all(queue=q)) < p:
            if time.monotonic() - t0 > 60:
                raise RuntimeError("the rq workers did not come up")
            time.sleep(0.01)
        start = time.perf_counter()
        jobs = [q.enqueue(rq_tasks.inc, i) for i in range(t)]
        deadline = time.monotonic() + LIMIT
        while q.finished_job_registry.count + q.failed_job_registry.count < t:
            if time.monotonic() > deadline:
                raise RuntimeError("rq did not finish in time")
            time.sleep(0.002)
        dt = time.perf_counter() - start
        got = Job.fetch_many([j.id for j in jobs], connection=conn)
        total = sum(j.return_value() or 0 for j in got if j is not None)
        want = t * (t + 1) // 2
        check = "ok" if total == want else f"sum {total} != {want}"
        print(json.dumps({
            "impl": "python", "workload": "redis_pool", "variant": variant,
            "params": {"T": t, "P": p}, "metric": "us_per_task",
            "value": round(dt / t * 1e6, 4), "check": check,
        }), flush=True)
    finally:
        for w in workers:
            w.kill()
            w.wait()


def main():
    url, t, p = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    conn = Redis.from_url(url)
    run(conn, url, t, p, "rq_fork_per_job", "rq.worker.Worker")
    run(conn, url, t, p, "rq_simple_worker", "rq.worker.SimpleWorker")


if __name__ == "__main__":
    main()
