"""Regenerate the committed bad-data corpus (deterministic): ``python tests/data/bad/make_corpus.py``.

Every file here is small (< 50 KB). The big cases (500 sensors, 1,000,000 rows, a 50 MB upload)
are generated at test time by ``tests/reliability/test_bad_data.py`` and never committed.
``cases.json`` says what each file is and what it must produce through the API and the
dashboard; edit it by hand when adding a file (tests/reliability/test_bad_data.py checks that
every file here is listed there and that this script rebuilds the committed bytes exactly).
"""

from __future__ import annotations

import gzip
import io
import math
import random
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
N = 40  # rows of an otherwise good table (lookback 10 needs 12)


def stamps(n: int = N, start_hour: int = 0) -> list[str]:
    return [f"2024-01-{1 + (h // 24):02d} {h % 24:02d}:00:00" for h in range(start_hour, start_hour + n)]


def wave(i: int, k: int) -> float:
    return round(10 * k + (1 + 0.3 * k) * math.sin(2 * math.pi * i / 24 + 0.4 * k) + 0.01 * ((i * 7 + k) % 5), 4)


def table(sep: str = ",", n: int = N, sensors: tuple[str, ...] = ("a", "b", "c"), time: str = "time",
          fmt=lambda v: repr(v)) -> str:
    rows = [sep.join([time, *sensors])]
    for i, t in enumerate(stamps(n)):
        rows.append(sep.join([t, *(fmt(wave(i, k)) for k in range(len(sensors)))]))
    return "\n".join(rows) + "\n"


def _entry(name: str) -> zipfile.ZipInfo:
    """A zip entry with a fixed date, so that the archives are byte-for-byte reproducible."""
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def xlsx_bytes() -> bytes:
    """A minimal but real .xlsx workbook (a zip of OOXML parts), written without openpyxl."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(_entry("[Content_Types].xml"),
                   '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
                   'package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/>'
                   '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
                   'officedocument.spreadsheetml.sheet.main+xml"/></Types>')
        z.writestr(_entry("xl/workbook.xml"), '<workbook><sheets><sheet name="Sheet1" sheetId="1"/></sheets></workbook>')
        z.writestr(_entry("xl/worksheets/sheet1.xml"),
                   "<worksheet><sheetData>" + "".join(f'<row r="{i}"><c><v>{i}</v></c></row>' for i in range(1, 30))
                   + "</sheetData></worksheet>")
    return buf.getvalue()


def zip_of_csv() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(_entry("data.csv"), table())
    return buf.getvalue()


def files() -> dict[str, bytes]:
    rng = random.Random(6)
    good = table()
    lines = good.splitlines()
    header, body = lines[0], lines[1:]
    out: dict[str, str | bytes] = {}

    # --- empty and nearly empty
    out["empty.csv"] = b""
    out["whitespace_only.csv"] = "  \n\n\t\n"
    out["header_only.csv"] = "time,a,b,c\n"
    out["header_only_no_newline.csv"] = "time,a,b,c"
    out["header_and_empty_rows.csv"] = "time,a,b,c\n,,,\n,,,\n"
    out["one_row.csv"] = "\n".join([header, body[0]]) + "\n"
    out["too_few_rows.csv"] = "\n".join([header, *body[:11]]) + "\n"  # lookback 10 needs 12
    out["same_timestamp_everywhere.csv"] = header + "\n" + "\n".join(
        "2024-01-01 00:00:00," + ",".join(str(wave(i, k)) for k in range(3)) for i in range(N)) + "\n"

    # --- columns that are not sensors
    out["no_numeric_column.csv"] = "time,site,status\n" + "\n".join(
        f"{t},plant-{i % 3},{'ok' if i % 5 else 'alarm'}" for i, t in enumerate(stamps())) + "\n"
    out["time_column_only.csv"] = "time\n" + "\n".join(stamps()) + "\n"
    out["all_nan_sensors.csv"] = header + "\n" + "\n".join(f"{t},,NA,nan" for t in stamps()) + "\n"
    out["all_nan_column.csv"] = header + ",d\n" + "\n".join(f"{ln}," for ln in body) + "\n"
    out["constant_column.csv"] = header + ",d\n" + "\n".join(f"{ln},5" for ln in body) + "\n"
    out["all_constant_columns.csv"] = "time,a,b\n" + "\n".join(f"{t},1.5,-2" for t in stamps()) + "\n"
    out["repeated_value_one_outlier.csv"] = "time,a\n" + "\n".join(
        f"{t},{'1000' if i == 25 else '3'}" for i, t in enumerate(stamps())) + "\n"
    out["one_sensor.csv"] = "time,a\n" + "\n".join(f"{t},{wave(i, 0)}" for i, t in enumerate(stamps())) + "\n"

    # --- text in numbers
    bad = list(body)
    bad[17] = bad[17].rsplit(",", 1)[0] + ",12..5"
    out["text_in_numeric.csv"] = "\n".join([header, *bad]) + "\n"
    bad = list(body)
    bad[5] = bad[5].rsplit(",", 1)[0] + ",ERROR"
    bad[30] = bad[30].rsplit(",", 1)[0] + ",sensor offline"
    out["error_words_in_numeric.csv"] = "\n".join([header, *bad]) + "\n"
    out["mixed_types_mostly_text.csv"] = header + ",mode\n" + "\n".join(
        f"{ln},{['low', 'high', 'off', '3'][i % 4]}" for i, ln in enumerate(body)) + "\n"
    out["boolean_column.csv"] = header + ",valve_open\n" + "\n".join(
        f"{ln},{'True' if i % 7 < 3 else 'False'}" for i, ln in enumerate(body)) + "\n"
    out["na_markers.csv"] = "\n".join([header, *[
        ln.rsplit(",", 1)[0] + "," + ["NA", "n/a", "-", "?", "null", "#N/A"][i % 6] if i % 4 == 1 else ln
        for i, ln in enumerate(body)]]) + "\n"
    out["thousands_separators.csv"] = "time,a,b\n" + "\n".join(
        f'{t},"{1000 + 37 * i:,}.5",{wave(i, 1)}' for i, t in enumerate(stamps())) + "\n"

    # --- separators, decimals, encodings
    out["semicolon_sep.csv"] = table(";")
    out["tab_sep.csv"] = table("\t")
    out["pipe_sep.csv"] = table("|")
    out["decimal_comma_semicolon.csv"] = table(";", fmt=lambda v: repr(v).replace(".", ","))
    out["decimal_comma_quoted.csv"] = table(",", fmt=lambda v: '"' + repr(v).replace(".", ",") + '"')
    out["utf8_bom.csv"] = b"\xef\xbb\xbf" + good.encode()
    out["latin1_header.csv"] = table(";", sensors=("température °C", "pression", "débit"),
                                     fmt=lambda v: repr(v).replace(".", ",")).encode("latin-1")
    out["utf16_bom.csv"] = good.encode("utf-16")
    out["crlf_line_endings.csv"] = good.replace("\n", "\r\n")
    out["trailing_separators.csv"] = "\n".join(ln + ",," for ln in lines) + "\n\n,,,,,\n"
    out["ragged_rows.csv"] = "\n".join([header, *body[:20], body[20] + ",7,8,9", *body[21:]]) + "\n"
    out["headerless_numbers.csv"] = "\n".join(",".join(str(wave(i, k)) for k in range(3)) for i in range(N)) + "\n"
    out["duplicate_column_names.csv"] = "time,a,a,b\n" + "\n".join(
        f"{t},{wave(i, 0)},{wave(i, 1)},{wave(i, 2)}" for i, t in enumerate(stamps())) + "\n"

    # --- timestamps
    shuffled = list(body)
    rng.shuffle(shuffled)
    out["unsorted_timestamps.csv"] = "\n".join([header, *shuffled]) + "\n"
    out["duplicate_timestamps.csv"] = "\n".join([header, *body[:20], *body[15:20], *body[20:]]) + "\n"
    bad = list(body)
    bad[12] = "," + bad[12].split(",", 1)[1]
    out["missing_timestamp.csv"] = "\n".join([header, *bad]) + "\n"
    bad = list(body)
    bad[9] = "yesterday," + bad[9].split(",", 1)[1]
    out["unreadable_timestamp.csv"] = "\n".join([header, *bad]) + "\n"
    out["mixed_timezones.csv"] = header + "\n" + "\n".join(
        f"{t.replace(' ', 'T')}{'+00:00' if i < 20 else '+02:00'},"
        + ",".join(str(wave(i, k)) for k in range(3))
        for i, t in enumerate(stamps(N, start_hour=0)[:20] + stamps(N, start_hour=22)[:20])) + "\n"
    out["naive_and_aware_timestamps.csv"] = header + "\n" + "\n".join(
        f"{t}{'+01:00' if i % 2 else ''}," + ",".join(str(wave(i, k)) for k in range(3))
        for i, t in enumerate(stamps())) + "\n"
    out["day_first_dates.csv"] = "date,a,b\n" + "\n".join(
        f"{1 + i % 28:02d}/{1 + i // 28:02d}/2024,{wave(i, 0)},{wave(i, 1)}" for i in range(N)) + "\n"
    out["split_date_and_time.csv"] = "Date;Time;a;b\n" + "\n".join(
        f"{t[8:10]}/01/2024;{t[11:13]}.00.00;{str(wave(i, 0)).replace('.', ',')};{str(wave(i, 1)).replace('.', ',')}"
        for i, t in enumerate(stamps())) + "\n"
    out["epoch_seconds.csv"] = "timestamp,a,b\n" + "\n".join(
        f"{1704067200 + 3600 * i},{wave(i, 0)},{wave(i, 1)}" for i in range(N)) + "\n"
    out["out_of_range_dates.csv"] = "time,a\n" + "\n".join(
        f"{2500 + i}-01-01,{wave(i, 0)}" for i in range(N)) + "\n"

    # --- extreme numbers
    bad = list(body)
    bad[8] = bad[8].rsplit(",", 1)[0] + ",inf"
    out["plus_inf.csv"] = "\n".join([header, *bad]) + "\n"
    bad = list(body)
    bad[3] = bad[3].split(",")[0] + ",-Infinity," + ",".join(bad[3].split(",")[2:])
    out["minus_inf.csv"] = "\n".join([header, *bad]) + "\n"
    bad = list(body)
    bad[10] = bad[10].rsplit(",", 1)[0] + ",1e309"
    out["overflow_1e309.csv"] = "\n".join([header, *bad]) + "\n"
    out["huge_1e308.csv"] = "time,a,b\n" + "\n".join(
        f"{t},{wave(i, 0)},{ {3: '1e308', 13: '-1e308'}.get(i % 20, wave(i, 1)) }"
        for i, t in enumerate(stamps())) + "\n"
    out["one_value_1e308.csv"] = "time,a,b\n" + "\n".join(
        f"{t},{wave(i, 0)},{'1e308' if i == 20 else wave(i, 1)}" for i, t in enumerate(stamps())) + "\n"
    out["tiny_denormals.csv"] = "time,a\n" + "\n".join(
        f"{t},{wave(i, 0) * 1e-310!r}" for i, t in enumerate(stamps())) + "\n"

    # --- not a CSV at all
    out["excel_renamed.csv"] = xlsx_bytes()
    out["old_excel_renamed.csv"] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(rng.randrange(256) for _ in range(1000))
    out["zip_archive.csv"] = zip_of_csv()
    out["gzip_csv.csv"] = gzip.compress(good.encode(), mtime=0)
    out["corrupt_gzip.csv"] = gzip.compress(good.encode(), mtime=0)[:60]
    out["binary_junk.csv"] = bytes(rng.randrange(256) for _ in range(4096))
    out["png_renamed.csv"] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(rng.randrange(256) for _ in range(500))
    out["pdf_renamed.csv"] = (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\nstream\n"
                              + bytes(rng.randrange(256) for _ in range(800)) + b"\nendstream\n%%EOF\n")
    out["nul_bytes_in_text.csv"] = (good[:300] + "\x00\x00\x00" + good[300:]).encode()
    out["html_page.csv"] = ("<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n<body>\n"
                            "<p>Your session has expired, please sign in again.</p>\n</body></html>\n")
    out["json_records.csv"] = "[\n" + ",\n".join(
        f'  {{"time": "{t}", "a": {wave(i, 0)}, "b": {wave(i, 1)}}}' for i, t in enumerate(stamps())) + "\n]\n"
    out["prose_text.csv"] = ("Sensor readings exported on Monday.\nPlease see the attached spreadsheet for the\n"
                             "values; the pump was offline for most of the night.\nRegards, operations\n")
    return {k: v.encode() if isinstance(v, str) else v for k, v in out.items()}


def main() -> None:
    for name, data in files().items():
        assert len(data) < 50_000, name
        (HERE / name).write_bytes(data)


if __name__ == "__main__":
    main()
