"""The Python side of `cargo xtask interop`: real oslo.messaging (from PyPI) on RabbitMQ.

    oslo_peer.py server --url URL --topic T    serve the interop endpoints until stdin closes
    oslo_peer.py client --url URL --topic T    run the interop cases against a peer, print
                                               PASS/FAIL lines

The Rust side (crates/osier-messaging/examples/interop_peer.rs) serves and runs the same cases,
so each case runs in both directions. Behaviours: MSG-AMQP-*, MSG-RPC-*, MSG-DISP-*, MSG-NOT-*,
MSG-LSN-* (docs/architecture.md maps them).
"""

import argparse
import sys
import threading
import time
import uuid

import oslo_messaging as om
from oslo_config import cfg

PRIORITIES = ["audit", "debug", "info", "warn", "error", "critical", "sample"]


class InteropError(Exception):
    """A custom exception: a Rust client sees its class name in a RemoteError."""


def transport(url, notifications=False):
    conf = cfg.CONF
    if not getattr(transport, "parsed", False):
        conf([], project="interop")
        om.set_transport_defaults(control_exchange="osier_interop")
        transport.parsed = True
    if notifications:
        return conf, om.get_notification_transport(conf, url=url)
    return conf, om.get_rpc_transport(conf, url=url)


# ----------------------------------------------------------------------------- server


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.notes = {}
        self.notifications = []
        self.requeued = set()

    def note(self, server, value):
        with self.lock:
            self.notes.setdefault(server, []).append(value)

    def notified(self, who, priority, publisher_id, event_type, payload, ctxt):
        with self.lock:
            self.notifications.append(
                {
                    "listener": who,
                    "priority": priority,
                    "publisher_id": publisher_id,
                    "event_type": event_type,
                    "payload": payload,
                    # oslo.context's to_dict() names the user `user`; a plain dict `user_id`.
                    "ctxt_user": ctxt.get("user_id") or ctxt.get("user"),
                }
            )


class Main:
    target = om.Target(version="1.3")

    def __init__(self, server, rec):
        self.server, self.rec = server, rec

    def echo(self, ctxt, value):
        return value

    def whoami(self, ctxt):
        return self.server

    def ctx_echo(self, ctxt):
        return ctxt

    def fail(self, ctxt):
        raise ValueError("boom")

    def custom(self, ctxt):
        raise InteropError("custom failure")

    def sleep(self, ctxt, seconds):
        time.sleep(seconds)
        return seconds

    def note(self, ctxt, value):
        self.rec.note(self.server, value)

    def notes(self, ctxt):
        with self.rec.lock:
            return list(self.rec.notes.get(self.server, []))

    def notifications(self, ctxt):
        with self.rec.lock:
            return list(self.rec.notifications)


class V2:
    target = om.Target(namespace="ns2", version="2.1")

    def v2echo(self, ctxt, value):
        return value * 2


class Listening:
    """One listener's endpoint: every priority; `requeue_once` payloads are requeued once."""

    def __init__(self, who, rec):
        self.who, self.rec = who, rec
        for p in PRIORITIES:
            setattr(self, p, self._make(p))

    def _make(self, priority):
        def handle(ctxt, publisher_id, event_type, payload, metadata):
            key = payload.get("requeue_once") if isinstance(payload, dict) else None
            if key is not None:
                with self.rec.lock:
                    first = (self.who, key) not in self.rec.requeued
                    self.rec.requeued.add((self.who, key))
                if first:
                    return om.NotificationResult.REQUEUE
            self.rec.notified(self.who, priority, publisher_id, event_type, payload, ctxt)
            return om.NotificationResult.HANDLED

        return handle


def serve(args):
    rec = Recorder()
    _, t = transport(args.url)
    _, nt = transport(args.url, notifications=True)
    servers = [
        om.get_rpc_server(
            t,
            om.Target(topic=args.topic, server=name),
            [Main(name, rec), V2()],
            executor="threading",
        )
        for name in ("s1", "s2")
    ]
    ntarget = [om.Target(topic=args.topic + "_notif")]
    listeners = [
        om.get_notification_listener(
            nt, ntarget, [Listening(who, rec)], executor="threading", pool=pool, allow_requeue=True
        )
        for who, pool in (("main", None), ("pool-a", args.topic + "_pool"), ("pool-b", args.topic + "_pool"))
    ]
    for s in servers + listeners:
        s.start()
    print("READY", flush=True)
    sys.stdin.read()
    for s in servers + listeners:
        s.stop()
    for s in servers + listeners:
        s.wait()
    t.cleanup()
    nt.cleanup()


# ----------------------------------------------------------------------------- client

RESULTS = []


def case(name):
    """Runs the decorated case at once (cases run in the order they are written)."""

    def run(f):
        try:
            f()
            print("PASS", name, flush=True)
            RESULTS.append(True)
        except Exception as e:  # noqa: BLE001 - every failure is a FAIL line
            print("FAIL", name + ":", type(e).__name__, e, flush=True)
            RESULTS.append(False)

    return run


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def until(f, timeout=10.0):
    t0 = time.time()
    while True:
        v = f()
        if v or time.time() - t0 > timeout:
            return v
        time.sleep(0.05)


def run_client(args):
    _, t = transport(args.url)
    _, nt = transport(args.url, notifications=True)
    c = om.get_rpc_client(t, om.Target(topic=args.topic), timeout=10)
    ctxt = {"user_id": "u-py", "project_id": "p-py", "request_id": "req-" + str(uuid.uuid4())}

    @case("call_echo")
    def _():
        v = {"x": 1, "s": "\u00fc\u2603", "l": [1, 2.5, None, True]}
        check(c.call(ctxt, "echo", value=v) == v, "echo differs")

    @case("cast")
    def _():
        k = str(uuid.uuid4())
        c.cast(ctxt, "note", value=k)
        check(
            until(lambda: any(k in c.prepare(server=s).call(ctxt, "notes") for s in ("s1", "s2"))),
            "cast not seen",
        )

    @case("fanout_cast")
    def _():
        k = str(uuid.uuid4())
        c.prepare(fanout=True).cast(ctxt, "note", value=k)
        for s in ("s1", "s2"):
            check(until(lambda: k in c.prepare(server=s).call(ctxt, "notes")), "fanout missed " + s)

    @case("directed_call")
    def _():
        check(c.prepare(server="s2").call(ctxt, "whoami") == "s2", "wrong server")

    @case("namespace_and_version")
    def _():
        check(c.prepare(namespace="ns2", version="2.1").call(ctxt, "v2echo", value=21) == 42, "ns2")
        check(c.prepare(version="1.2").call(ctxt, "echo", value=1) == 1, "compatible minor")

    @case("no_such_method")
    def _():
        try:
            c.call(ctxt, "nosuch")
        except om.RemoteError as e:
            check(e.exc_type == "NoSuchMethod", e.exc_type)
            return
        raise AssertionError("no error")

    @case("unsupported_version")
    def _():
        try:
            c.prepare(version="3.0").call(ctxt, "echo", value=1)
        except om.RemoteError as e:
            check(e.exc_type == "UnsupportedVersion", e.exc_type)
            return
        raise AssertionError("no error")

    @case("builtin_exception")
    def _():
        try:
            c.call(ctxt, "fail")
        except ValueError as e:  # builtins is an allowed module: re-created as ValueError
            check("boom" in str(e), str(e))
            return
        raise AssertionError("no error")

    @case("custom_exception_as_remote_error")
    def _():
        try:
            c.call(ctxt, "custom")
        except om.RemoteError as e:
            check(e.exc_type == "InteropError", e.exc_type)
            check("custom failure" in e.value, e.value)
            return
        raise AssertionError("no error")

    @case("timeout")
    def _():
        t0 = time.time()
        try:
            c.prepare(timeout=1).call(ctxt, "sleep", seconds=3)
        except om.MessagingTimeout:
            check(time.time() - t0 < 2.5, "late timeout")
            return
        raise AssertionError("no timeout")

    @case("call_monitor_heartbeats")
    def _():
        v = c.prepare(timeout=15, call_monitor_timeout=2).call(ctxt, "sleep", seconds=4)
        check(v == 4, repr(v))

    @case("context_round_trip")
    def _():
        cx = dict(ctxt, custom_key="custom-\u00e9")
        got = c.call(cx, "ctx_echo")
        for k in ("user_id", "project_id", "request_id", "custom_key"):
            check(got.get(k) == cx[k], k + ": " + repr(got.get(k)))

    def notifications():
        return c.call(ctxt, "notifications")

    # A Notifier drops a plain dict context (oslo sends only a RequestContext's redacted copy).
    from oslo_context import context as oslo_context

    nctxt = oslo_context.RequestContext(user_id="u-py", project_id="p-py")

    @case("notifications_every_priority")
    def _():
        run = str(uuid.uuid4())
        n = om.Notifier(nt, publisher_id="py.peer", driver="messagingv2", topics=[args.topic + "_notif"])
        for p in PRIORITIES:
            getattr(n, p)(nctxt, "interop." + p, {"run": run, "p": p})
        def got():
            return [
                x for x in notifications()
                if isinstance(x["payload"], dict) and x["payload"].get("run") == run
            ]
        until(lambda: len([x for x in got() if x["listener"] == "main"]) >= 7)
        mine = [x for x in got() if x["listener"] == "main"]
        check(sorted(x["priority"] for x in mine) == sorted(PRIORITIES), repr(mine))
        for x in mine:
            check(x["publisher_id"] == "py.peer", x["publisher_id"])
            check(x["event_type"] == "interop." + x["priority"], x["event_type"])
            check(x["ctxt_user"] == "u-py", repr(x["ctxt_user"]))

    @case("notification_pools")
    def _():
        run = str(uuid.uuid4())
        n = om.Notifier(nt, publisher_id="py.peer", driver="messagingv2", topics=[args.topic + "_notif"])
        for i in range(10):
            n.info(nctxt, "interop.pool", {"run": run, "i": i})
        def got():
            return [
                x for x in notifications()
                if isinstance(x["payload"], dict) and x["payload"].get("run") == run
            ]
        until(lambda: len(got()) >= 20)
        xs = got()
        main = sorted(x["payload"]["i"] for x in xs if x["listener"] == "main")
        pool = sorted(x["payload"]["i"] for x in xs if x["listener"] in ("pool-a", "pool-b"))
        check(main == list(range(10)), "default group: " + repr(main))
        check(pool == list(range(10)), "pool, each once: " + repr(pool))

    @case("notification_requeue")
    def _():
        key = str(uuid.uuid4())
        n = om.Notifier(nt, publisher_id="py.peer", driver="messagingv2", topics=[args.topic + "_notif"])
        n.info(nctxt, "interop.requeue", {"requeue_once": key})
        def got():
            return [
                x for x in notifications()
                if x["listener"] == "main"
                and isinstance(x["payload"], dict)
                and x["payload"].get("requeue_once") == key
            ]
        check(until(lambda: len(got()) >= 1), "requeued notification never handled")
        time.sleep(0.3)
        check(len(got()) == 1, "handled more than once")

    t.cleanup()
    nt.cleanup()
    return 0 if all(RESULTS) else 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["server", "client"])
    p.add_argument("--url", required=True)
    p.add_argument("--topic", required=True)
    args = p.parse_args()
    if args.mode == "server":
        serve(args)
        return 0
    return run_client(args)


if __name__ == "__main__":
    sys.exit(main())
