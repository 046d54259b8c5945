"""Baseline for bench/stream.py: a bare Faust agent counting events per entity in a dict.

Single-event messages, raw bytes + orjson, no table, uvloop as the worker. Writes 'first T' and 'done T N' lines to the
file named by the 4th argument (Faust redirects stdout into its log).
"""

import os
import sys
import time

import faust
import orjson

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from riskwatch.aio import use_event_loop  # noqa: E402

use_event_loop("uvloop")  # the worker's loop: a like-for-like baseline (the was measured on uvloop too)

broker, topic, expected, out_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
out = open(out_path, "a")
app = faust.App(f"bare-{os.getpid()}", broker=f"kafka://{broker}", web_enabled=False, topic_partitions=4,
                broker_session_timeout=8, consumer_auto_offset_reset="earliest", stream_wait_empty=False,
                key_serializer="raw", value_serializer="raw", datadir=f"/tmp/bare-faust-{os.getpid()}")
src = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
counts: dict = {}
seen = [0]


@app.agent(src)
async def count(stream):
    async for event in stream.events():
        if seen[0] == 0:
            out.write(f"first {time.time()}\n")
            out.flush()
        eid = orjson.loads(event.message.value)["entity_id"]
        counts[eid] = counts.get(eid, 0) + 1
        seen[0] += 1
        if seen[0] == expected:
            out.write(f"done {time.time()} {seen[0]}\n")
            out.flush()


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()
