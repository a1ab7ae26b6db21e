//! Downgrades of the handshake binding (what `Identify` announces and both transcripts
//! bind), shared by the `session` and `host_client` targets.

use thecal_protocol::message::Capabilities;
use thecal_protocol::session::Binding;

/// `b` rewritten as an attacker who altered `Identify` in transit might, chosen by `d`:
/// `d % 4` = 0 protocol version `(d >> 2) % 3` (an older one); 1 the capabilities without
/// `KEY_LIFECYCLE`; 2 capability bit `(d >> 2) % 32` flipped; 3 schema-hash bit
/// `(d >> 2) % 32` flipped. Never `b` itself when `b` is a protocol-3 binding (version 3,
/// `KEY_LIFECYCLE` set).
pub fn downgraded(b: Binding, d: u8) -> Binding {
    let bit = 1u32 << ((d >> 2) % 32);
    match d % 4 {
        0 => Binding {
            version: (d >> 2) % 3,
            ..b
        },
        1 => Binding {
            capabilities: b.capabilities & !Capabilities::KEY_LIFECYCLE,
            ..b
        },
        2 => Binding {
            capabilities: b.capabilities ^ bit,
            ..b
        },
        _ => Binding {
            schema: b.schema ^ bit,
            ..b
        },
    }
}
