"""`riskwatch deadletter`: the dead-letter topic read back, and events sent back once fixed."""

from __future__ import annotations

import subprocess
import sys

import orjson

from riskwatch.config import load_config

from .conftest import wait_for, worker_env
from .helpers import changelog_states, produce

GOOD = {"type": "complaint", "complaint_id": "c-ok", "entity_id": "91350100M000100Y43",
        "ts": "2026-01-10T10:00:00+08:00", "category": "hygiene"}
OPAQUE = {**GOOD, "complaint_id": "c-opaque", "entity_id": "shop-0042"}  # not a USCC


def _cli(s, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "riskwatch.cli", "deadletter", *args], env=worker_env(s),
                          capture_output=True, text=True, timeout=120, check=False)


def test_dead_letters_are_listed_and_replayed_once_their_cause_is_fixed(stack):
    """Ops switch entity_id_scheme to opaque after events with opaque ids were dead-lettered: the
    events come back from the dead-letter topic and are processed; bad JSON cannot come back."""
    s, workers = stack
    a = workers.start()
    produce(s, [GOOD, OPAQUE], raw=[(s.topic("complaints"), b'{"type": "complaint", "entity_id": ')])
    wait_for(lambda: workers.metric(a, "riskwatch_deadlettered_total") == 2, 60, "two dead letters", workers.logs)

    listed = _cli(s, "--limit", "5")
    assert listed.returncode == 0, listed.stderr
    assert "2 dead letters selected (2 in the topic)" in listed.stdout, listed.stdout
    assert "json_invalid 1" in listed.stdout and "value_error 1" in listed.stdout
    assert "entity_id: must be 18 characters" in listed.stdout and "(not replayable)" in listed.stdout
    only = _cli(s, "--reason", "json_invalid")
    assert "1 dead letters selected (2 in the topic)" in only.stdout, only.stdout

    applied = load_config().model_dump(mode="json") | {"entity_id_scheme": "opaque", "version": "opaque-ids"}
    produce(s, [], raw=[(s.topic("commands"), orjson.dumps({"type": "config_change", "seq": 1, "config": applied}))])
    wait_for(lambda: workers.metric(a, "riskwatch_config_change") == 1, 60, "the config change", workers.logs)

    replayed = _cli(s, "--replay")
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed 1 events ({s.topic('complaints')} 1); 1 not replayable" in replayed.stdout, replayed.stdout
    assert "next: --from-offset 2" in replayed.stdout
    states = wait_for(lambda: (st := changelog_states(s.broker, s.app_id)) and "shop-0042" in st and st, 60,
                      "the replayed event's entity state", workers.logs)
    assert set(states) == {GOOD["entity_id"], "shop-0042"}
    assert workers.metric(a, "riskwatch_deadlettered_total") == 2  # nothing new refused
    assert states["shop-0042"]["d"]["complaints"]["r"][0][0] == "c-opaque"
    assert "0 dead letters selected (0 from offset 2 on)" in _cli(s, "--from-offset", "2").stdout
    later = _cli(s, "--from-offset", "1")  # the consumer starts there: offset 0 is not read
    assert "1 dead letters selected (1 from offset 1 on)" in later.stdout, later.stdout
    assert ("json_invalid 1" in later.stdout) != ("value_error 1" in later.stdout), later.stdout
