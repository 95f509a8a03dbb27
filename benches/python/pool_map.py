"""The `pool_map` workload of shared/WORKLOADS.md with Python's multiprocessing:
map a trivial function over T = 1e4 items with Pool(P = 2) (fork), chunksize 1
and the default. Prints the WORKLOADS.md JSON lines (impl "python"),
us_per_task, best of a few runs with the pool already started."""
import json
import multiprocessing as mp
import sys
import time


def inc(x):
    return x + 1


def best(reps, f):
    return min(f() for _ in range(reps))


def main():
    mp.set_start_method("fork")
    t_items, p = 10_000, 2
    reps = 3 if "--quick" in sys.argv else 10
    with mp.Pool(p) as pool:
        pool.map(inc, range(100))  # warm up: workers started
        for variant, chunksize in (("chunksize_1", 1), ("chunksize_default", None)):
            ok = True

            def run():
                nonlocal ok
                t = time.perf_counter()
                r = pool.map(inc, range(t_items), chunksize)
                dt = time.perf_counter() - t
                ok = ok and r == [x + 1 for x in range(t_items)]
                return dt

            dt = best(reps, run)
            print(json.dumps({
                "impl": "python", "workload": "pool_map", "variant": variant,
                "params": {"T": t_items, "P": p}, "metric": "us_per_task",
                "value": round(dt / t_items * 1e6, 4),
                "check": "ok" if ok else "a result was wrong",
            }))


if __name__ == "__main__":
    main()
