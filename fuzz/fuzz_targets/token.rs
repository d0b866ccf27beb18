//! Tokens (`server::auth`): the first byte picks what the rest is.
//!
//! - 0: a token string, verified at the fixed [`NOW`].
//! - 1: a claims payload, signed here with the server's key (so the claims parsing behind the
//!   signature is reached), then verified.
//! - 2: a `--ttl` argument (`parse_ttl`).

#![no_main]

use std::sync::LazyLock;

use fieldsync_fuzz::NOW;
use fieldsync_server::auth::{IMPLICIT, TokenAuthority, parse_ttl};
use fieldsync_shared::keys::KeyPair;
use libfuzzer_sys::fuzz_target;
use pasetors::keys::AsymmetricSecretKey;
use pasetors::version4::{PublicToken, V4};

/// The key and issuer of `server/src/auth.rs`'s tests, which made the seeds.
static KEY: LazyLock<KeyPair> = LazyLock::new(|| KeyPair::from_seed(&[5; 32]));
static AUTHORITY: LazyLock<TokenAuthority> = LazyLock::new(|| {
    TokenAuthority::new(&KEY, "north-01").unwrap_or_else(|e| panic!("test key: {e}"))
});
static SECRET: LazyLock<AsymmetricSecretKey<V4>> = LazyLock::new(|| {
    AsymmetricSecretKey::<V4>::from(&KEY.to_keypair_bytes())
        .unwrap_or_else(|e| panic!("test key: {e}"))
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match mode % 3 {
        0 => {
            let _ = AUTHORITY.verify(text, NOW);
        }
        1 => {
            let Ok(token) = PublicToken::sign(&SECRET, rest, None, Some(IMPLICIT)) else {
                return;
            };
            if let Ok(verified) = AUTHORITY.verify(&token, NOW) {
                assert!(verified.expires_at > NOW, "an expired token verified");
            }
        }
        _ => {
            let _ = parse_ttl(text);
        }
    }
});
