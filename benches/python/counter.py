"""The `counter` workload of shared/WORKLOADS.md with Python's multiprocessing:
P = 2 forked processes each add 1 to one shared Value('q') K = 1e5 times under
its lock. Prints the WORKLOADS.md JSON line (impl "python")."""
import json
import multiprocessing as mp
import time


def work(v, k):
    for _ in range(k):
        with v.get_lock():
            v.value += 1


def main():
    mp.set_start_method("fork")
    k, p = 100_000, 2
    v = mp.Value("q", 0)
    procs = [mp.Process(target=work, args=(v, k)) for _ in range(p)]
    t = time.perf_counter()
    for x in procs:
        x.start()
    for x in procs:
        x.join()
    dt = time.perf_counter() - t
    want = k * p
    check = "ok" if v.value == want else f"final {v.value} != expected {want}"
    print(json.dumps({
        "impl": "python", "workload": "counter", "variant": "Value_lock",
        "params": {"P": p, "K": k}, "metric": "ns_per_increment",
        "value": round(dt / want * 1e9, 1), "check": check,
    }))


if __name__ == "__main__":
    main()
