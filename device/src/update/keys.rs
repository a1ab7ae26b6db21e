//! The key the pump trusts for firmware images ([`TRUSTED_KEY`]).
//!
//! * Default (development) builds trust the public development key
//!   ([`thecal_protocol::update::DEV_PUBLIC_KEY`]), whose secret is committed: anyone can
//!   sign an image such a build accepts. The simulator, tests and development boards.
//! * Builds with the feature `release-keys` trust only the key given at build time in
//!   the environment variable `THECAL_RELEASE_PUBLIC_KEY` (64 hex digits, the Ed25519
//!   public key; the secret never leaves the manufacturer's signing station). The build
//!   fails without it, and fails if it is the development key: a release build refuses
//!   development-signed images (`BadSignature { dev_signed: true }`).

use thecal_protocol::update::DEV_PUBLIC_KEY;

/// The Ed25519 public key firmware images must be signed with.
#[cfg(not(feature = "release-keys"))]
pub const TRUSTED_KEY: [u8; 32] = DEV_PUBLIC_KEY;

/// The Ed25519 public key firmware images must be signed with.
#[cfg(feature = "release-keys")]
pub const TRUSTED_KEY: [u8; 32] = {
    let key = hex32(env!(
        "THECAL_RELEASE_PUBLIC_KEY",
        "feature release-keys needs THECAL_RELEASE_PUBLIC_KEY (64 hex digits) at build time"
    ));
    assert!(
        !same(&key, &DEV_PUBLIC_KEY),
        "THECAL_RELEASE_PUBLIC_KEY is the development key"
    );
    key
};

/// Whether this build trusts the development key.
pub const TRUSTS_DEV_KEY: bool = same(&TRUSTED_KEY, &DEV_PUBLIC_KEY);

// Const-evaluated only (i < 32 on 32-byte arrays).
#[allow(clippy::indexing_slicing)]
const fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut i = 0;
    while i < 32 {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// 64 hex digits to 32 bytes, at compile time (a bad string fails the build).
#[allow(clippy::panic, clippy::indexing_slicing)]
pub const fn hex32(s: &str) -> [u8; 32] {
    const fn digit(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("not a hex digit"),
        }
    }
    let b = s.as_bytes();
    assert!(b.len() == 64, "a public key is 64 hex digits");
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = digit(b[2 * i]) << 4 | digit(b[2 * i + 1]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_keys_decode() {
        let k = hex32("0cfdaf8bb1a1e6f7b38934b70030f64565fcca5b60a055ffcc5c6e34a6a78c8b");
        assert_eq!(k, DEV_PUBLIC_KEY);
    }

    #[cfg(not(feature = "release-keys"))]
    #[test]
    fn development_builds_trust_the_development_key() {
        assert_eq!(TRUSTED_KEY, DEV_PUBLIC_KEY);
    }

    #[cfg(feature = "release-keys")]
    #[test]
    fn release_builds_do_not_trust_the_development_key() {
        assert_ne!(TRUSTED_KEY, DEV_PUBLIC_KEY);
    }
}
