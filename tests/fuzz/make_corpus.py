#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into tests/fuzz/corpus/.

Run it from anywhere with `python3 tests/fuzz/make_corpus.py` after changing
the seeds below.  It needs only the Python standard library.  It replaces
the files of corpus/<target>/ with the seeds listed here and leaves
regressions/ alone.

The encoder below writes the smallest msgpack form of each value, as a node
does.  Seeds that need other forms (wide integers, bin, ext, bad bytes) are
written as raw bytes with the helpers Raw, Bin, Ext and U64.
"""
import json
import pathlib
import shutil
import struct

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"


class Raw(bytes):
    """Bytes written into the message as they are."""


class Bin(bytes):
    """A msgpack bin value."""


class Ext:
    """A msgpack ext value of the given type."""

    def __init__(self, kind, data):
        self.kind = kind
        self.data = data


class U64(int):
    """An unsigned integer always packed as uint 64 (0xcf)."""


def pack_length(n, fix_tag, fix_max, tags):
    if n <= fix_max:
        return bytes([fix_tag | n])
    for tag, fmt, limit in tags:
        if n <= limit:
            return bytes([tag]) + struct.pack(fmt, n)
    raise ValueError("length too large")


def pack_int(n):
    if isinstance(n, U64):
        return b"\xcf" + struct.pack(">Q", n)
    if 0 <= n <= 0x7F:
        return bytes([n])
    if -32 <= n < 0:
        return struct.pack(">b", n)
    if n >= 0:
        for tag, fmt, limit in ((0xCC, ">B", 0xFF), (0xCD, ">H", 0xFFFF),
                                (0xCE, ">I", 0xFFFFFFFF),
                                (0xCF, ">Q", 2**64 - 1)):
            if n <= limit:
                return bytes([tag]) + struct.pack(fmt, n)
    for tag, fmt, limit in ((0xD0, ">b", 2**7), (0xD1, ">h", 2**15),
                            (0xD2, ">i", 2**31), (0xD3, ">q", 2**63)):
        if -limit <= n:
            return bytes([tag]) + struct.pack(fmt, n)
    raise ValueError("integer too large")


def pack(value):
    if isinstance(value, Raw):
        return bytes(value)
    if value is None:
        return b"\xc0"
    if value is True:
        return b"\xc3"
    if value is False:
        return b"\xc2"
    if isinstance(value, int):
        return pack_int(value)

    if isinstance(value, float):
        return b"\xcb" + struct.pack(">d", value)

    if isinstance(value, str):
        data = value.encode("utf-8")
        return pack_length(len(data), 0xA0, 31,
                           ((0xD9, ">B", 0xFF), (0xDA, ">H", 0xFFFF),
                            (0xDB, ">I", 0xFFFFFFFF))) + data
    if isinstance(value, Bin):
        return pack_length(len(value), 0, -1,
                           ((0xC4, ">B", 0xFF), (0xC5, ">H", 0xFFFF),
                            (0xC6, ">I", 0xFFFFFFFF))) + bytes(value)
    if isinstance(value, Ext):
        fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
        kind = struct.pack(">b", value.kind)
        if len(value.data) in fixed:
            return bytes([fixed[len(value.data)]]) + kind + value.data
        return b"\xc7" + bytes([len(value.data)]) + kind + value.data
    if isinstance(value, (list, tuple)):
        head = pack_length(len(value), 0x90, 15,
                           ((0xDC, ">H", 0xFFFF), (0xDD, ">I", 0xFFFFFFFF)))
        return head + b"".join(pack(item) for item in value)
    if isinstance(value, dict):
        head = pack_length(len(value), 0x80, 15,
                           ((0xDE, ">H", 0xFFFF), (0xDF, ">I", 0xFFFFFFFF)))
        return head + b"".join(pack(k) + pack(v) for k, v in value.items())
    raise TypeError(f"cannot pack {value!r}")


def request(msgid, method, args=None, meta=None):
    params = [] if args is None and meta is None else [args]
    if meta is not None:
        params.append(meta)
    return pack([0, msgid, method, params])


def response(msgid, error=None, result=None):
    return pack([1, msgid, error, result])


def event(topic, payload):
    return topic.encode() + b"\x00" + pack([2, topic, [payload]])


ERROR = {
    "category": "BadRequest",
    "code": "INVALID_DATA",
    "message": "Missing required argument 'id' (string).",
    "details": {"argument": "id", "expected": "string"},
    "correlation_id": "c0ffee",
}

# A timestamp of 2026-01-31T10:00:00.5Z in its 4, 8 and 12 byte forms.
TS_SECONDS = 1769853600
TS32 = Ext(-1, struct.pack(">I", TS_SECONDS))
TS64 = Ext(-1, struct.pack(">Q", (500000000 << 34) | TS_SECONDS))
TS96 = Ext(-1, struct.pack(">Iq", 500000000, TS_SECONDS))

ENVELOPE = {
    "request_worked_example": request(
        7, "settings.get_section_by_id", {"id": "app"},
        {"correlation_id": "c0ffee", "timeout_ms": 5000}),
    "request_no_params": request(1, "counters.ping"),
    "request_nil_args": pack([0, 2, "logging.read_messages", [None, None]]),
    "request_u64_msgid": pack([0, U64(2**64 - 2), "node.describe", [{}]]),
    "request_reserved_msgid": pack([0, U64(2**64 - 1), "node.ping", []]),
    "request_bad_method": request(3, "Counters.Ping", {}),
    "request_long_method": request(4, "a." + "b" * 130, {}),
    "request_bad_meta": request(5, "node.ping", {}, {"timeout_ms": -1}),
    "request_bad_args": request(6, "node.ping", {"big": U64(2**64 - 1)}),
    "request_map_params": pack([0, 8, "node.ping", {"args": {}}]),
    "request_truncated": request(9, "counters.write_counter",
                                 {"counter": {"name": "a"}})[:-3],
    "batch_two_pings": request(1, "counters.ping") +
    request(2, "settings.ping"),
    "batch_bad_then_good": pack([0, 1, "x", []]) + request(2, "node.ping"),
    "batch_garbage_tail": request(1, "node.ping") + b"\xc1\x00",
    "batch_five": b"".join(request(i, "node.ping") for i in range(5)),
    "response_success": response(7, None, {"theme": "dark"}),
    "response_error": response(7, ERROR),
    "response_nil_msgid": response(None, ERROR),
    "response_batch": response(1) + response(2, None, [1, 2.5, "x"]),
    "event_changed": event("settings.changed", {
        "id": "kiosk-7", "parameters": {"restarts": 1},
        "update_time": "2026-12-04T20:55:18.989Z"}),
    "event_nil_payload": event("discovery.join", None),
    "event_topic_mismatch": b"a.b\x00" + pack([2, "a.c", [1]]),
    "event_extra_bytes": event("a.b", 1) + b"\x00",
    "deep_nesting": b"\x91" * 40 + b"\xc0",
    "huge_array_header": b"\xdd\xff\xff\xff\xff",
    "empty": b"",
}

COUNTER = {"name": "orders.placed", "type": 4, "count": 1,
           "time": "2026-12-04T20:58:23.739Z", "tags": ["shop"]}

SCHEMA = {
    "write_counter": pack({"counter": COUNTER}),
    "write_counter_loose": pack({"counter": {
        "name": "a", "type": 4.0, "count": 2.5, "time": TS64,
        "tags": None}}),
    "write_counter_missing_name": pack({"counter": {"type": 4}}),
    "read_filter_paging": pack({
        "filter": {"group": "orders", "max_level": 3, "ok": True,
                   "none": None},
        "paging": {"skip": "10", "take": 5, "total": "true"},
        "from": "2026-01-31", "to": "2026-01-31 10:00:00,5+02:00"}),
    "read_null_paging": pack({"paging": {"skip": None, "total": False},
                              "from": None}),
    "read_bad_filter": pack({"filter": {"group": ["a"]}}),
    "batch_counters": pack({
        "counters": [COUNTER, {"name": "b", "type": 0}],
        "limit": 1000, "ratio": -1.0, "enabled": False,
        "parameters": {"a": 1, "b": [True]}, "anything": [None, {}]}),
    "batch_out_of_bounds": pack({"counters": [], "limit": 0, "ratio": 1.5,
                                 "parameters": {"a": 1, "b": 2, "c": 3,
                                                "d": 4, "e": 5}}),
    "nested_section": pack({
        "section": {"id": "kiosk-7", "parameters": {"restarts": 1},
                    "history": [
                        {"time": "2026-01-31T10:00:00Z", "level": 3,
                         "value": "paper low"},
                        None,
                        {"time": TS32, "level": 6.0}]},
        "since": "2026-01-31T10:00:00.123456Z"}),
    "nested_bad_time": pack({"section": {"id": "x", "history": [
        {"time": "2026-02-30T00:00:00Z"}]}}),
    "not_a_map": pack([1, 2, 3]),
}

BRIDGE = {
    "scalars": pack([None, True, False, 0, -1, 127, -32, 255, 65535,
                     2**32, -2**63, 2**63 - 1, 1.5, -0.0, "", "text"]),
    "wide_forms": Raw(b"\x94\xcc\x01\xcd\x00\x02\xd0\x05"
                      b"\xca\x3f\xc0\x00\x00"),
    "float32_nan": Raw(b"\xca\x7f\xc0\x00\x00"),
    "bin": pack(Bin(b"\x00\x01\xfe\xff")),
    "timestamps": pack([TS32, TS64, TS96]),
    "timestamp_bad_size": pack(Ext(-1, b"\x00\x00\x00")),
    "ext_other_type": pack(Ext(5, b"\x01\x02")),
    "uint_too_big": pack(U64(2**63)),
    "utf8": pack({"caf\u00e9": "\u65e5\u672c \U0001F600"}),
    "utf8_invalid": Raw(b"\xa2\xc3\x28"),
    "duplicate_keys": Raw(b"\x82\xa1a\x01\xa1a\x02"),
    "int_key": Raw(b"\x81\x01\x02"),
    "nested": pack({"a": [{"b": [[], {}]}], "c": {"d": {"e": None}}}),
    "json_text_object": Raw(json.dumps(
        {"counter": COUNTER, "list": [1, 2.5, -3, True, None]}).encode()),
    "json_text_escapes": Raw(b'["\\u00e9\\ud83d\\ude00", "\\n\\t", 1e300]'),
    "json_text_deep": Raw(b"[" * 40 + b"]" * 40),
    "json_text_scalar": Raw(b"-12345678901234"),
}


def write(target, seeds):
    folder = CORPUS / target
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, data in seeds.items():
        (folder / name).write_bytes(bytes(data))


def main():
    write("envelope", ENVELOPE)
    write("schema", SCHEMA)
    write("bridge", BRIDGE)


if __name__ == "__main__":
    main()
