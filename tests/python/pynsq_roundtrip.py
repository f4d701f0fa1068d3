"""Publishes N messages with pynsq's Writer, then consumes them with its Reader;
with a secret, both send AUTH with it.

Usage: pynsq_roundtrip.py <nsqd tcp host:port> <topic> <N> [<auth secret>]

Prints one JSON line: {"published": P, "received": R, "unique": U, "errors": [...]}
(plus "auth": [nsqd's AUTH responses] with a secret) and exits 0 once all N
were received (plus a short wait for duplicates), or prints what it has and
exits 1 after a 30 s timeout or on any error.
"""
import functools
import json
import sys

import nsq
import nsq.client
import tornado.ioloop

addr, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
secret = sys.argv[4] if len(sys.argv) > 4 else None
auth = {"auth_secret": secret} if secret else {}
loop = tornado.ioloop.IOLoop.current()
auth_responses = []
acked = []
received = []
errors = []

# Both Writer and Reader report nsqd's AUTH response through this method.
_auth_response = nsq.client.Client._on_connection_auth_response


def record_auth_response(self, conn, data, **kwargs):
    auth_responses.append(data)
    return _auth_response(self, conn, data, **kwargs)


nsq.client.Client._on_connection_auth_response = record_auth_response


def stop_with_error(msg):
    errors.append(msg)
    loop.stop()


def on_message(message):
    received.append(message.body.decode())
    if len(received) == n:
        # Stay a little longer so duplicate deliveries would be counted.
        loop.call_later(0.5, loop.stop)
    return True  # FIN


def on_published(i, conn, data):
    if isinstance(data, nsq.Error):
        return stop_with_error("pub %d failed: %s" % (i, data))
    acked.append(i)
    if len(acked) == n:
        nsq.Reader(
            message_handler=on_message,
            nsqd_tcp_addresses=[addr],
            topic=topic,
            channel="pynsq",
            max_in_flight=n,
            **auth
        )


writer = nsq.Writer([addr], **auth)


def publish():
    if not writer.conns:  # not connected (and authed) yet
        return loop.call_later(0.05, publish)
    for i in range(n):
        writer.pub(topic, ("message-%d" % i).encode(), functools.partial(on_published, i))


loop.call_later(0.05, publish)
loop.call_later(30, lambda: stop_with_error("timed out after 30 s"))
loop.start()

expected = set("message-%d" % i for i in range(n))
unexpected = sorted(set(received) - expected)
if unexpected:
    errors.append("unexpected bodies: %r" % unexpected[:5])
report = {"auth": auth_responses} if secret else {}
print(json.dumps({
    **report,
    "published": len(acked),
    "received": len(received),
    "unique": len(set(received) & expected),
    "errors": errors,
}))
sys.exit(1 if errors else 0)
