#!/usr/bin/env python3
"""The workloads of shared/WORKLOADS.md run with CPython's multiprocessing.

Usage:
    python3 benches/python/workloads.py [--workload W[,W...]] [--quick]
                                        [--chunks C] [--fine-chunks C] [--reps R]

Prints one JSON line per measurement on stdout, in the WORKLOADS.md format
with "impl": "python"; notes and progress go to stderr. python3 stdlib only.

Every child is a forked process (mp.get_context("fork")), except the `spawn`
workload's `spawn` variant. `check` is "ok" only when the script verified
the result of every repetition; otherwise it says what was wrong (a workload
that raised prints its lines with "value": null and the error as `check`).

Timing (time.perf_counter):
- pi: the wall time of the whole variant, process start-up included (as the
  classic tutorial measures it). One run by default.
- every other workload: the children are started first and wait on a
  barrier; the clock starts when the parent passes the barrier, so process
  start-up is excluded. pipe_rtt and manager_rtt exchange warm-up messages
  before the clock starts. Each value is the best of R runs (default 3;
  1 with --quick), and every run is checked.

Python-side sizes (WORKLOADS.md), full / --quick:
    pi N 1e8 / 1e6 (coarse C = 10, joinable uses the fine C = 10,000)
    counter K 1e5 / 1e4; pipe_rtt R 2e4 / 2e3; pipe_bw 256 MiB / 32 MiB;
    queue_1p1c, queue_2p2c, joinable M 1e5 / 1e4; manager_rtt R 1e4 / 1e3;
    manager_append K 1e4 / 1e3; array_fill n 1e7 / 1e6;
    spawn 1000 fork + 100 spawn children / 100 + 5; pool_map T 1e4 / 1e3.
With --quick every variant runs once.
"""
import argparse
import contextlib
import itertools
import json
import math
import multiprocessing as mp
import os
import shutil
import struct
import sys
import tempfile
import time
from array import array

FORK = mp.get_context("fork")
P = 2  # the machine has 2 cores; every workload uses 2 workers
TIMEOUT = 300.0  # seconds any single wait may take before the run is declared stuck


def note(msg):
    print(msg, file=sys.stderr, flush=True)


def emit(workload, variant, params, metric, value, check):
    line = {
        "impl": "python",
        "workload": workload,
        "variant": variant,
        "params": params,
        "metric": metric,
        "value": value,
        "check": check,
    }
    print(json.dumps(line), flush=True)


def sig(x, digits=6):
    """x rounded to `digits` significant digits (JSON stays short)."""
    return float(f"{x:.{digits}g}")


def ok_if(cond, why):
    return "ok" if cond else why


# ---------------------------------------------------------------------------
# Process helpers


def _gated(barrier, target, args):
    barrier.wait(TIMEOUT)
    target(*args)


class Children:
    """Children started together and released by a barrier shared with the
    parent; `go()` passes the barrier and returns the start time."""

    def __init__(self, specs, ctx=FORK, gate=True):
        self.barrier = ctx.Barrier(len(specs) + 1) if gate else None
        if gate:
            self.procs = [
                ctx.Process(target=_gated, args=(self.barrier, t, a), daemon=True)
                for t, a in specs
            ]
        else:
            self.procs = [ctx.Process(target=t, args=a, daemon=True) for t, a in specs]

    def go(self):
        self.barrier.wait(TIMEOUT)
        return time.perf_counter()

    def join(self):
        """Joins every child; raises if one is stuck or failed."""
        deadline = time.monotonic() + TIMEOUT
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.exitcode is None:
                raise TimeoutError(f"child {p.name} still running after {TIMEOUT:.0f} s")
        bad = [p.exitcode for p in self.procs if p.exitcode != 0]
        if bad:
            raise RuntimeError(f"child exit codes {bad} (traceback on stderr)")


@contextlib.contextmanager
def children(specs, ctx=FORK, gate=True):
    """Starts the children; on the way out reaps them, killing leftovers
    (only when the body raised: a normal exit has already joined them)."""
    c = Children(specs, ctx, gate)
    try:
        for p in c.procs:
            p.start()
        yield c
    finally:
        if c.barrier is not None:
            c.barrier.abort()  # frees children still waiting if the parent failed
        for p in c.procs:
            if p.pid is not None and p.exitcode is None:
                p.join(0.5)
            if p.pid is not None and p.exitcode is None:
                p.terminate()
                p.join(5)


def recv_within(conn, what):
    if not conn.poll(TIMEOUT):
        raise TimeoutError(f"no {what} within {TIMEOUT:.0f} s")
    return conn.recv()


def close_queue(q):
    q.close()
    q.join_thread()


# ---------------------------------------------------------------------------
# pi


def partial(lo, hi):
    """sum_{lo <= k < hi} 1 / (2k + 1)^2, smallest terms first. The fastest
    plain-Python form measured here: a float counter (exact: all values are
    integers below 2^53) driven by itertools.repeat; about 1.3x faster than
    `for x in range(...)` with int x, and 1.6x faster than a generator sum."""
    s = 0.0
    x = 2.0 * hi + 1.0
    for _ in itertools.repeat(None, hi - lo):
        x -= 2.0
        s += 1.0 / (x * x)
    return s


def partial_gen(lo, hi):
    """The same sum written as the idiomatic generator expression."""
    return sum(1.0 / (x * x) for x in range(2 * hi - 1, 2 * lo - 1, -2))


def chunk(i, c, n):
    return i * n // c, (i + 1) * n // c


def chunk_sum(task):
    i, c, n = task
    return partial(*chunk(i, c, n))


def owned(p, procs, c):
    """The chunks worker p of `procs` owns (static round robin)."""
    return range(p, c, procs)


def share(p, procs, c, n):
    return sum(chunk_sum((i, c, n)) for i in owned(p, procs, c))


def _forked(body):
    """os.fork a child that runs body() and _exits with 0, or 1 on error."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def _reap(pids):
    bad = []
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            bad.append(code)
    if bad:
        raise RuntimeError(f"child exit codes {bad} (traceback on stderr)")


def pi_seq(n, c):
    return partial(0, n)


def pi_seq_gen(n, c):
    return partial_gen(0, n)


def pi_fork_file(n, c):
    d = tempfile.mkdtemp(prefix="pi-python-")
    try:
        path = [os.path.join(d, f"part-{p}") for p in range(P)]

        def body(p):
            s = share(p, P, c, n)
            with open(path[p], "wb") as f:
                f.write(struct.pack("<d", s))

        _reap([_forked(lambda p=p: body(p)) for p in range(P)])
        total = 0.0
        for fp in path:
            with open(fp, "rb") as f:
                total += struct.unpack("<d", f.read())[0]
        return total
    finally:
        shutil.rmtree(d, ignore_errors=True)


def pi_fork_pipe(n, c):
    pipes = [os.pipe() for _ in range(P)]
    try:

        def body(p):
            w = pipes[p][1]
            os.write(w, struct.pack("<d", share(p, P, c, n)))

        pids = [_forked(lambda p=p: body(p)) for p in range(P)]
        for _, w in pipes:
            os.close(w)
        total = 0.0
        for r, _ in pipes:
            data = b""
            while len(data) < 8:
                more = os.read(r, 8 - len(data))
                if not more:
                    raise RuntimeError("a child closed its pipe without a partial sum")
                data += more
            total += struct.unpack("<d", data)[0]
        _reap(pids)
        return total
    finally:
        for r, w in pipes:
            for fd in (r, w):
                with contextlib.suppress(OSError):
                    os.close(fd)


def pi_pool(n, c):
    pool = FORK.Pool(P)
    try:
        parts = pool.map(chunk_sum, [(i, c, n) for i in range(c)])
        pool.close()
        pool.join()
    finally:
        pool.terminate()
    return sum(parts)


def _pi_value_child(v, p, c, n):
    s = share(p, P, c, n)
    with v.get_lock():
        v.value += s


def pi_value(n, c):
    v = FORK.Value("d", 0.0)
    with children([(_pi_value_child, (v, p, c, n)) for p in range(P)], gate=False) as ch:
        ch.join()
    return v.value


def _pi_array_child(a, p, c, n):
    a[p] = share(p, P, c, n)


def pi_array(n, c):
    a = FORK.Array("d", P)
    with children([(_pi_array_child, (a, p, c, n)) for p in range(P)], gate=False) as ch:
        ch.join()
    return sum(a[:])


def _pi_queue_child(q, p, c, n):
    for i in owned(p, P, c):
        q.put(chunk_sum((i, c, n)))


def pi_queue(n, c):
    q = FORK.Queue()
    try:
        with children([(_pi_queue_child, (q, p, c, n)) for p in range(P)], gate=False) as ch:
            total = sum(q.get(timeout=TIMEOUT) for _ in range(c))
            ch.join()
        return total
    finally:
        close_queue(q)


def _pi_joinable_worker(tasks, results, c, n):
    while True:
        i = tasks.get()
        if i is None:
            tasks.task_done()
            return
        results.put(chunk_sum((i, c, n)))
        tasks.task_done()


def pi_joinable(n, c):
    tasks, results = FORK.JoinableQueue(), FORK.Queue()
    try:
        specs = [(_pi_joinable_worker, (tasks, results, c, n)) for _ in range(P)]
        with children(specs, gate=False) as ch:
            for i in range(c):
                tasks.put(i)
            total = sum(results.get(timeout=TIMEOUT) for _ in range(c))
            tasks.join()
            for _ in range(P):
                tasks.put(None)
            ch.join()
        return total
    finally:
        close_queue(tasks)
        close_queue(results)


def _pi_manager_child(lst, p, c, n):
    for i in owned(p, P, c):
        lst.append(chunk_sum((i, c, n)))


def pi_manager(n, c):
    with FORK.Manager() as m:
        lst = m.list()
        with children([(_pi_manager_child, (lst, p, c, n)) for p in range(P)], gate=False) as ch:
            ch.join()
        parts = list(lst)
    if len(parts) != c:
        raise RuntimeError(f"manager list holds {len(parts)} partial sums, expected {c}")
    return sum(parts)


PI_VARIANTS = [
    ("seq", pi_seq),
    ("seq_gen", pi_seq_gen),
    ("fork_file", pi_fork_file),
    ("fork_pipe", pi_fork_pipe),
    ("pool", pi_pool),
    ("value", pi_value),
    ("array", pi_array),
    ("queue", pi_queue),
    ("joinable", pi_joinable),
    ("manager", pi_manager),
]


def w_pi(cfg):
    n = 10**6 if cfg.quick else 10**8
    out = []
    for name, fn in PI_VARIANTS:
        if name.startswith("seq"):
            c, procs = 1, 1
        elif name == "joinable":
            c, procs = cfg.fine_chunks, P
        else:
            c, procs = cfg.chunks, P
        if c > n:
            raise ValueError(f"C = {c} exceeds N = {n}")

        def run(fn=fn, c=c):
            t = time.perf_counter()
            s = fn(n, c)
            dt = time.perf_counter() - t
            pi = math.sqrt(8.0 * s)
            err = abs(pi - math.pi)
            return dt, ok_if(err < 1.0 / n, f"pi off by {err:.3e} (more than 1/N)"), pi

        out.append(
            Variant(name, {"N": n, "C": c, "P": procs}, run,
                    [("seconds", lambda s, i: sig(s)), ("pi", lambda s, i: i)])
        )
    return out


# ---------------------------------------------------------------------------
# counter


def _counter_child(v, k):
    lock = v.get_lock()
    for _ in range(k):
        with lock:
            v.value += 1


def w_counter(cfg):
    k = 10**4 if cfg.quick else 10**5

    def run():
        v = FORK.Value("q", 0)
        with children([(_counter_child, (v, k)) for _ in range(P)]) as ch:
            t = ch.go()
            ch.join()
            dt = time.perf_counter() - t
        return dt, ok_if(v.value == P * k, f"final {v.value} != expected {P * k}"), None

    return [Variant("value_lock", {"P": P, "K": k}, run,
                    [("ns_per_increment", lambda s, i: sig(s / (P * k) * 1e9))])]


# ---------------------------------------------------------------------------
# pipe_rtt, pipe_bw


def _echo(conn):
    while True:
        m = conn.recv_bytes()
        if not m:
            return
        conn.send_bytes(m)


def w_pipe_rtt(cfg):
    r = 2 * 10**3 if cfg.quick else 2 * 10**4
    msgs = [bytes([b]) * 64 for b in range(256)]

    def run():
        a, b = FORK.Pipe()
        with children([(_echo, (b,))], gate=False) as ch:
            b.close()
            for m in msgs[:10]:  # warm-up: the child is up and both sides are hot
                a.send_bytes(m)
                if not a.poll(TIMEOUT) or a.recv_bytes() != m:
                    raise RuntimeError("warm-up echo failed")
            bad = 0
            t = time.perf_counter()
            for i in range(r):
                m = msgs[i & 255]
                a.send_bytes(m)
                if a.recv_bytes() != m:
                    bad += 1
            dt = time.perf_counter() - t
            a.send_bytes(b"")
            ch.join()
        a.close()
        return dt, ok_if(bad == 0, f"{bad} of {r} echoes differ"), None

    return [Variant("pipe_duplex", {"R": r, "bytes": 64}, run,
                    [("ns_per_round_trip", lambda s, i: sig(s / r * 1e9))])]


MIB = 1 << 20


def _bw_sender(conn, count):
    buf = bytearray(MIB)
    for i in range(count):
        struct.pack_into("<Q", buf, 0, i)
        conn.send_bytes(buf)


def w_pipe_bw(cfg):
    total = (32 if cfg.quick else 256) * MIB
    count = total // MIB
    out = []
    for name, duplex in (("pipe_duplex", True), ("pipe_simplex", False)):

        def run(duplex=duplex):
            reader, writer = FORK.Pipe(duplex)
            with children([(_bw_sender, (writer, count))]) as ch:
                writer.close()
                buf = bytearray(MIB)
                bad = 0
                t = ch.go()
                for i in range(count):
                    got = reader.recv_bytes_into(buf)
                    if got != MIB or struct.unpack_from("<Q", buf, 0)[0] != i:
                        bad += 1
                dt = time.perf_counter() - t
                ch.join()
            reader.close()
            return dt, ok_if(bad == 0, f"{bad} of {count} messages wrong or out of order"), None

        out.append(Variant(name, {"total_bytes": total, "message_bytes": MIB}, run,
                           [("GB_per_s", lambda s, i: sig(total / s / 1e9))]))
    return out


# ---------------------------------------------------------------------------
# queue_1p1c, queue_2p2c


def _producer(q, lo, hi):
    put = q.put
    for i in range(lo, hi):
        put(i)
    put(None)


def _consumer_in_order(q, m, conn):
    get = q.get
    want = 0
    first_bad = None
    while True:
        x = get()
        if x is None:
            break
        if x != want and first_bad is None:
            first_bad = (want, x)
        want += 1
    if first_bad is not None:
        conn.send(f"expected {first_bad[0]}, got {first_bad[1]}")
    elif want != m:
        conn.send(f"received {want} of {m} messages")
    else:
        conn.send("ok")


def _consumer_collect(q, conn):
    get = q.get
    got = []
    append = got.append
    while True:
        x = get()
        if x is None:
            break
        append(x)
    conn.send("done")
    conn.send(got)


QUEUES = (("queue", FORK.Queue), ("simplequeue", FORK.SimpleQueue))


def w_queue_1p1c(cfg):
    m = 10**4 if cfg.quick else 10**5
    out = []
    for name, make in QUEUES:

        def run(make=make, name=name):
            q = make()
            back_r, back_w = FORK.Pipe(False)
            specs = [(_producer, (q, 0, m)), (_consumer_in_order, (q, m, back_w))]
            with children(specs) as ch:
                t = ch.go()
                check = recv_within(back_r, "consumer report")
                dt = time.perf_counter() - t
                ch.join()
            if name == "queue":
                close_queue(q)
            else:
                q.close()
            return dt, check, None

        out.append(Variant(name, {"M": m, "producers": 1, "consumers": 1}, run,
                           [("messages_per_s", lambda s, i: sig(m / s))]))
    return out


def w_queue_2p2c(cfg):
    m = 10**4 if cfg.quick else 10**5
    out = []
    for name, make in QUEUES:

        def run(make=make, name=name):
            q = make()
            pipes = [FORK.Pipe(False) for _ in range(2)]
            half = m // 2
            specs = [(_producer, (q, 0, half)), (_producer, (q, half, m))]
            specs += [(_consumer_collect, (q, w)) for _, w in pipes]
            with children(specs) as ch:
                t = ch.go()
                for r, _ in pipes:
                    if recv_within(r, "consumer report") != "done":
                        raise RuntimeError("consumer sent something else than done")
                dt = time.perf_counter() - t
                got = []
                for r, _ in pipes:
                    got += recv_within(r, "consumer's items")
                ch.join()
            if name == "queue":
                close_queue(q)
            else:
                q.close()
            got.sort()
            ok = got == list(range(m))
            return dt, ok_if(ok, f"received {len(got)} items, not the multiset 0..{m - 1}"), None

        out.append(Variant(name, {"M": m, "producers": 2, "consumers": 2}, run,
                           [("messages_per_s", lambda s, i: sig(m / s))]))
    return out


# ---------------------------------------------------------------------------
# joinable


def _joinable_worker(tasks, conn):
    count = total = 0
    while True:
        x = tasks.get()
        if x is None:
            tasks.task_done()
            break
        count += 1
        total += x
        tasks.task_done()
    conn.send((count, total))


def w_joinable(cfg):
    m = 10**4 if cfg.quick else 10**5

    def run():
        tasks = FORK.JoinableQueue()
        pipes = [FORK.Pipe(False) for _ in range(P)]
        with children([(_joinable_worker, (tasks, w)) for _, w in pipes]) as ch:
            t = ch.go()
            for i in range(m):
                tasks.put(i)
            tasks.join()
            dt = time.perf_counter() - t
            for _ in range(P):
                tasks.put(None)
            counts = [recv_within(r, "worker tally") for r, _ in pipes]
            ch.join()
        close_queue(tasks)
        n = sum(c for c, _ in counts)
        s = sum(x for _, x in counts)
        ok = n == m and s == m * (m - 1) // 2
        return dt, ok_if(ok, f"workers got {n} tasks summing to {s}"), None

    return [Variant("joinablequeue", {"M": m, "P": P}, run,
                    [("tasks_per_s", lambda s, i: sig(m / s))])]


# ---------------------------------------------------------------------------
# manager_rtt, manager_append


def _manager_rtt_client(d, r, conn):
    for i in range(10):  # warm-up: connects this process to the manager
        d["k"] = -i
        _ = d["k"]
    bad = 0
    t = time.perf_counter()
    for i in range(r):
        d["k"] = i
        if d["k"] != i:
            bad += 1
    dt = time.perf_counter() - t
    conn.send((dt, bad))


def w_manager_rtt(cfg):
    r = 10**3 if cfg.quick else 10**4

    def run():
        with FORK.Manager() as mgr:
            d = mgr.dict()
            back_r, back_w = FORK.Pipe(False)
            with children([(_manager_rtt_client, (d, r, back_w))], gate=False) as ch:
                dt, bad = recv_within(back_r, "client report")
                ch.join()
            final = d["k"]
        ok = bad == 0 and final == r - 1
        return dt, ok_if(ok, f"{bad} gets differ from the set value, final {final}"), None

    return [Variant("dict", {"R": r}, run,
                    [("ns_per_op", lambda s, i: sig(s / (2 * r) * 1e9))])]


def _manager_append_client(barrier, lst, lo, hi):
    len(lst)  # connect to the manager before the clock starts
    barrier.wait(TIMEOUT)
    append = lst.append
    for i in range(lo, hi):
        append(i)


def w_manager_append(cfg):
    k = 10**3 if cfg.quick else 10**4

    def run():
        with FORK.Manager() as mgr:
            lst = mgr.list()
            barrier = FORK.Barrier(P + 1)
            specs = [(_manager_append_client, (barrier, lst, p * k, (p + 1) * k)) for p in range(P)]
            with children(specs, gate=False) as ch:
                try:
                    barrier.wait(TIMEOUT)
                except BaseException:
                    barrier.abort()
                    raise
                t = time.perf_counter()
                ch.join()
                dt = time.perf_counter() - t
            got = sorted(lst)
        ok = got == list(range(P * k))
        return dt, ok_if(ok, f"final list has {len(got)} items, expected 0..{P * k - 1}"), None

    return [Variant("list", {"P": P, "K": k}, run,
                    [("appends_per_s", lambda s, i: sig(P * k / s))])]


# ---------------------------------------------------------------------------
# array_fill


def _fill_loop(arr, lo, hi):
    for i in range(lo, hi):
        arr[i] = i


def _fill_slices(arr, lo, hi):
    mv = memoryview(arr).cast("B").cast("d")
    step = 1 << 16
    for s in range(lo, hi, step):
        e = min(hi, s + step)
        mv[s:e] = array("d", range(s, e))
    mv.release()


def w_array_fill(cfg):
    n = 10**6 if cfg.quick else 10**7
    out = []
    # Both fills are numpy-free: a Python loop over the ctypes array, and a
    # memoryview of it assigned array('d') slices of 65,536 values.
    for name, fill in (("python_loop", _fill_loop), ("memoryview_slices", _fill_slices)):

        def run(fill=fill):
            arr = FORK.RawArray("d", n)  # zero-filled here, so its pages are populated
            half = n // 2
            with children([(fill, (arr, 0, half)), (fill, (arr, half, n))]) as ch:
                t = ch.go()
                ch.join()
                dt = time.perf_counter() - t
            mv = memoryview(arr).cast("B").cast("d")
            total = sum(mv)
            spots = all(mv[i] == i for i in (0, half - 1, half, n - 1, n // 3))
            mv.release()
            want = n * (n - 1) // 2
            ok = total == want and spots
            return dt, ok_if(ok, f"checksum {total!r} != {want}"), None

        out.append(Variant(name, {"P": P, "n": n}, run,
                           [("GB_per_s", lambda s, i: sig(n * 8 / s / 1e9))]))
    return out


# ---------------------------------------------------------------------------
# spawn


def _noop():
    pass


def w_spawn(cfg):
    out = []
    sizes = ((100, 5) if cfg.quick else (1000, 100))
    for method, count in zip(("fork", "spawn"), sizes):
        ctx = mp.get_context(method)

        def run(ctx=ctx, count=count):
            bad = 0
            t = time.perf_counter()
            for _ in range(count):
                p = ctx.Process(target=_noop)
                p.start()
                p.join(TIMEOUT)
                if p.exitcode != 0:
                    bad += 1
                    if p.exitcode is None:
                        p.kill()
                        p.join()
            dt = time.perf_counter() - t
            return dt, ok_if(bad == 0, f"{bad} of {count} children failed"), None

        out.append(Variant(method, {"children": count, "start_method": method}, run,
                           [("us_per_child", lambda s, i, count=count: sig(s / count * 1e6))]))
    return out


# ---------------------------------------------------------------------------
# pool_map


def _inc(x):
    return x + 1


def w_pool_map(cfg):
    t_items = 10**3 if cfg.quick else 10**4
    default_chunk = -(-t_items // (4 * P))  # what Pool.map picks when not told
    out = []
    for name, cs in (("chunksize1", 1), ("default", None)):

        def run(cs=cs):
            pool = FORK.Pool(P)
            try:
                pool.map(_inc, range(100))  # warm-up: both workers are up
                t = time.perf_counter()
                got = pool.map(_inc, range(t_items), chunksize=cs)
                dt = time.perf_counter() - t
                pool.close()
                pool.join()
            finally:
                pool.terminate()
            ok = got == list(range(1, t_items + 1))
            return dt, ok_if(ok, "results differ from x + 1"), None

        params = {"T": t_items, "P": P, "chunksize": cs or default_chunk}
        out.append(Variant(name, params, run,
                           [("us_per_task", lambda s, i: sig(s / t_items * 1e6))]))
    return out


# ---------------------------------------------------------------------------
# Runner


class Variant:
    def __init__(self, name, params, run, metrics):
        self.name = name
        self.params = params
        self.run = run  # () -> (seconds, check, info)
        self.metrics = metrics  # [(metric, f(seconds, info) -> value)]


WORKLOADS = {
    "pi": w_pi,
    "counter": w_counter,
    "pipe_rtt": w_pipe_rtt,
    "pipe_bw": w_pipe_bw,
    "queue_1p1c": w_queue_1p1c,
    "queue_2p2c": w_queue_2p2c,
    "joinable": w_joinable,
    "manager_rtt": w_manager_rtt,
    "manager_append": w_manager_append,
    "array_fill": w_array_fill,
    "spawn": w_spawn,
    "pool_map": w_pool_map,
}


def describe(e):
    text = f"error: {type(e).__name__}: {e}".replace("\n", " ")
    return text[:200]


def run_variant(workload, v, reps):
    best = None
    check = "ok"
    try:
        for _ in range(reps):
            dt, c, info = v.run()
            if c != "ok" and check == "ok":
                check = c
            if best is None or dt < best[0]:
                best = (dt, info)
        values = [(metric, f(best[0], best[1])) for metric, f in v.metrics]
    except Exception as e:  # one failing variant must not stop the run
        check = describe(e)
        values = [(metric, None) for metric, _ in v.metrics]
    for metric, value in values:
        emit(workload, v.name, v.params, metric, value, check)
    return check


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="shared/WORKLOADS.md with Python's multiprocessing (JSON lines on stdout)")
    ap.add_argument("--workload", default=",".join(WORKLOADS),
                    help="comma-separated workloads (default: all): " + ", ".join(WORKLOADS))
    ap.add_argument("--quick", action="store_true",
                    help="small sizes: about a second per workload")
    ap.add_argument("--chunks", type=int, default=10,
                    help="pi: coarse chunk count C (default 10)")
    ap.add_argument("--fine-chunks", type=int, default=10_000,
                    help="pi: chunk count of the joinable variant (default 10000)")
    ap.add_argument("--reps", type=int, default=None,
                    help="runs per variant, best reported (default: pi 1, others 3; "
                         "--quick: 1)")
    cfg = ap.parse_args(argv)
    names = [w.strip() for w in cfg.workload.split(",") if w.strip()]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown or not names:
        note(f"unknown workload(s) {', '.join(unknown) or '(none given)'}; "
             f"choose from {', '.join(WORKLOADS)}")
        return 2
    if cfg.chunks < 1 or cfg.fine_chunks < 1 or (cfg.reps is not None and cfg.reps < 1):
        note("--chunks, --fine-chunks and --reps must be at least 1")
        return 2
    failed = 0
    for w in names:
        reps = cfg.reps or (1 if w == "pi" or cfg.quick else 3)
        note(f"{w}: running ({reps} run(s) per variant{', quick sizes' if cfg.quick else ''})")
        t = time.perf_counter()
        try:
            variants = WORKLOADS[w](cfg)
        except Exception as e:
            emit(w, "setup", {}, "error", None, describe(e))
            failed += 1
            continue
        for v in variants:
            if run_variant(w, v, reps) != "ok":
                failed += 1
        note(f"{w}: done in {time.perf_counter() - t:.1f} s")
    if failed:
        note(f"{failed} variant(s) did not check ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
