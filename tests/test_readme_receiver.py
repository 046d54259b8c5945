"""The README's receiver example verifies what riskwatch signs, and rejects what it should."""

import re
import time
from pathlib import Path

from riskwatch.alerts.signing import sign

README = Path(__file__).resolve().parent.parent / "README.md"


def _snippet():
    text = README.read_text()
    code = re.search(r"<!-- receiver-example -->\s*```python\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 12  # "a 10-line receiver example"
    ns: dict = {}
    exec(compile(code, "README receiver example", "exec"), ns)  # noqa: S102 - our own README
    return ns["verified"]


def test_readme_receiver_example():
    verified = _snippet()
    body = b'{"version":"4","status":"firing"}'
    header = sign(body, ["old-secret", "new-secret"])
    assert verified(header, body, "new-secret") and verified(header, body, "old-secret")
    assert not verified(header, body.replace(b"firing", b"resolved"), "new-secret")
    assert not verified(header, body, "wrong")
    assert not verified(sign(body, ["new-secret"], t=int(time.time()) - 3600), body, "new-secret")
    assert not verified("garbage", body, "new-secret")
