"""CSV downloads that Excel opens right: a UTF-8 byte order mark, formula-like cells defused, and a
file name that survives Chinese characters (the draws' work lists, the audit log)."""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import quote

__all__ = ["attachment", "cell", "csv_text"]


def cell(v) -> str:
    """A CSV cell that a spreadsheet shows as text: a value from a feed (an entity's name) that starts
    like a formula gets a leading apostrophe (OWASP's advice on CSV injection).

    >>> cell("=HYPERLINK(1)"), cell(None), cell(3)
    ("'=HYPERLINK(1)", '', '3')
    """
    v = "" if v is None else str(v)
    return "'" + v if v[:1] in ("=", "+", "-", "@", "\t", "\r") else v


def csv_text(columns, rows: list[dict]) -> str:
    """The rows as CSV, after a UTF-8 byte order mark: without one, Excel reads a CSV file in the system's
    code page (GBK on a Chinese Windows) and shows the names as mojibake (since 2026-12-06)."""
    buf = io.StringIO()
    buf.write("\ufeff")
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([cell(row[c]) for c in columns])
    return buf.getvalue()


def attachment(name: str) -> str:
    r"""A Content-Disposition for a download named ``name``: an ASCII fallback and the UTF-8 name
    (RFC 6266), as inspectors' names may be Chinese or hold quotes or line breaks.

    >>> print(attachment("draw-1-李明.csv"))
    attachment; filename="draw-1-__.csv"; filename*=UTF-8''draw-1-%E6%9D%8E%E6%98%8E.csv
    >>> print(attachment('d-"x"\r\n.csv'))
    attachment; filename="d-_x___.csv"; filename*=UTF-8''d-%22x%22%0D%0A.csv
    """
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
