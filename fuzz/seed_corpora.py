#!/usr/bin/env python3
"""Writes the seed corpora of the thecal fuzz targets from the worked examples of
docs/PROTOCOL.md (section 6: every `<!-- vector: name -->` block; its second hex block is
the wire frame). The committed corpora under fuzz/corpus/ started from these seeds and were
then minimised with `cargo fuzz cmin`; run this again after the vectors change:

    python3 fuzz/seed_corpora.py            # writes fuzz/target/seeds/<target>/<name>
    cargo fuzz run <target> fuzz/corpus/<target> fuzz/target/seeds/<target> -- -runs=0

The input formats are described in each target's module docs.
"""

import pathlib
import re
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "target" / "seeds"


def vectors():
    text = (ROOT / "docs" / "PROTOCOL.md").read_text()
    for m in re.finditer(r"<!-- vector: ([\w-]+) -->", text):
        hexes = re.findall(r"```hex\n(.*?)```", text[m.end():], re.S)
        wire = bytes.fromhex(re.sub(r"\s+", "", hexes[1]))
        yield m.group(1), wire


def cobs_decode(data):
    out, i = bytearray(), 0
    while i < len(data):
        code = data[i]
        out += data[i + 1:i + code]
        i += code
        if code < 0xFF and i < len(data):
            out.append(0)
    return bytes(out)


def varint(n):
    """postcard's unsigned LEB128."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def write(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main():
    requests, responses = [], []
    for name, wire in vectors():
        raw = cobs_decode(wire[:-1])
        header, body = raw[:5], raw[5:-2]
        write("frame_decoder", name, b"\x00" + wire)
        # The same frame cut into 1-, 3- and 7-byte chunks, behind some garbage.
        write("frame_decoder", name + "-chunked", b"\x03\x01\x03\x07\x11\x22\x00" + wire)
        if header[1] == 0x01:
            requests.append((name, header, body))
            write("request_decode", name, body)
        else:
            responses.append((name, header, body))
            write("response_decode", name, body)
        if name == "write-prescription-request":
            # Body: tag 6, the expected revision (a varint), then the draft.
            i = 1
            while body[i] & 0x80:
                i += 1
            write("schedule_validate", "morphine-draft", b"\x00" + body[i + 1:])

    # device_server: each request as a valid frame (op 4), an hour of ticking (op 0)
    # between them, a retry (op 6) and a power cut (op 5) a few operations into a write.
    hour = b"\x00" + struct.pack("<H", 3600)
    for name, header, body in requests:
        flags = header[4]
        frame = b"\x04" + header[2:4] + bytes([flags]) + struct.pack("<H", len(body)) + body
        write("device_server", name, frame + hour + b"\x06" + hour)
        write("device_server", name + "-cut", b"\x05" + struct.pack("<H", 9) + frame + hour)
    # Beyond the vectors: the simulator's drug (baclofen) refilled at another strength, and
    # a day-long bolus, each with power cuts a little later and two days of ticking.
    def draft(conc):
        # drug 5 (baclofen), concentration, limit 600 µg/day, Continuous 180 µg/day, no
        # patient bolus, low-reservoir alarm 2 mL.
        return (varint(5) + varint(conc) + varint(600_000) + varint(1) + varint(180_000)
                + b"\x00" + varint(2_000_000))
    day = b"\x00" + struct.pack("<H", 43200)
    for conc in (250_000, 1_000_000):
        body = varint(7) + varint(1) + varint(20_000_000) + b"\x01" + draft(conc)
        frame = b"\x04\x10\x00\x00" + struct.pack("<H", len(body)) + body
        for cut in (5, 30, 60):
            write("device_server", f"refill-{conc}-cut{cut}",
                  hour + b"\x05" + struct.pack("<H", cut) + frame + day * 4)
    bolus = varint(8) + varint(0) + varint(300_000) + varint(1440)
    frame = b"\x04\x11\x00\x00" + struct.pack("<H", len(bolus)) + bolus
    write("device_server", "long-bolus-cut", frame + b"\x05\x00\x00" + day * 4 + frame)

    session = b"".join(
        b"\x04" + h[2:4] + bytes([h[4]]) + struct.pack("<H", len(b)) + b + hour
        for _, h, b in requests
    )
    write("device_server", "session", session)

    # host_client: one call of each kind, answered by each response body (op 0 waits for
    # the request, op 5 answers it with the body), then a stale answer and noise.
    for call in range(18):
        for name, _, body in responses:
            script = b"\x00\x05" + struct.pack("<H", len(body)) + body
            write("host_client", f"call{call}-{name}", bytes([0, call]) + script)
    stale = b"\x00\x02\xff\x02" + struct.pack("<H", 2) + b"\x02\x00"
    write("host_client", "stale-then-timeout", bytes([0, 1]) + stale + b"\x03\x28")


if __name__ == "__main__":
    main()
