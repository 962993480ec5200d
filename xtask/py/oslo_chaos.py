"""The Python side of `cargo xtask chaos --python`: the cluster fault scenarios of
crates/osier-messaging/tests/cluster_faults.rs with the real oslo.messaging (from PyPI), so the
two can be compared run for run.

    oslo_chaos.py --script xtask/scripts/rabbit-cluster.sh --scenario quorum-kill

Same rig as the Rust scenarios: a server and a notification listener on one transport, 16
callers on a transport each, a notifier sending a numbered stream every 10 ms; the fault hits the
node every client is on (round-robin from the first host of the URL). Prints one JSON line with
the same figures. Threading executors, no eventlet.
"""

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import oslo_messaging as om
from oslo_config import cfg

HEARTBEAT = 4
CALL_TIMEOUT = 10
CALLERS = 16
AFTER = 6


def cluster(script, *args):
    subprocess.run(["bash", script, *args], check=True, capture_output=True)


class Refused(logging.Handler):
    """Counts failures notify() logged (oslo's notifier logs and swallows them)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0
        self.lock = threading.Lock()

    def emit(self, record):
        if "notification" in record.getMessage().lower():
            with self.lock:
                self.count += 1


class Echo:
    def echo(self, ctxt, **kw):
        return kw


class Listen:
    def __init__(self):
        self.counts = {}
        self.lock = threading.Lock()

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        n = payload.get("n")
        with self.lock:
            self.counts[n] = self.counts.get(n, 0) + 1
        return om.NotificationResult.HANDLED


def fault_run(script, name):
    kind = name.split("-")[1]
    if kind == "kill":
        cluster(script, "kill", "1")
        return time.monotonic()
    if kind == "close":
        cluster(script, "close-conns", "1")
        return time.monotonic()
    if kind == "freeze":
        t0 = time.monotonic()
        cluster(script, "freeze", "1")
        time.sleep(3 * HEARTBEAT)
        cluster(script, "thaw", "1")
        return t0 + 2 * HEARTBEAT
    if kind == "outage":
        for n in ("3", "2", "1"):
            cluster(script, "stop-node", n)
        time.sleep(20)
        # As the Rust scenario: node 1 first, then 2 and 3 together; a majority serves.
        cluster(script, "restart", "1")
        third = threading.Thread(target=cluster, args=(script, "restart", "3"))
        third.start()
        cluster(script, "restart", "2")
        majority = time.monotonic()
        third.join()
        return majority
    raise SystemExit(f"unknown scenario {name}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--script", required=True)
    ap.add_argument("--scenario", required=True)
    args = ap.parse_args()
    name = args.scenario
    queues = name.split("-")[0]

    cluster(args.script, "clean")
    cluster(args.script, "start")

    tag = uuid.uuid4().hex
    conf_file = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
    conf_file.write(
        "[DEFAULT]\ncontrol_exchange = osier-chaos-py-%s\n"
        "[oslo_messaging_rabbit]\nheartbeat_timeout_threshold = %d\n"
        "kombu_failover_strategy = round-robin\n%s"
        % (
            tag,
            HEARTBEAT,
            "rabbit_quorum_queue = true\n"
            if queues == "quorum"
            else ("amqp_durable_queues = true\n" if name == "classic-outage" else ""),
        )
    )
    conf_file.close()
    conf = cfg.CONF
    conf(["--config-file", conf_file.name], project="chaos")
    hosts = ",".join("guest:guest@127.0.0.1:%d" % p for p in (5673, 5674, 5675))
    url = "rabbit://%s/" % hosts

    refused = Refused()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger().addHandler(refused)

    top = "osier-chaos-py-%s-%s" % (name, tag)
    target = om.Target(topic=top, server="s")
    ts = om.get_rpc_transport(conf, url=url)
    server = om.get_rpc_server(ts, target, [Echo()], executor="threading")
    tn = om.get_notification_transport(conf, url=url)
    listen = Listen()
    listener = om.get_notification_listener(
        tn, [om.Target(topic=top)], [listen], executor="threading"
    )
    notifier = om.Notifier(
        om.get_notification_transport(conf, url=url),
        publisher_id="osier.chaos",
        driver="messagingv2",
        topics=[top],
    )
    server.start()
    listener.start()

    stop = threading.Event()
    calls = []
    calls_lock = threading.Lock()

    def caller(c):
        client = om.get_rpc_client(
            om.get_rpc_transport(conf, url=url), om.Target(topic=top), timeout=CALL_TIMEOUT
        )
        k = 0
        while not stop.is_set():
            start = time.monotonic()
            ok, err = False, None
            try:
                r = client.call({}, "echo", c=c, k=k)
                ok = r == {"c": c, "k": k}
            except om.MessagingTimeout:
                err = "Timeout"
            except Exception as e:  # noqa: BLE001 - every failure is a figure
                err = type(e).__name__
            with calls_lock:
                calls.append((start, time.monotonic(), ok, err))
            k += 1
            time.sleep(0.02)

    accepted = []

    def notifying():
        n = 0
        while not stop.is_set():
            event = "chaos.%s.%d" % (tag, n)
            before = refused.count
            notifier.info({}, event, {"n": n})
            if refused.count == before:
                accepted.append(n)
            n += 1
            time.sleep(0.01)

    threads = [threading.Thread(target=caller, args=(c,), daemon=True) for c in range(CALLERS)]
    nt = threading.Thread(target=notifying, daemon=True)
    for t in threads:
        t.start()
    nt.start()
    time.sleep(2)
    available = fault_run(args.script, name)
    waited = time.monotonic()
    time.sleep(AFTER)
    while time.monotonic() - waited < 60:
        with calls_lock:
            if any(c[2] and c[0] >= waited for c in calls):
                break
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(CALL_TIMEOUT + 5)
    nt.join(30)
    if name.endswith("-kill"):
        cluster(args.script, "restart", "1")
    drain = time.monotonic()
    while time.monotonic() - drain < 30:
        with listen.lock:
            if all(n in listen.counts for n in accepted):
                break
        time.sleep(0.1)
    with calls_lock:
        done = list(calls)
    ok_after = [c[1] for c in done if c[2] and c[1] >= available]
    with listen.lock:
        counts = dict(listen.counts)
    lost = [n for n in accepted if n not in counts]
    figures = {
        "scenario": name,
        "recovery_s": (min(ok_after) - available) if ok_after else None,
        "longest_call_s": max((c[1] - c[0] for c in done), default=0.0),
        "calls_ok": sum(1 for c in done if c[2]),
        "calls_failed": sum(1 for c in done if not c[2]),
        "errors": sorted({c[3] for c in done if c[3]}),
        "notifications_accepted": len(accepted),
        "notifications_lost": len(lost),
        "notifications_duplicated": sum(1 for v in counts.values() if v > 1),
        "lost_numbers": lost[:10],
        "stuck_threads": sum(1 for t in threads if t.is_alive()) + (1 if nt.is_alive() else 0),
    }
    print(json.dumps(figures), flush=True)
    # Threads blocked on a dead connection would hold the interpreter: leave at once.
    os._exit(0)


if __name__ == "__main__":
    main()
