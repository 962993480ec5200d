"""Python oslo.messaging on RabbitMQ, the workloads of `benches/src/amqp.rs`, for
`cargo xtask bench-amqp`: one JSON line per figure, like the Rust table runner.

One client process (this one) and one server process (this script with `serve`), threading
executor, every option at its default. Calls are
`echo(value={"x": 1})`; casts `note(...)`; notifications `info` to one listener. Casts and
notifications are timed end to end (until the server has handled every one sent).
"""

import json
import subprocess
import sys
import threading
import time
import uuid

import oslo_messaging as om
from oslo_config import cfg

URL = "rabbit://guest:guest@127.0.0.1:5672/"


def transport(notifications=False):
    if not getattr(transport, "parsed", False):
        cfg.CONF([], project="oslobench")
        om.set_transport_defaults(control_exchange="osier_bench")
        transport.parsed = True
    if notifications:
        return om.get_notification_transport(cfg.CONF, url=URL)
    return om.get_rpc_transport(cfg.CONF, url=URL)


class Counter:
    def __init__(self):
        self.n = 0
        self.lock = threading.Lock()

    def add(self):
        with self.lock:
            self.n += 1


def serve(topic):
    count = Counter()

    class E:
        def echo(self, ctxt, value):
            return value

        def note(self, ctxt, value):
            count.add()

        def handled(self, ctxt):
            return count.n

    class N:
        def info(self, ctxt, publisher_id, event_type, payload, metadata):
            count.add()

    t = transport()
    nt = transport(notifications=True)
    s = om.get_rpc_server(t, om.Target(topic=topic, server="s"), [E()], executor="threading")
    lst = om.get_notification_listener(
        nt, [om.Target(topic=topic + "_n")], [N()], executor="threading"
    )
    s.start()
    lst.start()
    print("READY", flush=True)
    sys.stdin.read()
    s.stop()
    lst.stop()
    s.wait()
    lst.wait()


def closed_loop(callers, warm, dur, op):
    start = time.time() + warm
    end = start + dur
    lats = []
    lock = threading.Lock()

    def run():
        mine = []
        while True:
            t0 = time.time()
            if t0 >= end:
                break
            op()
            if t0 >= start:
                mine.append(time.time() - t0)
        with lock:
            lats.extend(mine)

    ts = [threading.Thread(target=run) for _ in range(callers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    lats.sort()
    n = len(lats)
    p = lambda q: lats[int((n - 1) * q)] * 1e3 if n else 0.0  # noqa: E731
    return n / dur, p(0.5), p(0.99)


def open_loop(senders, dur, send, handled):
    base = handled()
    t0 = time.time()
    end = t0 + dur
    sent = Counter()

    def run():
        while time.time() < end:
            send()
            sent.add()

    ts = [threading.Thread(target=run) for _ in range(senders)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    give_up = time.time() + 60
    while handled() - base < sent.n and time.time() < give_up:
        time.sleep(0.01)
    return (handled() - base) / (time.time() - t0)


def emit(bench, value, unit="per_s"):
    print(json.dumps({"bench": bench, "impl": "oslo", "value": value, "unit": unit}), flush=True)


def main():
    quick = "--quick" in sys.argv
    warm, dur = (0.3, 1.0) if quick else (1.0, 5.0)
    topic = "osier-bench-oslo-" + uuid.uuid4().hex
    server = subprocess.Popen(
        [sys.executable, __file__, "serve", topic], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    line = server.stdout.readline().decode().strip()
    if line != "READY":
        raise SystemExit("server did not start: " + line)
    t = transport()
    nt = transport(notifications=True)
    c = om.get_rpc_client(t, om.Target(topic=topic), timeout=30)
    ctxt = {}

    def handled():
        return c.prepare(server="s").call(ctxt, "handled")

    for callers in (1, 16):
        rate, p50, p99 = closed_loop(callers, warm, dur, lambda: c.call(ctxt, "echo", value={"x": 1}))
        emit("call_%d" % callers, rate)
        emit("call_%d_p50_ms" % callers, p50, "ms")
        emit("call_%d_p99_ms" % callers, p99, "ms")
    for senders in (1, 16):
        send = lambda: c.cast(ctxt, "note", value={"x": 1})  # noqa: E731
        open_loop(senders, warm, send, handled)
        emit("cast_%d" % senders, open_loop(senders, dur, send, handled))
    n = om.Notifier(nt, publisher_id="oslo.bench", driver="messagingv2", topics=[topic + "_n"])
    for senders in (1, 16):
        send = lambda: n.info(ctxt, "bench.event", {"x": 1})  # noqa: E731
        open_loop(senders, warm, send, handled)
        emit("notify_%d" % senders, open_loop(senders, dur, send, handled))
    server.stdin.close()
    server.wait(timeout=30)
    t.cleanup()
    nt.cleanup()
    # oslo never deletes topic queues; the benchmark does.
    import amqp

    conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    conn.connect()
    ch = conn.channel()
    for q in (topic, topic + ".s", topic + "_n.info"):
        ch.queue_delete(q)
    conn.close()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        main()
