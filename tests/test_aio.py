"""The event loop of riskwatch's async processes: uvloop by default, asyncio's on request."""

import asyncio

import pytest
from pydantic import ValidationError

from riskwatch.aio import use_event_loop
from riskwatch.settings import Settings


def _new_loop_module() -> str:
    loop = asyncio.new_event_loop()
    try:
        return type(loop).__module__
    finally:
        loop.close()


def test_uvloop_by_default_and_the_standard_loop_on_request():
    assert Settings().event_loop == "uvloop"
    try:
        assert use_event_loop(Settings().event_loop) == "uvloop"
        assert _new_loop_module().startswith("uvloop")
    finally:
        assert use_event_loop("asyncio") == "asyncio"
    assert not _new_loop_module().startswith("uvloop")


def test_an_unknown_event_loop_is_refused_naming_the_setting(monkeypatch):
    monkeypatch.setenv("RISKWATCH_EVENT_LOOP", "gevent")
    with pytest.raises(ValidationError, match="event_loop"):
        Settings()
