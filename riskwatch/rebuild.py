"""``riskwatch rebuild-view``: rebuild the Redis view from Kafka (the source of truth).

Sources, read from the beginning:

- the entity-state changelog (compacted: the last state of *every* entity, however
  long ago it last changed): register data (industry, region, name, address), the last
  emitted score, the tier and when;
- the ``entities`` input topic: register data of states written before the name
  was kept in them (2026-11-28);
- the ``risk-changes`` output topic: the history, and the exact current reasons,
  cause and config version of entities whose last risk change is still there;
- the ``spot-check changes`` output topic: the recent spot-check list;
- the ``inspections`` input topic: each entity's latest inspection results (draw outcomes);
- the ``commands`` input topic and the states' open disputes: the objections' records Redis lost
  (:mod:`.objection_records`; never one the API wrote);
- the ``audit`` topic: the audit entries Redis lost (:mod:`.audit_topic`; the API writes them back
  too), and from them the config history, the silences and the file imports
  (:mod:`.audit_derived`);
- the ``draws`` topic: the spot-check draws Redis lost, with their populations (:mod:`.draw_copy`).

Input and output topics keep records for their retention only (Kafka's default:
7 days). Until 2026-11-28 the view was rebuilt from them alone, so after a week
a rebuild dropped every entity quiet for that long (most of a supervised
population): the API answered 404 for them and spot-check draws left them out.
An entity whose last risk change has aged out now gets its current fields from
its state: score, tier, ratio and time exact; reasons recomputed from the
state's signal cache at that time; cause and config version empty (not kept in
the state). Its history keeps what the topic still holds.

The tier ratios are those of the config applied through the API (Redis) when
there is one, as the workers use, else of the config file. Every write is
idempotent, and an entity's current fields are written only where the view
holds no later decision (its ``seq``), so it can run beside workers: a change
a worker writes while the rebuild runs is not put back to an older one.
"""

from __future__ import annotations

from pydantic import ValidationError

from .audit_derived import restore_all
from .audit_topic import merge, read_topic
from .config import applied_config
from .draw_copy import read_topic as read_draws
from .draw_copy import restore as restore_draws
from .errors import InvalidEvent, StateUnreadable
from .events import RiskChange, SpotcheckChange, output_reader, parse_event
from .objection_records import PUT_BACK, from_commands, open_from_state, put_back
from .settings import Settings
from .streams.codec import decode
from .streams.kafka import read_messages
from .streams.state_store import parse_state, read_changelog
from .view import NAMES_FORMAT, NAMES_FORMAT_KEY, ViewWriter, inspection_fact
from .view_regions import REGIONS_FORMAT, REGIONS_FORMAT_KEY
from .view_states import current_from_state, register_from_state

__all__ = ["rebuild_view"]


async def _each(broker: Settings | str, topic: str, counts: dict | None = None):
    """The events of a topic, batch envelopes unpacked; messages that are not JSON are skipped (an input
    topic holds whatever producers sent, and the workers dead-lettered those: until 2026-12-05 one
    such message in ``rw.entities`` stopped the rebuild with a JSONDecodeError), and counted in
    ``counts["refused"]`` if given (an output topic holds only what workers wrote)."""
    async for msg in read_messages(broker, topic):
        events, err = decode(msg.value)
        if err is None:
            for ev in events:
                yield ev
        elif counts is not None:
            counts["refused"] += 1


_OUTPUTS = {"risk_change": output_reader(RiskChange), "spotcheck_change": output_reader(SpotcheckChange)}


def _output(raw, kind: str, counts: dict) -> dict | None:
    """The record if it is a valid output of ``kind`` (as the topic holds it); else None, counted in
    ``refused``: until 2026-12-06 one without ``entity_id`` or ``seq`` stopped the rebuild."""
    if not isinstance(raw, dict) or raw.get("type") != kind:
        counts["refused"] += 1
        return None
    try:
        _OUTPUTS[kind].validate_python(raw)
    except ValidationError:
        counts["refused"] += 1
        return None
    return raw


async def _states(broker: Settings | str, changelog: str, counts: dict):
    """``(entity id, state)`` of every state record in the changelog, oldest first (the last one wins);
    one that is not a JSON object (not a worker's) is counted in ``refused``."""
    async for eid, raw in read_changelog(broker, changelog):
        if raw is not None:
            try:
                st = parse_state(eid, raw)
            except StateUnreadable:
                counts["refused"] += 1
                continue
            yield eid, st


def _valid(raw, etype: str, scheme: str):
    """The event if it is a valid one of type ``etype`` (until 2026-12-05 the rebuild wrote register
    data of entity events the workers had dead-lettered, a bad region say, into the view)."""
    if not isinstance(raw, dict) or raw.get("type") != etype:
        return None
    try:
        return parse_event(raw, scheme)
    except InvalidEvent:
        return None


VIEW_PATTERNS = ("rw:entity:*", "rw:entities", "rw:names", "rw:rank", "rw:rank:*", "rw:history:*", "rw:spotchecks",
                 "rw:registered:*")


async def rebuild_view(settings: Settings, flush: bool = True) -> dict[str, int]:
    """Rebuild the view (see the module's text); how many of each kind were read or put back."""
    import redis.asyncio as aioredis

    r = aioredis.from_url(settings.redis_url)
    try:
        return await _rebuild(settings, r, flush)
    finally:  # also when cancelled (the API's rebuild after a loss, at its shutdown)
        await r.aclose()


async def _rebuild(settings: Settings, r, flush: bool) -> dict[str, int]:
    from .engine import Engine

    cfg = applied_config(settings)
    engine = Engine(cfg)
    view = ViewWriter({t.name: t.ratio for t in cfg.tiers}, settings.history_len)
    if flush:  # the view's keys only: alerts, audit, objections and config are not derived from topics
        keys = [k for pattern in VIEW_PATTERNS async for k in r.scan_iter(pattern, count=1000)]
        for i in range(0, len(keys), 1000):
            await r.delete(*keys[i:i + 1000])
    counts = {"states": 0, "entities": 0, "risk_changes": 0, "spotcheck_changes": 0, "from_state": 0,
              "inspections": 0, "objections": 0, "refused": 0}
    pipe = r.pipeline(transaction=False)

    async def flush_some() -> None:
        if len(pipe) > 5000:
            await pipe.execute()

    meta: dict[str, list] = {}
    register: dict[str, dict] = {}  # the last register data per entity, written once (its name keys too)
    async for raw in _each(settings, settings.topic("entities")):
        ev = _valid(raw, "entity", cfg.entity_id_scheme)  # what the workers applied, not what they dead-lettered
        if ev is not None:
            register[ev.entity_id] = {"entity_id": ev.entity_id, "name": ev.name, "industry": ev.industry,
                                      "region": ev.region, "address": ev.address, "status": ev.status,
                                      "status_since": ev.ts}
            meta[ev.entity_id] = [ev.industry, ev.region]
            counts["entities"] += 1
    # per entity only what the view needs (a state is ~1 KB; 1M of them would not fit in memory)
    fallback: dict[str, dict | None] = {}
    disputes: dict[str, list[dict]] = {}  # the open objections each entity's last state holds
    async for eid, st in _states(settings, settings.state_changelog, counts):
        if st.get("x") or eid in disputes:
            disputes[eid] = open_from_state(eid, st)
        m = st.get("m")
        if m:
            meta[eid] = m[:2]
            reg = register_from_state(eid, st)  # the register data the worker last applied
            if reg is not None:
                register[eid] = reg
        fallback[eid] = current_from_state(engine, eid, st)
    counts["states"] = len(fallback)
    # through the workers' round script: a renamed entity's old name keys leave the search index
    ents = list(register.values())
    for i in range(0, len(ents), 1000):
        await view.queue_round(pipe, [], meta.get, history=False, entities=ents[i:i + 1000])
        await flush_some()
    if flush:  # every name written by this release's name_keys, every entity in its region's set
        pipe.set(NAMES_FORMAT_KEY, NAMES_FORMAT)
        pipe.set(REGIONS_FORMAT_KEY, REGIONS_FORMAT)
    # the producer may reorder an entity's output messages; its `seq` is the decision order
    latest: dict[str, dict] = {}
    async for raw in _each(settings, settings.topic("risk-changes"), counts):
        o = _output(raw, "risk_change", counts)
        if o is None:
            continue
        view.output(pipe, o, None, current=False)
        prev = latest.get(o["entity_id"])
        if prev is None or o["seq"] > prev["seq"]:
            latest[o["entity_id"]] = o
        counts["risk_changes"] += 1
        await flush_some()
    # current fields through the workers' round script: written only where the view holds no later
    # decision (time, then seq), so a change a worker makes while this runs is not put back
    current = list(latest.values())
    for eid, o in fallback.items():
        if o is not None and eid not in latest:
            current.append(o)
            counts["from_state"] += 1
    for i in range(0, len(current), 1000):
        await view.queue_round(pipe, current[i:i + 1000], meta.get, history=False)
        await flush_some()
    async for raw in _each(settings, settings.topic("spotcheck-changes"), counts):
        o = _output(raw, "spotcheck_change", counts)
        if o is None:
            continue
        view.output(pipe, o, meta.get(o["entity_id"]))
        counts["spotcheck_changes"] += 1
        await flush_some()
    # inspection results for draw outcomes (kept, not flushed: older ones may be gone from the topic)
    async for raw in _each(settings, settings.topic("inspections")):
        ev = _valid(raw, "inspection", cfg.entity_id_scheme)
        if ev is None:
            continue
        view.inspection(pipe, inspection_fact(ev))
        counts["inspections"] += 1
        await flush_some()
    await pipe.execute()
    counts["objections"] = await _objections(r, settings, disputes)
    counts["audit"] = await merge(r, (await read_topic(settings, settings.topic("audit")))[0])
    counts.update(await restore_all(r))  # config history, silences, imports
    records, pops, _ = await read_draws(settings, settings.topic("draws"))
    counts["draws"] = len(await restore_draws(r, records, pops))
    return counts


async def _objections(r, settings: Settings, disputes: dict[str, list[dict]]) -> int:
    """Put back the objections' records Redis lost: those ``rw.commands`` still holds (with who and why,
    and their resolutions), then the open disputes of the states (``disputes``) it no longer holds.
    How many were put back."""
    commands = []
    async for msg in read_messages(settings, settings.topic("commands")):
        events, err = decode(msg.value)
        if err is None:
            author = dict(msg.headers or ()).get("author")
            commands += [(ev, author.decode() if author else None) for ev in events
                         if isinstance(ev, dict) and ev.get("type") in ("objection", "objection_resolution")]
    script = r.register_script(PUT_BACK)
    recs = [*from_commands(commands), *(o for held in disputes.values() for o in held)]
    done = 0
    for i in range(0, len(recs), 1000):
        pipe = r.pipeline(transaction=False)
        for rec in recs[i:i + 1000]:
            await put_back(pipe, script, rec)
        done += sum(await pipe.execute())
    return done
