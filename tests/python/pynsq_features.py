"""pynsq's Writer and Reader over one stream mode: TLS, snappy, deflate, or
TLS with compression inside.

Usage: pynsq_features.py <nsqd tcp host:port> <nsqd http host:port> <ca.pem> <mode> <N>

mode is tls, snappy, deflate, tls+snappy or tls+deflate. The Reader subscribes,
the Writer publishes N messages with PUB and N more in one MPUB, and the Reader
finishes every one. Once all 2N arrived (plus a short wait for duplicates),
/stats is read while both are still connected.

Prints one JSON line and exits 0, or 1 on an error or after a 30 s timeout:
{"published": P, "received": R, "unique": U,
 "reader": <the Reader's /stats client entry>, "writer": <the Writer's>,
 "errors": [...]}
"""
import functools
import json
import sys
import urllib.request

import nsq
import tornado.ioloop

tcp_addr, http_addr, ca, mode, n = sys.argv[1:6]
n = int(n)
features = set(mode.split("+"))
unknown = features - {"tls", "snappy", "deflate"}
if unknown:
    sys.exit("unknown mode %r" % mode)

conn_opts = {}
if "tls" in features:
    conn_opts.update(tls_v1=True, tls_options={"ca_certs": ca})
if "snappy" in features:
    conn_opts["snappy"] = True
if "deflate" in features:
    conn_opts.update(deflate=True, deflate_level=3)

topic, channel = "pynsq_features", "pynsq"
expected = ["pub-%d" % i for i in range(n)] + ["mpub-%d" % i for i in range(n)]
loop = tornado.ioloop.IOLoop.current()
published = []
received = []
errors = []
report = {"reader": None, "writer": None}


def stop_with_error(msg):
    errors.append(msg)
    loop.stop()


def read_stats():
    """Both clients' /stats entries, while they are connected."""
    with urllib.request.urlopen("http://%s/stats?format=json" % http_addr, timeout=5) as r:
        stats = json.load(r)
    for t in stats.get("topics") or []:
        if t["topic_name"] != topic:
            continue
        for c in t.get("channels") or []:
            if c["channel_name"] == channel and c.get("clients"):
                report["reader"] = c["clients"][0]
    producers = stats.get("producers") or []
    if producers:
        report["writer"] = producers[0]


def finish():
    try:
        read_stats()
    except Exception as e:  # report it, with whatever else was seen
        errors.append("reading /stats: %r" % e)
    loop.stop()


def on_message(message):
    received.append(message.body.decode())
    if len(received) == len(expected):
        loop.call_later(0.5, finish)
    return True  # FIN


def on_published(bodies, conn, data):
    if isinstance(data, nsq.Error):
        return stop_with_error("publishing %s failed: %s" % (bodies[0], data))
    published.extend(bodies)


class Reader(nsq.Reader):
    def _on_connection_error(self, conn, error, **kwargs):
        super()._on_connection_error(conn, error, **kwargs)
        stop_with_error("reader connection error: %s" % error)


class Writer(nsq.Writer):
    def _on_connection_error(self, conn, error, **kwargs):
        super()._on_connection_error(conn, error, **kwargs)
        stop_with_error("writer connection error: %s" % error)


reader = Reader(
    message_handler=on_message,
    nsqd_tcp_addresses=[tcp_addr],
    topic=topic,
    channel=channel,
    max_in_flight=100,
    **conn_opts
)
writer = Writer([tcp_addr], **conn_opts)


def publish():
    # Both connected, upgrades done.
    if not writer.conns or not reader.conns:
        return loop.call_later(0.05, publish)
    for body in expected[:n]:
        writer.pub(topic, body.encode(), functools.partial(on_published, [body]))
    bodies = expected[n:]
    writer.mpub(topic, [b.encode() for b in bodies], functools.partial(on_published, bodies))


loop.call_later(0.05, publish)
loop.call_later(30, lambda: stop_with_error("timed out after 30 s"))
loop.start()

unexpected = sorted(set(received) - set(expected))
if unexpected:
    errors.append("unexpected bodies: %r" % unexpected[:5])
print(json.dumps({
    "published": len(published),
    "received": len(received),
    "unique": len(set(received) & set(expected)),
    "reader": report["reader"],
    "writer": report["writer"],
    "errors": errors,
}))
sys.exit(1 if errors else 0)
