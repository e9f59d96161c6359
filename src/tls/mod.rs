//! TLS on the client and peer ports (real build only: the simulator's
//! network has no TLS), with rustls: etcd's `--cert-file`, `--key-file`,
//! `--client-cert-auth`, `--trusted-ca-file`, `--auto-tls` and their
//! `--peer-*` twins.
//!
//! - A listener with an https URL accepts only TLS. With client-cert auth
//!   a client must present a certificate the trusted CA signed; its common
//!   name is then the user when auth is on and the request has no token
//!   (etcd's `AuthInfoFromCtx`).
//! - Peers dial https peer URLs with the peer certificate as their own, so
//!   a member without a certificate the peer CA signed cannot even connect
//!   when the peer side has a trusted CA file.
//! - `--auto-tls` makes a self-signed certificate for the listen hosts (in
//!   the data dir's `fixtures/`, as etcd does), and, as etcd, clients of it
//!   skip verification: it encrypts, it does not authenticate.
//!
//! - A trusted CA file alone already makes client certificates required
//!   (etcd's `TLSInfo.ServerConfig`); `--client-cert-auth` also makes the
//!   certificate's common name the user.
//! - `--peer-cert-allowed-cn`, `--peer-cert-allowed-hostname` and
//!   `--client-cert-allowed-hostname` narrow whom a verified certificate
//!   admits, as etcd's `TLSInfo.AllowedCN`/`AllowedHostname` do: on the
//!   server side once a client certificate is checked, and on a peer's
//!   dialing side for the certificate the peer serves. A refusal is logged
//!   as etcd words it, "client certificate authentication failed", and the
//!   other side gets a bad_certificate alert.
//! - On the peer port, as etcd's peer listener: a member's certificate
//!   that lists IP addresses or DNS names (its SANs) must list the
//!   address it connects from, or a name that resolves to it; else the
//!   connection is refused (`--experimental-peer-skip-client-san-verification`
//!   turns that off). etcd also accepts a name found by a reverse lookup
//!   of the address (which is how its wildcard names can match); detcd
//!   resolves only forward, so a certificate with wildcard names alone
//!   is refused.
//! - Listeners and peer dials also take etcd's `unix://` URLs (a unix
//!   socket, plaintext); its connections have no address to check.
//! - `--cipher-suites` (Go's names) limits the TLS 1.2 suites of both
//!   sides; as in Go, TLS 1.3 keeps its own.
//!
//! Nothing here is hand-written crypto: rustls (ring) does TLS, rcgen
//! makes certificates, x509-parser reads a common name, webpki checks a
//! certificate against a host name.

#[cfg(not(madsim))]
mod real;
#[cfg(not(madsim))]
pub use real::*;

/// One side's TLS settings, as the flags name them.
#[derive(Clone, Debug, Default)]
pub struct TlsFlags {
    pub cert_file: String,
    pub key_file: String,
    pub trusted_ca_file: String,
    /// Revocation lists for the certificates `client_cert_auth` checks.
    pub crl_file: String,
    pub client_cert_auth: bool,
    pub auto_tls: bool,
    /// What a verified certificate must name, if anything.
    pub allowed: Option<Allowed>,
    /// `--cipher-suites`: the TLS 1.2 suites offered (empty: all).
    pub cipher_suites: Vec<u16>,
    /// The peer side (unless `--experimental-peer-skip-client-san-verification`):
    /// a client certificate that names addresses or hosts must name the
    /// address the connection comes from.
    pub verify_client_san: bool,
}

/// etcd's `AllowedCN` and `AllowedHostname` (mutually exclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// The certificate's subject common name must be exactly this.
    CommonName(String),
    /// The certificate must be valid for this host name or IP address (its
    /// subject alternative names, as Go's `VerifyHostname`).
    Hostname(String),
}

impl Allowed {
    /// From the two flags; etcd's error when both are set.
    pub fn from_flags(cn: &str, hostname: &str) -> Result<Option<Allowed>, String> {
        match (cn.is_empty(), hostname.is_empty()) {
            (true, true) => Ok(None),
            (false, true) => Ok(Some(Allowed::CommonName(cn.to_string()))),
            (true, false) => Ok(Some(Allowed::Hostname(hostname.to_string()))),
            (false, false) => Err(format!(
                "AllowedCN and AllowedHostname are mutually exclusive (cn={cn:?}, hostname={hostname:?})"
            )),
        }
    }
}

/// The cipher suites Go's TLS knows by name (`tls.CipherSuites()` and
/// `tls.InsecureCipherSuites()`), with
/// their IANA numbers and whether detcd offers them: rustls implements
/// only the ECDHE suites with AEAD ciphers for TLS 1.2, and TLS 1.3's three
/// (which Go, and so etcd, never lets the list change).
const CIPHER_SUITES: &[(&str, u16, bool)] = &[
    ("TLS_RSA_WITH_RC4_128_SHA", 0x0005, false),
    ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", 0x000a, false),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", 0x002f, false),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", 0x0035, false),
    ("TLS_RSA_WITH_AES_128_CBC_SHA256", 0x003c, false),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", 0x009c, false),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", 0x009d, false),
    ("TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", 0xc007, false),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 0xc009, false),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", 0xc00a, false),
    ("TLS_ECDHE_RSA_WITH_RC4_128_SHA", 0xc011, false),
    ("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", 0xc012, false),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", 0xc013, false),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", 0xc014, false),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", 0xc023, false),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", 0xc027, false),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 0xc02b, true),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", 0xc02c, true),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 0xc02f, true),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", 0xc030, true),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0xcca8, true),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        0xcca9,
        true,
    ),
    ("TLS_AES_128_GCM_SHA256", 0x1301, true),
    ("TLS_AES_256_GCM_SHA384", 0x1302, true),
    ("TLS_CHACHA20_POLY1305_SHA256", 0x1303, true),
];

/// Older names etcd's `tlsutil` also takes.
const CIPHER_SUITE_ALIASES: &[(&str, &str)] = &[
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
];

/// TLS 1.3's suites, which `--cipher-suites` names to no effect (as in Go).
const TLS13_SUITES: std::ops::RangeInclusive<u16> = 0x1301..=0x1303;

/// `--cipher-suites` (comma-separated Go names) as IANA numbers. A name Go
/// does not know gets etcd's error; one it knows that detcd cannot offer
/// (CBC, RC4, 3DES, RSA key exchange) is refused rather than dropped, so
/// no client that needs it is surprised later.
pub fn cipher_suites(list: &str) -> Result<Vec<u16>, String> {
    let mut ids = Vec::new();
    for given in list
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        let name = CIPHER_SUITE_ALIASES
            .iter()
            .find(|(alias, _)| *alias == given)
            .map_or(given, |(_, name)| name);
        match CIPHER_SUITES.iter().find(|(known, _, _)| *known == name) {
            None => return Err(format!("unexpected TLS cipher suite {given:?}")),
            Some((_, _, false)) => {
                let offered: Vec<&str> = CIPHER_SUITES
                    .iter()
                    .filter(|(_, id, offered)| *offered && !TLS13_SUITES.contains(id))
                    .map(|(name, _, _)| *name)
                    .collect();
                return Err(format!(
                    "--cipher-suites: detcd does not offer {name} (rustls implements only {}); \
                     refusing to start rather than leave it out",
                    offered.join(", ")
                ));
            }
            Some((_, id, true)) => ids.push(*id),
        }
    }
    Ok(ids)
}

impl TlsFlags {
    pub fn has_certificate(&self) -> bool {
        !self.cert_file.is_empty() || !self.key_file.is_empty() || self.auto_tls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_suites_take_gos_names_and_refuse_what_detcd_cannot_offer() {
        assert_eq!(cipher_suites(""), Ok(vec![]));
        assert_eq!(
            cipher_suites(
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"
            ),
            Ok(vec![0xc02f, 0xcca8])
        );
        assert_eq!(
            cipher_suites("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_FANCY"),
            Err("unexpected TLS cipher suite \"TLS_FANCY\"".to_string())
        );
        let cbc = cipher_suites("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA").unwrap_err();
        assert!(
            cbc.contains("does not offer TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
            "{cbc}"
        );
        assert!(
            cbc.contains("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
            "{cbc}"
        );
        assert!(!cbc.contains("TLS_AES_128_GCM_SHA256"), "{cbc}");
    }

    #[test]
    fn allowed_common_name_and_hostname_exclude_each_other() {
        assert_eq!(Allowed::from_flags("", ""), Ok(None));
        assert_eq!(
            Allowed::from_flags("m1", ""),
            Ok(Some(Allowed::CommonName("m1".into())))
        );
        assert_eq!(
            Allowed::from_flags("", "example.com"),
            Ok(Some(Allowed::Hostname("example.com".into())))
        );
        assert_eq!(
            Allowed::from_flags("m1", "example.com"),
            Err("AllowedCN and AllowedHostname are mutually exclusive (cn=\"m1\", hostname=\"example.com\")".into())
        );
    }

    /// The table's offered suites are exactly rustls's (ring), by number
    /// and by name, so no name maps to a suite detcd lacks.
    #[cfg(not(madsim))]
    #[test]
    fn the_offered_cipher_suites_are_rustls_own() {
        let rustls: std::collections::BTreeMap<u16, String> =
            rustls::crypto::ring::default_provider()
                .cipher_suites
                .iter()
                .map(|suite| (u16::from(suite.suite()), format!("{:?}", suite.suite())))
                .collect();
        let offered: std::collections::BTreeMap<u16, String> = CIPHER_SUITES
            .iter()
            .filter(|(_, _, offered)| *offered)
            .map(|(name, id, _)| {
                (
                    *id,
                    name.replace("TLS_AES", "TLS13_AES")
                        .replace("TLS_CHACHA", "TLS13_CHACHA"),
                )
            })
            .collect();
        assert_eq!(offered, rustls);
        for (name, id, offered) in CIPHER_SUITES {
            assert_eq!(rustls.contains_key(id), *offered, "{name}");
        }
    }
}
