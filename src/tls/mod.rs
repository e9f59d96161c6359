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
//!   when `--peer-client-cert-auth` is on.
//! - `--auto-tls` makes a self-signed certificate for the listen hosts (in
//!   the data dir's `fixtures/`, as etcd does), and, as etcd, clients of it
//!   skip verification: it encrypts, it does not authenticate.
//!
//! Nothing here is hand-written crypto: rustls (ring) does TLS, rcgen
//! makes certificates, x509-parser reads a common name.

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
}

impl TlsFlags {
    pub fn has_certificate(&self) -> bool {
        !self.cert_file.is_empty() || !self.key_file.is_empty() || self.auto_tls
    }
}
