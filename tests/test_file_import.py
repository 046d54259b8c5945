"""Reading import files (riskwatch.ingest.reading): no broker needed to read and validate them."""

from __future__ import annotations

import codecs
import io

from riskwatch.ingest.reading import FileReading, text_of
from riskwatch.ingest.plan import validate

from .conftest import shared_path

REGISTER = {"entity_id": "id", "name": "name", "address": "address"}


def test_a_csv_from_excel_keeps_its_first_column():
    """Excel's "CSV UTF-8" starts with a byte order mark; read as plain UTF-8 it became part of the first
    column's name, and a mapping to that column found nothing (every row rejected: entity_id missing)."""
    raw = codecs.BOM_UTF8 + "id,name,address\nE1,上海星巴克咖啡有限公司,上海市黄浦区淮海中路300号\n".encode()
    f = text_of(io.BytesIO(raw))  # as import_file opens it
    [(line, ev, err)] = list(FileReading("csv", REGISTER, "entity", constants={"industry": "catering",
                                                                               "region": "310101"}).items(f))
    assert (line, err) == (2, None) and ev["entity_id"] == "E1" and ev["address"] == "上海市黄浦区淮海中路300号"


def test_a_register_export_s_status_words_import_as_register_statuses():
    """The SAMR register's 登记状态 column as its exports write it: 存续（在营、开业、在册）is operating,
    吊销，未注销 (licence revoked, not yet deregistered) and 注销 closed, 停业 suspended; a word riskwatch
    does not know is refused with the field named, the other rows go on."""
    raw = ("统一社会信用代码,企业名称,登记状态\n"
           "91350100M000100Y43,福州冷链有限公司,存续（在营、开业、在册）\n"
           "91310104MA1FR0HK2M,上海饭店有限公司,吊销，未注销\n"
           "91440300MA5F0XE54P,深圳药房经营部,注销\n"
           "91110101MA01AAAA0U,北京茶馆,停业\n"
           "91110101MA01AAAB9T,北京书店,破产\n").encode()
    items = list(FileReading("csv", {"entity_id": "统一社会信用代码", "name": "企业名称", "status": "登记状态"},
                             "entity", constants={"industry": "catering", "region": "350100"})
                 .items(text_of(io.BytesIO(raw))))
    ok, bad = validate(items, "opaque")
    assert [ev.status for _, ev, _ in ok] == ["operating", "closed", "closed", "suspended"]
    assert [(line, [e["field"] for e in err]) for line, err in bad] == [(6, ["status"])], bad


def test_the_louisville_register_imports_with_addresses_from_a_file_without_a_header():
    """`businesses.csv` of the shared Louisville data (LIVES layout) has no header row: ``--columns`` names
    them. Every business becomes a valid entity upsert with its street address."""
    path = shared_path("data/inspections/louisville_inspections/businesses.csv")
    columns = ["id", "name", "address", "city", "state", "postal_code", "latitude", "longitude", "phone"]
    with path.open(encoding="utf-8-sig", newline="") as f:
        items = list(FileReading("csv", REGISTER, "entity", constants={"industry": "restaurant", "region": "000000"},
                                 columns=columns).items(f))
    ok, bad = validate(items, "opaque")
    assert len(items) == 2370 and items[0][0] == 1  # line numbers count from the first line: no header
    assert bad == [], bad[:3]
    first = ok[0][1]
    assert (first.entity_id, first.name, first.address) == ("87593", "SICILIAN PIZZA AND PASTA", "627 S. 4TH STREET")
    print(f"{len(ok)} Louisville businesses, {sum(1 for _, ev, _ in ok if ev.address)} with an address")


def test_columns_that_cannot_name_a_row_are_refused_before_anything_is_read(tmp_path, monkeypatch, capsys):
    from riskwatch.cli import main
    from riskwatch.embedded import free_port

    monkeypatch.setenv("RISKWATCH_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing there: a warning
    monkeypatch.setenv("RISKWATCH_BROKER", f"127.0.0.1:{free_port()}")
    (tmp_path / "r.csv").write_text("E1,Shop\n")
    for bad in ("id,id", "id,,name"):
        assert main(["import", str(tmp_path / "r.csv"), "--type", "entity", "--columns", bad]) == 2
        assert f"--columns {bad!r}: give each column a name, once" in capsys.readouterr().err
    (tmp_path / "r.jsonl").write_text("{}\n")
    assert main(["import", str(tmp_path / "r.jsonl"), "--columns", "id,name"]) == 2
    assert "--columns apply to CSV files" in capsys.readouterr().err
