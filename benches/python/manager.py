"""The manager workloads of shared/WORKLOADS.md with Python's SyncManager:
- manager_rtt: one client does R = 1e4 set + get of one key on a
  manager-held dict (ns per proxy call);
- manager_append: P = 2 forked client processes each append K = 1e4 items
  to a manager-held list (appends per second; final length checked).
Prints the WORKLOADS.md JSON lines (impl "python")."""
import json
import multiprocessing as mp
import time


def line(workload, variant, params, metric, value, check):
    print(json.dumps({
        "impl": "python", "workload": workload, "variant": variant,
        "params": params, "metric": metric, "value": value, "check": check,
    }))


def appender(lst, k, base, ready, go):
    ready.release()
    go.wait()
    for j in range(k):
        lst.append(base + j)


def main():
    mp.set_start_method("fork")
    r, k, p = 10_000, 10_000, 2
    with mp.Manager() as m:
        d = m.dict()
        ok = True
        t = time.perf_counter()
        for i in range(r):
            d["key"] = i
            ok &= d["key"] == i
        dt = time.perf_counter() - t
        line("manager_rtt", "dict_set_get", {"R": r}, "ns_per_op",
             round(dt / (2 * r) * 1e9, 1), "ok" if ok else "a get returned the wrong value")

        lst = m.list()
        ready, go = mp.Semaphore(0), mp.Event()
        procs = [mp.Process(target=appender, args=(lst, k, i * k, ready, go)) for i in range(p)]
        for x in procs:
            x.start()
        for _ in procs:
            ready.acquire()
        t = time.perf_counter()
        go.set()
        for x in procs:
            x.join()
        dt = time.perf_counter() - t
        n = len(lst)
        check = "ok" if n == p * k else f"final length {n} != expected {p * k}"
        line("manager_append", "list_append", {"P": p, "K": k}, "appends_per_s",
             round(p * k / dt, 1), check)


if __name__ == "__main__":
    main()
