//! Simple tokens (etcd `auth/simple_token.go`): each member's own table
//! from token to user, with a TTL that every use renews. Logins go through
//! raft, so every member assigns the same token at the same entry; the
//! table itself is never replicated, and a restarted member starts empty.

use std::collections::BTreeMap;
use std::time::Duration;

/// etcd's `--auth-token-ttl` default.
pub const SIMPLE_TOKEN_TTL_DEFAULT: Duration = Duration::from_secs(300);
/// Tokens a member holds at most; past it the one closest to expiring is
/// dropped (its client logs in again), so logins cannot grow memory
/// without bound.
pub const SIMPLE_TOKENS_MAX: usize = 100_000;
/// Letters in a token's random prefix (etcd `defaultSimpleTokenLength`).
pub const TOKEN_PREFIX_LEN: usize = 16;

#[derive(Debug)]
pub struct SimpleTokens {
    ttl: Duration,
    /// Token → (user, deadline on the member's clock).
    tokens: BTreeMap<String, (String, Duration)>,
}

impl SimpleTokens {
    pub fn new(ttl: Duration) -> SimpleTokens {
        SimpleTokens {
            ttl,
            tokens: BTreeMap::new(),
        }
    }

    pub fn assign(&mut self, token: String, user: String, now: Duration) {
        self.expire(now);
        if self.tokens.len() >= SIMPLE_TOKENS_MAX {
            let soonest = self
                .tokens
                .iter()
                .min_by_key(|(_, (_, deadline))| *deadline)
                .map(|(token, _)| token.clone());
            if let Some(soonest) = soonest {
                self.tokens.remove(&soonest);
            }
        }
        self.tokens.insert(token, (user, now + self.ttl));
    }

    /// The user a live token names; using it renews its TTL.
    pub fn user(&mut self, token: &str, now: Duration) -> Option<String> {
        let ttl = self.ttl;
        let (user, deadline) = self.tokens.get_mut(token)?;
        if *deadline <= now {
            self.tokens.remove(token);
            return None;
        }
        *deadline = now + ttl;
        Some(user.clone())
    }

    pub fn invalidate_user(&mut self, user: &str) {
        self.tokens.retain(|_, (owner, _)| owner != user);
    }

    pub fn clear(&mut self) {
        self.tokens.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    fn expire(&mut self, now: Duration) {
        self.tokens.retain(|_, (_, deadline)| *deadline > now);
    }
}

/// A token's random prefix: `TOKEN_PREFIX_LEN` letters from `random`
/// (the member's seeded randomness, seam 3).
pub fn token_prefix(mut random: impl FnMut() -> u64) -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    (0..TOKEN_PREFIX_LEN)
        .map(|_| LETTERS[(random() % LETTERS.len() as u64) as usize] as char)
        .collect()
}

/// The raft index a simple token was assigned at (its suffix), if it has
/// one: a member that has not applied that far yet waits before saying
/// the token is unknown.
pub fn token_index(token: &str) -> Option<u64> {
    token.rsplit_once('.')?.1.parse().ok()
}

/// etcd's `--auth-token jwt` default TTL.
pub const JWT_TTL_DEFAULT: Duration = Duration::from_secs(300);

/// What `--auth-token` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenOption {
    Simple,
    Jwt(JwtOptions),
}

/// `--auth-token jwt,pub-key=…,priv-key=…,sign-method=…,ttl=…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtOptions {
    pub pub_key: String,
    pub priv_key: String,
    pub sign_method: String,
    pub ttl: Duration,
}

/// The signing methods etcd 3.4 accepts (jwt-go's, less `none`).
pub const JWT_SIGN_METHODS: [&str; 11] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "HS256", "HS384",
    "HS512",
];

/// Parses `--auth-token` as etcd does: the type, then `name=value` pairs
/// separated by commas; a pair without exactly one `=` or a name given
/// twice is refused ("auth: invalid auth options"), and so is a JWT
/// without a known `sign-method`.
pub fn parse_auth_token(flag: &str) -> Result<TokenOption, String> {
    let mut parts = flag.split(',');
    let kind = parts.next().unwrap_or_default().trim();
    let mut pairs = BTreeMap::new();
    for part in parts {
        let fields: Vec<&str> = part.split('=').collect();
        let [name, value] = fields[..] else {
            return Err(format!("--auth-token {flag:?}: auth: invalid auth options"));
        };
        if pairs
            .insert(name.trim().to_string(), value.trim().to_string())
            .is_some()
        {
            return Err(format!("--auth-token {flag:?}: auth: invalid auth options"));
        }
    }
    match kind {
        "simple" => Ok(TokenOption::Simple),
        "jwt" => {
            let sign_method = pairs.get("sign-method").cloned().unwrap_or_default();
            if !JWT_SIGN_METHODS.contains(&sign_method.as_str()) {
                return Err(format!(
                    "--auth-token {flag:?}: auth: invalid auth signature method {sign_method:?}"
                ));
            }
            let ttl = match pairs.get("ttl") {
                None => JWT_TTL_DEFAULT,
                Some(ttl) => humantime::parse_duration(ttl)
                    .map_err(|error| format!("--auth-token {flag:?}: ttl {ttl:?}: {error}"))?,
            };
            Ok(TokenOption::Jwt(JwtOptions {
                pub_key: pairs.get("pub-key").cloned().unwrap_or_default(),
                priv_key: pairs.get("priv-key").cloned().unwrap_or_default(),
                sign_method,
                ttl,
            }))
        }
        other => Err(format!("--auth-token {other:?}: must be simple or jwt")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_token_options_parse_as_etcd_reads_them() {
        assert_eq!(parse_auth_token("simple"), Ok(TokenOption::Simple));
        let jwt = parse_auth_token("jwt,pub-key=/a.pub,priv-key=/a.key,sign-method=ES256,ttl=10m")
            .unwrap();
        assert_eq!(
            jwt,
            TokenOption::Jwt(JwtOptions {
                pub_key: "/a.pub".into(),
                priv_key: "/a.key".into(),
                sign_method: "ES256".into(),
                ttl: Duration::from_secs(600),
            })
        );
        assert!(parse_auth_token("jwt,sign-method=none").is_err());
        assert!(parse_auth_token("jwt,sign-method=RS256,sign-method=RS256").is_err());
        assert!(parse_auth_token("jwt,sign-method").is_err());
        assert!(parse_auth_token("oauth").is_err());
    }

    #[test]
    fn a_token_lives_its_ttl_from_its_latest_use() {
        let mut tokens = SimpleTokens::new(Duration::from_secs(10));
        tokens.assign("t.5".into(), "alice".into(), Duration::from_secs(0));
        assert_eq!(
            tokens.user("t.5", Duration::from_secs(9)).as_deref(),
            Some("alice")
        );
        assert_eq!(
            tokens.user("t.5", Duration::from_secs(18)).as_deref(),
            Some("alice")
        );
        assert_eq!(tokens.user("t.5", Duration::from_secs(28)), None);
        assert!(tokens.is_empty());
        assert_eq!(token_index("abc.42"), Some(42));
        assert_eq!(token_index("abc"), None);
    }

    #[test]
    fn invalidation_removes_only_what_it_names() {
        let mut tokens = SimpleTokens::new(Duration::from_secs(10));
        let now = Duration::ZERO;
        tokens.assign("a.1".into(), "alice".into(), now);
        tokens.assign("b.2".into(), "bob".into(), now);
        tokens.invalidate_user("alice");
        assert_eq!(tokens.user("a.1", now), None);
        assert_eq!(tokens.user("b.2", now).as_deref(), Some("bob"));
        tokens.clear();
        assert_eq!(tokens.user("b.2", now), None);
    }

    #[test]
    fn prefixes_are_letters_of_the_given_length() {
        let mut n = 0;
        let prefix = token_prefix(|| {
            n += 7;
            n
        });
        assert_eq!(prefix.len(), TOKEN_PREFIX_LEN);
        assert!(prefix.chars().all(|c| c.is_ascii_alphabetic()));
    }
}
