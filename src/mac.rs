//! Keyed digests (HMAC): one helper for the listener's authentication
//! handshake (MD5, SHA-256, SHA-384) and the Redis pool's signed tasks
//! (SHA-256).

use hmac::{KeyInit, Mac};

/// The MAC `M` (an `Hmac<digest>`) of `msg` under `key`.
pub(crate) fn tag<M: Mac + KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
    keyed::<M>(key, msg).finalize().into_bytes().to_vec()
}

/// Whether `tag` is the MAC `M` of `msg` under `key`, compared in constant
/// time.
pub(crate) fn verify<M: Mac + KeyInit>(key: &[u8], msg: &[u8], tag: &[u8]) -> bool {
    keyed::<M>(key, msg).verify_slice(tag).is_ok()
}

fn keyed<M: Mac + KeyInit>(key: &[u8], msg: &[u8]) -> M {
    // HMAC takes a key of any length (a long one is hashed first), so
    // `new_from_slice` does not fail for it.
    let mut m = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(msg);
    m
}
