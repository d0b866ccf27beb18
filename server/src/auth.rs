//! Tokens: who is on the other end of a connection or an API call.
//!
//! Tokens are PASETO v4.public, signed with the server's ed25519 key, short-lived, and carry
//! a subject (`device:<id>`, `desk:<role>`, `branch:<id>`) and a token id. Checking a token
//! takes the time as an argument so expiry is testable without sleeping. Revocation is the
//! registry's business (a revoked device's tokens all fail there), checked by the caller.

use std::fmt;
use std::time::Duration;

use fieldsync_shared::ids::{BranchId, DeviceId};
use fieldsync_shared::keys::KeyPair;
use fieldsync_shared::time::Timestamp;
use pasetors::claims::Claims;
use pasetors::keys::{AsymmetricPublicKey, AsymmetricSecretKey};
use pasetors::token::UntrustedToken;
use pasetors::version4::V4;
use pasetors::{Public, public};

/// The claim naming the person a desk token acts for.
pub const PERSON_CLAIM: &str = "person";
/// The audience every fieldsync token names.
const AUDIENCE: &str = "fieldsync";
/// Bound into every signature, so a PASETO made for something else never passes here.
/// Public for the token fuzzer (`fuzz/fuzz_targets/token.rs`), which signs its own claims.
pub const IMPLICIT: &[u8] = b"fieldsync-token-v1";

/// The desk roles (issue #6 gives them their permissions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum DeskRole {
    Dispatcher,
    Manager,
    Analyst,
    /// The after-sales director: decides what managers may not (R18's large warranty-claim
    /// amounts, above `[desk] director_approval_above`).
    Director,
}

impl DeskRole {
    pub fn as_str(self) -> &'static str {
        match self {
            DeskRole::Dispatcher => "dispatcher",
            DeskRole::Manager => "manager",
            DeskRole::Analyst => "analyst",
            DeskRole::Director => "director",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        ALL_ROLES.iter().copied().find(|r| r.as_str() == s)
    }
}

/// Every desk role.
pub const ALL_ROLES: &[DeskRole] = &[
    DeskRole::Dispatcher,
    DeskRole::Manager,
    DeskRole::Analyst,
    DeskRole::Director,
];
/// Roles that decide approvals (R12, R18, R31): a manager, or the director (R18's large
/// amounts are the director's alone).
pub const APPROVERS: &[DeskRole] = &[DeskRole::Manager, DeskRole::Director];
/// Roles that may read everything at the desk (head office's analyst and the director included).
pub const EVERYONE: &[DeskRole] = &[
    DeskRole::Dispatcher,
    DeskRole::Manager,
    DeskRole::Analyst,
    DeskRole::Director,
];
/// Roles that run the branch's daily work.
pub const STAFF: &[DeskRole] = &[DeskRole::Dispatcher, DeskRole::Manager];
/// Decisions that need a manager.
pub const MANAGERS: &[DeskRole] = &[DeskRole::Manager];

/// "dispatcher or manager": the roles a refusal names.
pub fn role_list(roles: &[DeskRole]) -> String {
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    match names.as_slice() {
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
        [] => "no role".to_owned(),
    }
}

/// Who made a desk API call: the token's role and, for a token issued with `fieldsync desk
/// token --user`, the person (checked against the accounts by `Node::authorize_actor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub role: DeskRole,
    pub person: Option<String>,
}

impl Actor {
    /// The person, or `token:<role>` for a token that names none: who the audit log says.
    pub fn name(&self) -> String {
        self.person
            .clone()
            .unwrap_or_else(|| format!("token:{}", self.role.as_str()))
    }
}

/// Whom a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    Device(DeviceId),
    Desk(DeskRole),
    Branch(BranchId),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Device(d) => write!(f, "device:{d}"),
            Subject::Desk(r) => write!(f, "desk:{}", r.as_str()),
            Subject::Branch(b) => write!(f, "branch:{b}"),
        }
    }
}

impl Subject {
    fn parse(s: &str) -> Option<Self> {
        let (kind, rest) = s.split_once(':')?;
        match kind {
            "device" => DeviceId::new(rest).ok().map(Subject::Device),
            "desk" => DeskRole::parse(rest).map(Subject::Desk),
            "branch" => BranchId::new(rest).ok().map(Subject::Branch),
            _ => None,
        }
    }
}

/// A token that passed signature and expiry checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub subject: Subject,
    /// The person a desk token acts for (`fieldsync desk token --user`): the account's
    /// name, checked against the accounts by `Node::authorize_actor`.
    pub person: Option<String>,
    pub token_id: String,
    pub expires_at: Timestamp,
}

/// Why a token was refused. Each message is what the HTTP 401 body says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token: send `Authorization: Bearer <token>` or `?token=<token>`")]
    Missing,
    #[error("the token is not a PASETO v4.public token")]
    Malformed,
    #[error("the token's signature does not verify: it was not issued by this server")]
    Forged,
    #[error("the token expired at {0}")]
    Expired(Timestamp),
    #[error("the token's claims are invalid: {0}")]
    BadClaims(&'static str),
    #[error("the token was revoked: {0}")]
    Revoked(String),
}

impl AuthError {
    /// A stable code for the refusal (logs, metrics, JSON bodies).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::Malformed => "malformed_token",
            AuthError::Forged => "forged_token",
            AuthError::Expired(_) => "expired_token",
            AuthError::BadClaims(_) => "bad_token_claims",
            AuthError::Revoked(_) => "revoked",
        }
    }
}

/// Issues and checks tokens with the server key.
pub struct TokenAuthority {
    secret: AsymmetricSecretKey<V4>,
    public: AsymmetricPublicKey<V4>,
    issuer: String,
}

impl fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenAuthority({})", self.issuer)
    }
}

fn rfc3339(t: Timestamp) -> String {
    // Whole seconds: PASETO claims are RFC 3339 and pasetors parses them strictly.
    Timestamp::from_millis(t.as_millis().div_euclid(1000) * 1000).to_string()
}

impl TokenAuthority {
    /// `issuer` names the server (its branch id, or `head-office`).
    pub fn new(key: &KeyPair, issuer: impl Into<String>) -> Result<Self, AuthError> {
        let secret = AsymmetricSecretKey::<V4>::from(&key.to_keypair_bytes())
            .map_err(|_| AuthError::Malformed)?;
        let public = AsymmetricPublicKey::<V4>::from(key.public().verifying_key().as_bytes())
            .map_err(|_| AuthError::Malformed)?;
        Ok(Self {
            secret,
            public,
            issuer: issuer.into(),
        })
    }

    /// A token for `subject`, valid from `now` for `ttl`.
    pub fn issue(
        &self,
        subject: &Subject,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<String, String> {
        self.issue_for(subject, None, ttl, now)
    }

    /// [`issue`](Self::issue) naming the person (a desk account) the token acts for.
    pub fn issue_for(
        &self,
        subject: &Subject,
        person: Option<&str>,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<String, String> {
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|e| e.to_string())?;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let mut claims = Claims::new().map_err(|e| e.to_string())?;
        let err = |e: pasetors::errors::Error| e.to_string();
        claims.issuer(&self.issuer).map_err(err)?;
        claims.audience(AUDIENCE).map_err(err)?;
        claims.subject(&subject.to_string()).map_err(err)?;
        claims.token_identifier(&hex::encode(jti)).map_err(err)?;
        if let Some(person) = person {
            claims.add_additional(PERSON_CLAIM, person).map_err(err)?;
        }
        claims.issued_at(&rfc3339(now)).map_err(err)?;
        claims.not_before(&rfc3339(now)).map_err(err)?;
        claims
            .expiration(&rfc3339(now.plus_millis(ttl_ms)))
            .map_err(err)?;
        public::sign(&self.secret, &claims, None, Some(IMPLICIT)).map_err(err)
    }

    /// Checks signature, issuer, audience and expiry at `now`.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Verified, AuthError> {
        let untrusted = UntrustedToken::<Public, V4>::try_from(token.trim())
            .map_err(|_| AuthError::Malformed)?;
        // Only the signature is checked by the library: the claims are checked below against
        // the given clock, not the system's, so expiry is testable.
        let trusted =
            pasetors::version4::PublicToken::verify(&self.public, &untrusted, None, Some(IMPLICIT))
                .map_err(|_| AuthError::Forged)?;
        let claims = Claims::from_string(trusted.payload()).map_err(|_| AuthError::Malformed)?;
        let claims = &claims;
        let text = |name: &'static str| {
            claims
                .get_claim(name)
                .and_then(|v| v.as_str())
                .ok_or(AuthError::BadClaims(name))
        };
        if text("iss")? != self.issuer {
            return Err(AuthError::BadClaims("issuer is not this server"));
        }
        if text("aud")? != AUDIENCE {
            return Err(AuthError::BadClaims("audience is not fieldsync"));
        }
        let expires_at: Timestamp = text("exp")?
            .parse()
            .map_err(|_| AuthError::BadClaims("exp"))?;
        let not_before: Timestamp = text("nbf")?
            .parse()
            .map_err(|_| AuthError::BadClaims("nbf"))?;
        if now >= expires_at {
            return Err(AuthError::Expired(expires_at));
        }
        // A minute of clock skew is tolerated.
        if now.plus_millis(60_000) < not_before {
            return Err(AuthError::BadClaims("nbf is in the future"));
        }
        let subject = Subject::parse(text("sub")?).ok_or(AuthError::BadClaims("sub"))?;
        let person = match claims.get_claim(PERSON_CLAIM) {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .ok_or(AuthError::BadClaims(PERSON_CLAIM))?
                    .to_owned(),
            ),
        };
        Ok(Verified {
            subject,
            person,
            token_id: text("jti")?.to_owned(),
            expires_at,
        })
    }
}

/// What a token says, read without checking its signature: only for the holder of a token
/// to check it is the one it meant to use (the branch link checks its own token names its
/// branch and has not expired). Never a reason to trust anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedClaims {
    pub subject: Subject,
    pub expires_at: Timestamp,
}

/// Reads the claims of a `v4.public` token: base64url of the claims' JSON followed by the
/// 64-byte signature. `None` if it is not such a token.
pub fn unverified_claims(token: &str) -> Option<UnverifiedClaims> {
    use base64::Engine as _;
    let body = token.trim().strip_prefix("v4.public.")?;
    let body = body.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .ok()?;
    let message = bytes.get(..bytes.len().checked_sub(64)?)?;
    let claims: serde_json::Value = serde_json::from_slice(message).ok()?;
    Some(UnverifiedClaims {
        subject: Subject::parse(claims["sub"].as_str()?)?,
        expires_at: claims["exp"].as_str()?.parse().ok()?,
    })
}

/// Parses a duration like `15m`, `12h`, `7d`, `90s`.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 15m, 12h or 7d"))?;
    let per_unit = match unit {
        "s" => 1,
        "m" | "" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m, h or d)")),
    };
    // Checked: `99999999999999999999m` must be refused, not overflow (a panic in a debug
    // build, a short ttl in a release one; found by the token fuzzer).
    n.checked_mul(per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is longer than any ttl this server can issue"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority() -> TokenAuthority {
        TokenAuthority::new(&KeyPair::from_seed(&[5; 32]), "north-01").expect("valid key")
    }

    const NOW: Timestamp = Timestamp::from_millis(1_790_000_000_000);

    #[test]
    fn a_holder_reads_whom_its_token_names_and_until_when() {
        let subject = Subject::Branch(BranchId::new("north-01").expect("valid"));
        let token = authority()
            .issue(&subject, Duration::from_secs(600), NOW)
            .expect("issue");
        let claims = unverified_claims(&token).expect("readable");
        assert_eq!(claims.subject, subject);
        assert_eq!(claims.expires_at, NOW.plus_millis(600_000));
        assert_eq!(unverified_claims("v4.public.AAAA"), None);
        assert_eq!(unverified_claims("not a token"), None);
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let a = authority();
        let subject = Subject::Device(DeviceId::new("dev-1").expect("valid"));
        let token = a
            .issue(&subject, Duration::from_secs(600), NOW)
            .expect("issue");
        let v = a.verify(&token, NOW.plus_millis(1000)).expect("valid");
        assert_eq!(v.subject, subject);
        assert_eq!(v.person, None);
        let desk = Subject::Desk(DeskRole::Manager);
        let token = a
            .issue_for(&desk, Some("wang"), Duration::from_secs(600), NOW)
            .expect("issue");
        let v = a.verify(&token, NOW).expect("valid");
        assert_eq!((v.subject, v.person.as_deref()), (desk, Some("wang")));
        let e = a
            .verify(&token, NOW.plus_millis(600_000))
            .expect_err("expired");
        assert!(matches!(e, AuthError::Expired(_)), "{e}");
    }

    #[test]
    fn a_token_from_another_key_is_forged() {
        let other = TokenAuthority::new(&KeyPair::from_seed(&[6; 32]), "north-01").expect("key");
        let token = other
            .issue(
                &Subject::Desk(DeskRole::Manager),
                Duration::from_secs(60),
                NOW,
            )
            .expect("issue");
        assert_eq!(authority().verify(&token, NOW), Err(AuthError::Forged));
    }

    #[test]
    fn a_token_for_another_issuer_is_refused() {
        let key = KeyPair::from_seed(&[5; 32]);
        let other = TokenAuthority::new(&key, "south-02").expect("key");
        let token = other
            .issue(
                &Subject::Desk(DeskRole::Manager),
                Duration::from_secs(60),
                NOW,
            )
            .expect("issue");
        assert!(matches!(
            authority().verify(&token, NOW),
            Err(AuthError::BadClaims(_))
        ));
    }

    #[test]
    fn garbage_and_tampered_tokens_are_refused() {
        let a = authority();
        assert_eq!(a.verify("hello", NOW), Err(AuthError::Malformed));
        let token = a
            .issue(
                &Subject::Desk(DeskRole::Dispatcher),
                Duration::from_secs(60),
                NOW,
            )
            .expect("issue");
        let mut bytes = token.into_bytes();
        let i = bytes.len() - 5;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("ascii");
        assert!(matches!(
            a.verify(&tampered, NOW),
            Err(AuthError::Forged | AuthError::Malformed)
        ));
    }

    /// The seeds of the token fuzzer (`fuzz/fuzz_targets/token.rs`): mode byte 0 and a token
    /// its authority (this module's test key, issuer `north-01`) accepts at `NOW`; mode 1 and
    /// claims it signs itself; mode 2 and a ttl. `FIELDSYNC_WRITE_FUZZ_SEEDS=1` writes them;
    /// either way every committed token seed must still verify.
    #[test]
    fn fuzz_seeds_are_tokens_this_server_accepts() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/token");
        let a = authority();
        let year = Duration::from_secs(3650 * 86_400);
        if std::env::var_os("FIELDSYNC_WRITE_FUZZ_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).expect("create seeds dir");
            let subjects = [
                Subject::Device(DeviceId::new("dev-1").expect("valid")),
                Subject::Desk(DeskRole::Manager),
                Subject::Branch(BranchId::new("north-01").expect("valid")),
            ];
            for (i, subject) in subjects.iter().enumerate() {
                let token = a.issue(subject, year, NOW).expect("issue");
                let seed = [&[0u8][..], token.as_bytes()].concat();
                std::fs::write(dir.join(format!("token-{i}")), seed).expect("write");
            }
            let claims = format!(
                r#"{{"iss":"north-01","aud":"fieldsync","sub":"device:dev-1","jti":"00ff","iat":"{0}","nbf":"{0}","exp":"{1}"}}"#,
                rfc3339(NOW),
                rfc3339(NOW.plus_millis(600_000))
            );
            let seed = [&[1u8][..], claims.as_bytes()].concat();
            std::fs::write(dir.join("claims-0"), seed).expect("write");
            std::fs::write(dir.join("ttl-0"), b"\x0290m").expect("write");
        }
        let mut tokens = 0;
        for seed in std::fs::read_dir(&dir).expect("fuzz/seeds/token") {
            let path = seed.expect("entry").path();
            let bytes = std::fs::read(&path).expect("read");
            let text = std::str::from_utf8(&bytes[1..]).expect("text");
            let name = path.display();
            match bytes[0] {
                0 => {
                    a.verify(text, NOW)
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    tokens += 1;
                }
                1 => {
                    let signed = pasetors::version4::PublicToken::sign(
                        &a.secret,
                        text.as_bytes(),
                        None,
                        Some(IMPLICIT),
                    )
                    .expect("sign");
                    a.verify(&signed, NOW)
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                _ => {
                    parse_ttl(text).unwrap_or_else(|e| panic!("{name}: {e}"));
                }
            }
        }
        assert!(
            tokens >= 3,
            "only {tokens} token seeds in {}",
            dir.display()
        );
    }

    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_ttl("soon").is_err());
        assert!(parse_ttl("5w").is_err());
    }

    /// The token fuzzer's crasher (`fuzz/artifacts/token/crash-40bab66…`): a ttl whose
    /// seconds overflow u64 panicked in a debug build and wrapped in a release one.
    #[test]
    fn a_ttl_past_u64_seconds_is_refused() {
        let e = parse_ttl("003775478148512672828").expect_err("overflows in minutes");
        assert!(e.contains("longer than any ttl"), "{e}");
        assert!(parse_ttl("213503982334602d").is_err());
        assert_eq!(
            parse_ttl("213503982334601d"),
            Ok(Duration::from_secs(213_503_982_334_601 * 86_400))
        );
    }
}
