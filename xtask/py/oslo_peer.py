"""The Python side of `cargo xtask interop`: real oslo.messaging (from PyPI) on RabbitMQ.

    oslo_peer.py server (--url URL | --config-file F) --topic T
        serve the interop endpoints until stdin closes
    oslo_peer.py client (--url URL | --config-file F) --topic T
        run the interop cases against a peer, print PASS/FAIL lines

With --config-file the transports come from an oslo.config file ([DEFAULT] transport_url,
control_exchange, [oslo_messaging_rabbit]), as a service builds them.

The Rust side (crates/osier-messaging/examples/interop_peer.rs) serves and runs the same cases,
so each case runs in both directions. Behaviours: MSG-AMQP-*, MSG-RPC-*, MSG-DISP-*, MSG-NOT-*,
MSG-LSN-* (docs/architecture.md maps them).
"""

import argparse
import json
import socket
import sys
import threading
import time
import uuid

import oslo_messaging as om
from oslo_config import cfg

PRIORITIES = ["audit", "debug", "info", "warn", "error", "critical", "sample"]


class InteropError(Exception):
    """A custom exception: a Rust client sees its class name in a RemoteError."""


class InstanceNotFound(Exception):
    """nova-style: keyword arguments kept in `kwargs`, so they travel with the failure and a
    caller that allows this module re-creates the exception with them."""

    def __init__(self, message=None, **kwargs):
        self.kwargs = kwargs
        super().__init__(message)


def transport(args, notifications=False):
    """The transport from --url, or from --config-file as a service builds it from its file."""
    conf = cfg.CONF
    if not getattr(transport, "parsed", False):
        files = ["--config-file", args.config_file] if args.config_file else []
        conf(files, project="interop")
        om.set_transport_defaults(control_exchange="osier_interop")
        transport.parsed = True
    url = args.url  # None with a config file: its transport_url
    if notifications:
        return conf, om.get_notification_transport(conf, url=url)
    # This module's exceptions are re-created from failures (the Rust server names it).
    return conf, om.get_rpc_transport(conf, url=url, allowed_remote_exmods=["oslo_peer"])


def broker_url(args):
    return args.url or cfg.CONF.transport_url


def topic_exchange():
    """The control exchange, declared as oslo declares it with the options in force."""
    import kombu

    rabbit = cfg.CONF.oslo_messaging_rabbit
    durable = rabbit.amqp_durable_queues or rabbit.rabbit_quorum_queue
    return kombu.Exchange(cfg.CONF.control_exchange, type="topic", durable=durable)


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

    def not_found(self, ctxt):
        raise InstanceNotFound("Instance i-1 could not be found.", instance_id="i-1")

    def ping(self, ctxt):
        return "pong"

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


def kombu_url(url):
    return url.replace("rabbit://", "amqp://", 1)


def legacy_responder(url, exchange, topic, ready, stop):
    """A server replying as older oslo releases did: the result, then an empty final message.
    It answers `echo` on `<topic>_legacy` with its `value`."""
    import kombu

    with kombu.Connection(kombu_url(url)) as conn:
        q = kombu.Queue(topic + "_legacy", exchange=exchange, routing_key=topic + "_legacy", auto_delete=True)
        producer = kombu.Producer(conn.channel())

        def on(body, message):
            message.ack()
            inner = json.loads(body["oslo.message"])
            parts = (
                {"result": inner["args"]["value"], "failure": None, "ending": False},
                {"result": None, "failure": None, "ending": True},
            )
            for part in parts:
                part["_msg_id"] = inner["_msg_id"]
                producer.publish(
                    json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(part)}),
                    exchange="",
                    routing_key=inner["_reply_q"],
                    content_type="application/json",
                    content_encoding="utf-8",
                )

        with conn.Consumer(q, callbacks=[on], accept=["json"]):
            ready.set()
            while not stop.is_set():
                try:
                    conn.drain_events(timeout=0.5)
                except socket.timeout:
                    pass


def serve(args):
    rec = Recorder()
    legacy_ready, legacy_stop = threading.Event(), threading.Event()
    _, t = transport(args)
    _, nt = transport(args, notifications=True)
    legacy = threading.Thread(
        target=legacy_responder,
        args=(broker_url(args), topic_exchange(), args.topic, legacy_ready, legacy_stop),
        daemon=True,
    )
    legacy.start()
    legacy_ready.wait(30)
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
    legacy_stop.set()
    legacy.join(5)
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
    _, t = transport(args)
    _, nt = transport(args, notifications=True)
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
        # A 4 s monitor (heartbeats every 2 s): slack for a quorum reply queue on a loaded machine.
        v = c.prepare(timeout=20, call_monitor_timeout=4).call(ctxt, "sleep", seconds=6)
        check(v == 6, repr(v))

    @case("context_round_trip")
    def _():
        cx = dict(ctxt, custom_key="custom-\u00e9")
        got = c.call(cx, "ctx_echo")
        for k in ("user_id", "project_id", "request_id", "custom_key"):
            check(got.get(k) == cx[k], k + ": " + repr(got.get(k)))

    @case("failure_kwargs")
    def _():
        import oslo_peer

        try:
            c.call(ctxt, "not_found")
        except oslo_peer.InstanceNotFound as e:
            check(type(e).__name__ == "InstanceNotFound_Remote", type(e).__name__)
            check(e.kwargs == {"instance_id": "i-1"}, repr(e.kwargs))
            check("could not be found" in str(e), str(e))
            return
        raise AssertionError("no error")

    @case("keyword_arguments_checked")
    def _():
        try:
            c.call(ctxt, "echo", value=1, valu=2)
            raise AssertionError("an unknown keyword was accepted")
        except TypeError as e:
            check("got an unexpected keyword argument 'valu'" in str(e), str(e))
        try:
            c.call(ctxt, "echo")
            raise AssertionError("a missing keyword was accepted")
        except TypeError as e:
            check("missing 1 required positional argument: 'value'" in str(e), str(e))

    @case("method_without_arguments")
    def _():
        check(c.call(ctxt, "ping") == "pong", "ping")

    @case("client_timeout_in_context")
    def _():
        got = c.call(ctxt, "ctx_echo")
        check("client_timeout" in got and got["client_timeout"] is None, repr(got.get("client_timeout")))
        got = c.prepare(call_monitor_timeout=5).call(ctxt, "ctx_echo")
        check(got.get("client_timeout") == 5, repr(got.get("client_timeout")))

    @case("content_type_refusal")
    def _():
        import kombu

        with kombu.Connection(kombu_url(broker_url(args))) as conn:
            ch = conn.channel()
            reply_q = "reply_raw_" + uuid.uuid4().hex
            q = kombu.Queue(reply_q, exclusive=True, auto_delete=True, channel=ch)
            q.declare()
            inner = {
                "method": "echo",
                "args": {"value": 1},
                "_msg_id": uuid.uuid4().hex,
                "_reply_q": reply_q,
                "_unique_id": uuid.uuid4().hex,
            }
            body = json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(inner)})
            kombu.Producer(ch).publish(
                body, exchange="", routing_key=args.topic + ".s1",
                content_type="text/plain", content_encoding="utf-8",
            )
            time.sleep(2)
            check(q.get(no_ack=True) is None, "a reply to a text/plain request")
        check(c.prepare(server="s1").call(ctxt, "echo", value=3) == 3, "the server still serves")

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


def notify_once(args):
    """One notification at INFO on --topic (for `osier listen`), with a secret in it."""
    _, nt = transport(args, notifications=True)
    n = om.Notifier(nt, publisher_id="python.peer", driver="messagingv2", topics=[args.topic])
    n.info({}, "py.interop", {"from": "python", "password": "hunter2-py"})
    nt.cleanup()
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["server", "client", "notify"])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--url")
    src.add_argument("--config-file")
    p.add_argument("--topic", required=True)
    args = p.parse_args()
    if args.mode == "server":
        serve(args)
        return 0
    if args.mode == "notify":
        return notify_once(args)
    return run_client(args)


if __name__ == "__main__":
    sys.exit(main())
