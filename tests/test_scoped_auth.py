"""Tokens limited to regions: what RISKWATCH_API_TOKENS accepts, and what such a principal sees
(the routes: tests/integration/test_scoped_tokens.py)."""

from __future__ import annotations

import io

import pytest

from riskwatch.api.auth import TokenRegistry, hash_token
from riskwatch.cli import main

H = hash_token("t")


@pytest.mark.parametrize("entry, error", [
    (f"a:viewer:{H}:", "not ''"),
    (f"a:viewer:{H}:3", "not '3'"),
    (f"a:viewer:{H}:31+31010", "not '31010'"),
    (f"a:viewer:{H}:31+X1", "not 'X1'"),
    (f"a:viewer:{H}:３１", "not '３１'"),  # full-width digits are digits to str.isdigit
    (f"a:ingest:{H}:31", "only viewer, inspector and ops"),
    (f"a:admin:{H}:31", "only viewer, inspector and ops"),
    (f"a:viewer:{H}:31:x", "name:role:sha256hex[:regions]"),
])
def test_a_bad_region_limit_is_refused_with_the_entry_named(entry, error):
    with pytest.raises(ValueError, match=r"RISKWATCH_API_TOKENS entry 2: .*" + error.replace("+", r"\+")
                       .replace("[", r"\[").replace("]", r"\]")):
        TokenRegistry.parse(f"b:ops:{H}," + entry)


def test_a_limited_principal_sees_entities_of_its_region_prefixes_only():
    p = TokenRegistry.parse(f"bj:ops:{H}:11+310104").lookup("t")
    assert p.regions == ("11", "310104")
    assert [p.sees(r) for r in ("110101", "110105", "310104", "310105", "", None)] == [True, True, True, False,
                                                                                        False, False]
    everyone = TokenRegistry.parse(f"all:ops:{H}").lookup("t")
    assert everyone.regions is None and everyone.sees(None) and everyone.sees("510107")


def test_hash_token_prints_a_limited_entry_the_api_takes_and_refuses_one_it_would_not(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("t-li\n"))
    assert main(["hash-token", "li", "inspector", "--regions", "310104+3102"]) == 0
    entry = capsys.readouterr().out.strip()
    assert entry == f"li:inspector:{hash_token('t-li')}:310104+3102"
    assert TokenRegistry.parse(entry).lookup("t-li").regions == ("310104", "3102")
    monkeypatch.setattr("sys.stdin", io.StringIO("t-li\n"))
    assert main(["hash-token", "li", "admin", "--regions", "31"]) == 2
    assert "only viewer, inspector and ops tokens" in capsys.readouterr().err
