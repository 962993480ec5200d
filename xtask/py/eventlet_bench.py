"""The green-runtime microbenchmarks of benches/src/lib.rs, on Python eventlet.

Run by `cargo xtask bench-eventlet` in a venv it creates. Prints one JSON object per line in the
same shape as the Rust table runner (benches/src/bin/green_table.rs). Medians of 5 runs after a
warm-up run; memory is measured in a fresh subprocess.
"""
import json
import statistics
import subprocess
import sys
import time

import eventlet
from eventlet import event, greenpool, queue


def emit(bench, value, unit):
    print(json.dumps({"bench": bench, "impl": "eventlet", "value": round(value, 1), "unit": unit}))
    sys.stdout.flush()


def spawn_wait(n):
    t0 = time.perf_counter()
    for i in range(n):
        eventlet.spawn(lambda x: x, i).wait()
    return time.perf_counter() - t0


def switch(n):
    rounds = (n + 1) // 2
    ping, pong = queue.Queue(), queue.Queue()

    def echo():
        for _ in range(rounds):
            pong.put(ping.get())

    g = eventlet.spawn(echo)
    t0 = time.perf_counter()
    for i in range(rounds):
        ping.put(i)
        pong.get()
    el = time.perf_counter() - t0
    g.wait()
    return el


def sleep0(n):
    t0 = time.perf_counter()
    for _ in range(n):
        eventlet.sleep(0)
    return time.perf_counter() - t0


def pool(n):
    p = greenpool.GreenPool(1000)
    t0 = time.perf_counter()
    for i in range(n):
        p.spawn_n(lambda x: x, i)
    p.waitall()
    return time.perf_counter() - t0


def ns_per_op(fn, n, runs=5):
    fn(max(n // 10, 1))
    return statistics.median(fn(n) / n * 1e9 for _ in range(runs))


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def parked_bytes(n=10_000):
    ev = event.Event()
    before = rss()
    gts = [eventlet.spawn(ev.wait) for _ in range(n)]
    eventlet.sleep(0)
    after = rss()
    ev.send(None)
    for g in gts:
        g.wait()
    return (after - before) / n


def main():
    if "--mem-child" in sys.argv:
        print(parked_bytes())
        return
    quick = "--quick" in sys.argv
    scale = 10 if quick else 1
    emit("spawn_wait", ns_per_op(spawn_wait, 50_000 // scale), "ns/op")
    emit("switch", ns_per_op(switch, 100_000 // scale), "ns/op")
    emit("sleep0", ns_per_op(sleep0, 200_000 // scale), "ns/op")
    emit("pool_100k", ns_per_op(pool, 100_000 // scale, runs=3 if quick else 5), "ns/op")
    vals = []
    for _ in range(3):
        out = subprocess.run([sys.executable, __file__, "--mem-child"], capture_output=True, text=True)
        vals.append(float(out.stdout.strip()))
    emit("parked_memory_10k", statistics.median(vals), "B/unit")


if __name__ == "__main__":
    main()
