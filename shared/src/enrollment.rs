//! Enrollment over the network (issue 15, point 7): what the device and the edge server must
//! agree on byte for byte.
//!
//! The desk issues a one-time **enrollment code** for a technician; the device sends it with
//! its own public key and receives its device id and a token. The server keeps only the
//! code's SHA-256 ([`code_digest`]), so a copy of its records enrolls nobody. Codes are typed
//! by people: [`normalize_code`] ignores case, spaces and dashes, and the alphabet leaves out
//! the letters read as digits (I, L, O, U: Crockford's base 32).
//!
//! A device **renews its token** by proving it holds the enrolled key: the server hands out a
//! random nonce for the device, the device signs [`renewal_message`] with its ed25519 key and
//! the server checks the signature with `verify_strict` against the key it enrolled. The
//! message names its purpose, the branch and the device, so a signature made for anything
//! else (an acknowledgement, another branch, another device's nonce) never passes.

use sha2::{Digest as _, Sha256};

/// The characters of a code: Crockford's base 32 (no I, L, O, U).
pub const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Characters in a code (12 × 5 bits = 60 bits), shown in groups of four.
pub const CODE_LENGTH: usize = 12;

/// Why a typed code is not a code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("an enrollment code has {CODE_LENGTH} characters (dashes and spaces aside), not {0}")]
    Length(usize),
    #[error("{0:?} is not a character of an enrollment code (digits and letters but I, L, O, U)")]
    Character(char),
}

/// A code from [`CODE_LENGTH`] random bytes' worth of randomness, as `XXXX-XXXX-XXXX`.
/// `random` supplies the randomness (the caller's RNG: this crate does no I/O).
pub fn format_code(random: &[u8; CODE_LENGTH]) -> String {
    let mut out = String::with_capacity(CODE_LENGTH + 2);
    for (i, byte) in random.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(char::from(CODE_ALPHABET[usize::from(byte % 32)]));
    }
    out
}

/// The code as the server hashes it: upper case, without dashes or spaces. Lower-case letters
/// and the look-alikes O (zero), I and L (one) are read as a person means them.
pub fn normalize_code(typed: &str) -> Result<String, CodeError> {
    let mut out = String::with_capacity(CODE_LENGTH);
    for c in typed.chars() {
        if c == '-' || c.is_whitespace() {
            continue;
        }
        let c = match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !CODE_ALPHABET.contains(&(c as u8)) {
            return Err(CodeError::Character(c));
        }
        out.push(c);
    }
    if out.len() != CODE_LENGTH {
        return Err(CodeError::Length(out.len()));
    }
    Ok(out)
}

/// The SHA-256 (hex) the server stores a code under.
pub fn code_digest(normalized: &str) -> String {
    hex::encode(Sha256::digest(format!(
        "fieldsync-enrollment-code-v1\n{normalized}"
    )))
}

/// What the device signs to renew its token: purpose, branch, device and the server's nonce,
/// one per line.
pub fn renewal_message(branch: &str, device: &str, nonce: &str) -> Vec<u8> {
    format!("fieldsync-token-renewal-v1\n{branch}\n{device}\n{nonce}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyPair;

    #[test]
    fn a_code_is_read_as_a_person_types_it() {
        let code = format_code(&[0, 1, 2, 3, 31, 30, 29, 28, 40, 41, 42, 255]);
        assert_eq!(code, "0123-ZYXW-89AZ");
        assert_eq!(normalize_code(&code), Ok("0123ZYXW89AZ".into()));
        assert_eq!(
            normalize_code(" o123 zyxw 89az "),
            Ok("0123ZYXW89AZ".into())
        );
        assert_eq!(normalize_code("I123-ZYXW-89AZ"), Ok("1123ZYXW89AZ".into()));
        assert_eq!(normalize_code("0123-ZYXW"), Err(CodeError::Length(8)));
        assert_eq!(
            normalize_code("0123-ZYXW-89A!"),
            Err(CodeError::Character('!'))
        );
        assert_eq!(
            normalize_code("0123-ZYXW-89AU"),
            Err(CodeError::Character('U'))
        );
        assert_eq!(code_digest("0123ZYXW89AZ").len(), 64);
        assert_ne!(code_digest("0123ZYXW89AZ"), code_digest("0123ZYXW89AY"));
    }

    #[test]
    fn a_renewal_signature_is_bound_to_branch_device_and_nonce() -> Result<(), crate::keys::KeyError>
    {
        let key = KeyPair::generate()?;
        let signature = key.sign(&renewal_message("north-01", "dev-1", "n1"));
        assert!(
            key.public()
                .verify(&renewal_message("north-01", "dev-1", "n1"), &signature)
        );
        for other in [
            renewal_message("south-02", "dev-1", "n1"),
            renewal_message("north-01", "dev-2", "n1"),
            renewal_message("north-01", "dev-1", "n2"),
        ] {
            assert!(!key.public().verify(&other, &signature));
        }
        Ok(())
    }
}
