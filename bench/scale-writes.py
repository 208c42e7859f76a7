#!/usr/bin/env python3
"""Writers for bench/scale's fault run: each writes new values through the load balancer's Proxy for
a fixed time and notes every write the server acknowledged (2xx) with its version and value; then
every acknowledged write is read back through the load balancer and compared. Prints one JSON line:
writes acknowledged, refused (non-2xx), failed (no answer), read back, and any mismatch. Exits
non-zero if an acknowledged write does not read back as it was written.

    bench/scale-writes.py URL FIXTURE SECONDS WRITERS
"""

import base64
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request

url, fixture, seconds, writers = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
users = re.findall(r'\{ id = "([^"]+)", key = "([^"]+)", secret = "([^"]+)" \}', open(fixture).read())
if not users:
    sys.exit("scale-writes: no users in the fixture")


def call(method, path, user, body=None):
    _, key, secret = user
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("X-Api-Key", key)
    req.add_header("X-User-Secret", secret)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


acked, refused, failed = [], {}, [0]
lock = threading.Lock()
deadline = time.monotonic() + seconds
run = os.getpid()


def writer(w):
    user = users[w % len(users)]
    n = 0
    while time.monotonic() < deadline:
        name = f"scale-{run}-w{w}-{n}"
        n += 1
        value = base64.b64encode(os.urandom(64)).decode()
        try:
            status, body = call("PUT", f"/v1/kv/{name}", user, {"valueB64": value})
        except Exception:
            with lock:
                failed[0] += 1
            time.sleep(0.05)
            continue
        with lock:
            if 200 <= status < 300:
                acked.append((w % len(users), name, body["version"], value))
            else:
                refused[status] = refused.get(status, 0) + 1


threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
for t in threads:
    t.start()
for t in threads:
    t.join()

mismatches = []
for u, name, version, value in acked:
    status, body = call("GET", f"/v1/kv/{name}?version={version}", users[u])
    if status != 200 or body.get("valueB64") != value:
        mismatches.append({"key": name, "version": version, "status": status})
print(json.dumps({
    "acknowledged": len(acked),
    "refused": sum(refused.values()),
    "refusedByStatus": refused,
    "failed": failed[0],
    "readBack": len(acked) - len(mismatches),
    "mismatches": mismatches[:10],
}))
sys.exit(1 if mismatches else 0)
