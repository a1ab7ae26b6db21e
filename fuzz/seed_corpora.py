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
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "target" / "seeds"


def vectors():
    """(name, wire frame) of every vector: the second hex block after its marker (the
    first is the annotated header and body), up to the next marker. A vector whose wire
    block is missing or does not parse is skipped with a warning (the doc may be in the
    middle of a rewrite), never a crash."""
    text = (ROOT / "docs" / "PROTOCOL.md").read_text()
    marks = list(re.finditer(r"<!-- vector: ([\w-]+) -->", text))
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        hexes = re.findall(r"```hex[^\n]*\n(.*?)```", text[m.end():end], re.S)
        name = m.group(1)
        if len(hexes) < 2:
            print(f"seed_corpora: vector {name}: no wire block, skipped", file=sys.stderr)
            continue
        # Comments (`# ...`) are allowed in hex blocks.
        digits = re.sub(r"\s+", "", re.sub(r"#[^\n]*", "", hexes[1]))
        try:
            wire = bytes.fromhex(digits)
        except ValueError as e:
            print(f"seed_corpora: vector {name}: {e}, skipped", file=sys.stderr)
            continue
        if len(wire) < 2 or wire[-1] != 0:
            print(f"seed_corpora: vector {name}: not a delimited frame, skipped", file=sys.stderr)
            continue
        yield name, wire


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
        if len(raw) < 7:
            print(f"seed_corpora: vector {name}: shorter than a frame, skipped", file=sys.stderr)
            continue
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
    # Session mode (byte 0 bit 7; role from bits 5-6, 1 = clinician): the pump answers
    # genuinely (op 6) the Identify before the handshake (its real binding), the hello
    # (a genuine challenge: device nonce, ephemeral secret) and the proof, then the sealed
    # request with each response body sealed (op 7).
    identify = b"\x00\x06\x00"
    challenge = b"\x00\x06\x00" + bytes(range(16)) + bytes(range(32, 64))
    handshake = identify + challenge + b"\x00\x06"
    for call in range(18):
        for name, _, body in responses:
            script = handshake + b"\x00\x07" + struct.pack("<H", len(body)) + body
            write("host_client", f"session-call{call}-{name}", bytes([0xA0, call]) + script)
    # The emergency role (3): a status call; a lost challenge (the client tries again).
    for name, _, body in responses:
        script = handshake + b"\x00\x07" + struct.pack("<H", len(body)) + body
        write("host_client", f"emergency-{name}", bytes([0xE0, 2]) + script)
    write("host_client", "session-lost-challenge",
          bytes([0xA0, 2]) + identify + b"\x00\x03\x0b" + challenge + b"\x00\x06\x00\x07\x00\x00")
    # Protocol 3 on the client side: a downgraded Identify (the client must not prove the
    # challenge), a challenge with a small-order ephemeral key, a rotation of the
    # clinician's own key answered genuinely then a call needing a new handshake, a
    # service re-provisioning, a factory provisioning of an unprovisioned pump.
    write("host_client", "downgraded-identify",
          bytes([0xA0, 2]) + b"\x00\x06\x03" + challenge + b"\x00\x06")
    write("host_client", "low-order-challenge",
          bytes([0xA0, 2]) + identify + b"\x00\x06\x05" + bytes(range(16)) + bytes(32))
    rotate = b"\x00\x06"  # KeyRotated for the next epoch
    write("host_client", "rotate-own-key",
          bytes([0xA1, 18 + 21 * 1, 2]) + handshake + rotate + b"\x04")
    write("host_client", "rotate-then-renew",
          bytes([0xA1, 18 + 21 * 1, 2]) + handshake + rotate
          + b"\x03\xff" * 30 + challenge + b"\x00\x06\x00\x07\x00\x00")
    write("host_client", "reprovision",
          bytes([0xC0, 19]) + handshake + b"\x00\x06")
    write("host_client", "factory-provision",
          bytes([0x00, 20]) + b"\x00\x06" + identify + challenge + b"\x00\x06\x00\x06")

    # session (format in fuzz_targets/session.rs): a genuine clinician handshake (op 1,
    # v = 0), then every request vector sealed as a Command with a key (op 3, mode 2); a
    # repeat of the last keyed change (mode 3); a therapy change without a key (mode 1); a
    # tampered frame; an idle timeout.
    genuine = b"\x01" + bytes(16)
    def handshake_op(v, nonce=bytes(16)):
        return bytes([1 + 8 * v]) + nonce
    def sealed(body, key=b"\x11" * 8):
        return b"\x03\x04" + key + bytes([len(body)]) + body
    for name, _, body in requests:
        if len(body) > 255:
            continue
        write("session", f"genuine-{name}", genuine + sealed(body))
        write("session", f"repeat-{name}", genuine + sealed(body) + b"\x03\x06")
        write("session", f"no-key-{name}", genuine + b"\x03\x02" + bytes([len(body)]) + body)
        write("session", f"tampered-{name}",
              genuine + b"\x03\x05" + b"\x22" * 8 + bytes([len(body)]) + body + b"\x07\x40")
        write("session", f"expired-{name}", genuine + b"\x05\x41" + sealed(body))
    # Attacks interleaved with a genuine handshake (op 1, v = 1): attacker hellos (a
    # clinician's at the epoch in force, an emergency one with a small-order key, one
    # naming the next epoch), the genuine nonce for another role, with another ephemeral
    # key, naming another epoch, the genuine hello again, a wrong proof for it, a guessed
    # proof, raw bytes, a 1 s nudge, a plain frame; then StopTherapy (tag 10).
    actions = [
        b"\x00\x01" + bytes(range(16)) + b"\x00" + bytes(range(100, 132)),
        b"\x00\x03" + bytes(16) + b"\x80",
        b"\x00\x05" + bytes(16) + b"\x81",
        b"\x01",
        b"\x19" + bytes(range(64, 96)),
        b"\x21\x05",
        b"\x02",
        b"\x03" + bytes(32),
        b"\x04" + bytes(48),
        b"\x05\x03\x01\x02\x00",
        b"\x06\x7d",
        b"\x07\x00\x01\x0a",
    ]
    script = handshake_op(1) + bytes([len(actions)]) + b"".join(actions)
    write("session", "interleaved", script + sealed(b"\x0a"))
    # Emergency (v = 2): a hello without presence, then with presence (v = 10) and a
    # sealed StopTherapy; an attacker's emergency handshake (op 2, role 3).
    emergency = handshake_op(2) + handshake_op(10)
    write("session", "emergency-stop", emergency + sealed(b"\x0a"))
    write("session", "emergency-attacker",
          b"\x02\x03" + bytes(16) + b"\x00" + bytes(64) + emergency + sealed(b"\x0b"))
    # Key lifecycle. Rotations in a clinician session (op 3, mode 4): the clinician's own
    # key (completing the new handshake), the patient's, a stale epoch; then a programmer
    # with the retired key (op 4, mode 0 and 1) and a repeat of the rotation.
    write("session", "rotate-clinician",
          genuine + b"\x03\x08\x01" + b"\x04\x01" + b"\x04\x05" + b"\x03\x06")
    write("session", "rotate-patient", genuine + b"\x03\x08\x10" + b"\x04\x00")
    write("session", "rotate-stale-epoch", genuine + b"\x03\x08\x05")
    # A service session (v = 4): its own key, then a re-provisioning (mode 5) checked on
    # the clinician key, one with a small-order key, and a clinician handshake after.
    service = handshake_op(4)
    write("session", "service-rotate", service + b"\x03\x08\x02")
    write("session", "reprovision",
          service + b"\x03\x0a\x02" + b"\x03\x0a\x01" + genuine + sealed(b"\x02"))
    # A challenge kept (op 4, mode 2) across a rotation of its key, then completed with
    # the old key (mode 3): it must not open a session.
    write("session", "held-challenge-across-rotation",
          b"\x04\x09" + genuine + b"\x03\x08\x01" + b"\x04\x0d")
    write("session", "held-challenge", b"\x04\x09" + b"\x04\x0d")
    # Downgraded bindings in the programmer's transcript (op 1, v = 16).
    for d in (0x00, 0x01, 0x06, 0x07):
        write("session", f"downgrade-{d:02x}", handshake_op(16) + bytes([d]))
    # The attacker's key operations (op 7): a plain RotateKey and Provision (a random and
    # a small-order key), a RotateKey in a frame flagged sealed, a replay of a genuine
    # sealed rotation.
    write("session", "attacker-key-ops",
          genuine + b"\x07\x04" + bytes(32) + b"\x07\x01" + bytes(32) + b"\x07\x05"
          + b"\x07\x06" + bytes(32) + b"\x03\x08\x00" + b"\x07\x03")
    # Stale epochs named with the key in force (op 4, mode 0; no key retired yet).
    write("session", "stale-epochs", b"\x04\x01\x02\x00\x00\x00" + b"\x04\x03\x07\x00\x00\x00")

if __name__ == "__main__":
    main()
