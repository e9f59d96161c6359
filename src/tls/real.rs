//! The rustls half of `crate::tls` (real build only).

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_util::either::Either;

use super::{Allowed, TlsFlags};
use crate::storage::Disk;

/// A TLS handshake that takes longer is dropped, so a client that connects
/// and sends nothing cannot hold a handshake slot.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One side's loaded TLS: what its listeners accept with, and what its
/// peers dial with.
#[derive(Clone)]
pub struct Tls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
    pub client_cert_auth: bool,
    /// Check a client certificate's SANs against its connection's address
    /// (`TlsFlags::verify_client_san`).
    pub verify_client_san: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("client_cert_auth", &self.client_cert_auth)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The provider a side's configs are built with: with `--cipher-suites`,
/// only the TLS 1.2 suites it names (TLS 1.3 keeps all three, as Go's).
fn provider_offering(cipher_suites: &[u16]) -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !cipher_suites.is_empty() {
        provider.cipher_suites.retain(|suite| {
            suite.tls13().is_some() || cipher_suites.contains(&u16::from(suite.suite()))
        });
    }
    Arc::new(provider)
}

impl Allowed {
    /// Whether `cert` (already verified against the CA) names what is
    /// allowed.
    fn admits(&self, cert: &CertificateDer<'_>) -> bool {
        match self {
            Allowed::CommonName(allowed) => common_name(cert).as_deref() == Some(allowed),
            Allowed::Hostname(allowed) => {
                let Ok(name) = ServerName::try_from(allowed.trim_end_matches('.')) else {
                    return false;
                };
                webpki::EndEntityCert::try_from(cert)
                    .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
            }
        }
    }

    /// `admits`, as a verifier's verdict: refused with etcd's words in the
    /// log, and a bad_certificate alert to the other side (as Go sends).
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.admits(cert) {
            return Ok(());
        }
        tracing::warn!(
            common_name = common_name(cert).unwrap_or_default(),
            allowed = ?self,
            "rejected a certificate: client certificate authentication failed"
        );
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName,
        ))
    }
}

fn read(disk: &dyn Disk, path: &str, what: &str) -> Result<Vec<u8>, String> {
    disk.read(Path::new(path))
        .map_err(|error| format!("cannot read {what} {path}: {error}"))
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|error| format!("{what}: {error}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no certificate in it"));
    }
    Ok(certs)
}

fn private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| format!("{what}: {error}"))
}

/// Loads one side's TLS from its flags. `None` when the flags name no
/// certificate. `hosts` are the names a `--auto-tls` certificate covers;
/// `fixtures` is where it is kept.
pub fn load(
    flags: &TlsFlags,
    disk: &dyn Disk,
    hosts: &[String],
    fixtures: &Path,
) -> Result<Option<Tls>, String> {
    if !flags.has_certificate() {
        return Ok(None);
    }
    let (cert_pem, key_pem, verify_peers) =
        if !flags.cert_file.is_empty() || !flags.key_file.is_empty() {
            if flags.cert_file.is_empty() || flags.key_file.is_empty() {
                return Err("a certificate needs both its cert file and its key file".into());
            }
            (
                read(disk, &flags.cert_file, "the certificate")?,
                read(disk, &flags.key_file, "the key")?,
                true,
            )
        } else {
            let (cert, key) = auto_tls(disk, hosts, fixtures)?;
            (cert, key, false)
        };
    let chain = certificates(&cert_pem, &flags.cert_file)?;
    let key = private_key(&key_pem, &flags.key_file)?;
    let mut trusted = Vec::new();
    let roots = if flags.trusted_ca_file.is_empty() {
        None
    } else {
        let pem = read(disk, &flags.trusted_ca_file, "the trusted CA file")?;
        let mut roots = RootCertStore::empty();
        for cert in certificates(&pem, &flags.trusted_ca_file)? {
            trusted.push(cert.clone());
            roots
                .add(cert)
                .map_err(|error| format!("{}: {error}", flags.trusted_ca_file))?;
        }
        Some(Arc::new(roots))
    };
    // etcd's SelfCert drops the allowed names with --auto-tls (its
    // certificate names none); without a CA nothing is verified, so a
    // name would prove nothing.
    let allowed = match (&flags.allowed, verify_peers, &roots) {
        (Some(allowed), false, _) => {
            tracing::warn!(
                ?allowed,
                "the allowed certificate name is ignored with auto TLS, as etcd ignores it"
            );
            None
        }
        (Some(allowed), true, None) => {
            return Err(format!(
                "{allowed:?} needs a trusted CA file: without one no certificate is verified, \
                 so the name it carries proves nothing"
            ))
        }
        (allowed, ..) => allowed.clone(),
    };
    let offering = provider_offering(&flags.cipher_suites);
    let server = ServerConfig::builder_with_provider(offering.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?;
    // etcd requires and verifies a client certificate whenever a trusted
    // CA file is given, --client-cert-auth or not (TLSInfo.ServerConfig);
    // the flag alone decides whether its common name is the user.
    let server = if flags.client_cert_auth || roots.is_some() {
        let roots = roots.clone().ok_or(
            "client certificate authentication needs a trusted CA file to check certificates against",
        )?;
        let mut verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider());
        if !flags.crl_file.is_empty() {
            let pem = read(disk, &flags.crl_file, "the certificate revocation list")?;
            let mut crls: Vec<_> =
                rustls::pki_types::CertificateRevocationListDer::pem_slice_iter(&pem)
                    .collect::<Result<_, _>>()
                    .map_err(|error| format!("{}: {error}", flags.crl_file))?;
            if crls.is_empty() {
                // Not PEM: one DER list, as Go's x509.ParseCRL takes too
                // (etcd's own fixtures are DER); webpki parses it below.
                crls.push(pem.into());
            }
            // As etcd: a certificate the lists name is refused; one no
            // list covers is not.
            verifier = verifier
                .with_crls(crls)
                .only_check_end_entity_revocation()
                .allow_unknown_revocation_status();
        }
        let verifier = verifier.build().map_err(|error| {
            if flags.crl_file.is_empty() {
                error.to_string()
            } else {
                format!("{}: {error}", flags.crl_file)
            }
        })?;
        server.with_client_cert_verifier(Arc::new(TrustedCaAsClient {
            inner: verifier,
            trusted,
            allowed: allowed.clone(),
        }))
    } else {
        server.with_no_client_auth()
    };
    let mut server = server
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|error| format!("{}: {error}", flags.cert_file))?;
    // gRPC is HTTP/2; /health and /metrics may come over HTTP/1.1.
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    let client = ClientConfig::builder_with_provider(offering)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?;
    let server_verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> =
        match (&roots, verify_peers) {
            (Some(roots), true) => rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots.clone(),
                provider(),
            )
            .build()
            .map_err(|error| format!("{}: {error}", flags.trusted_ca_file))?,
            // etcd dials peers of --auto-tls without verifying them
            // (InsecureSkipVerify): encrypted, not authenticated. Without a
            // CA file etcd checks them against the system's roots; detcd
            // keeps none, and dials them unverified too.
            _ => Arc::new(AcceptAnyServer(provider())),
        };
    let server_verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match &allowed {
        // etcd's AllowedCN/AllowedHostname bind its dialing side too.
        Some(allowed) => Arc::new(AllowedServer {
            inner: server_verifier,
            allowed: allowed.clone(),
        }),
        None => server_verifier,
    };
    let client = client
        .dangerous()
        .with_custom_certificate_verifier(server_verifier);
    let mut client = client
        .with_client_auth_cert(chain, key)
        .map_err(|error| format!("{}: {error}", flags.cert_file))?;
    client.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(Tls {
        server: Arc::new(server),
        client: Arc::new(client),
        client_cert_auth: flags.client_cert_auth,
        verify_client_san: flags.verify_client_san,
    }))
}

/// `--auto-tls`: the certificate kept in `fixtures` if there is one, else a
/// new self-signed one for `hosts`, kept there for the next start.
fn auto_tls(
    disk: &dyn Disk,
    hosts: &[String],
    fixtures: &Path,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let cert_path = fixtures.join("cert.pem");
    let key_path = fixtures.join("key.pem");
    if let (Ok(cert), Ok(key)) = (disk.read(&cert_path), disk.read(&key_path)) {
        return Ok((cert, key));
    }
    let (cert, key) = self_signed(hosts)?;
    disk.create_dir_all(fixtures)
        .map_err(|error| format!("cannot create {}: {error}", fixtures.display()))?;
    for (path, bytes) in [(&key_path, &key), (&cert_path, &cert)] {
        crate::storage::disk::write_atomically(disk, path, bytes)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }
    Ok((cert, key))
}

/// A self-signed certificate (PEM) and its key for `hosts`. It keeps
/// rcgen's validity (no expiry to speak of) rather than etcd's one year:
/// nobody verifies it, and making it reads no clock.
pub fn self_signed(hosts: &[String]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut names: Vec<String> = hosts.to_vec();
    if names.is_empty() {
        names.push("localhost".into());
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(|error| error.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "detcd");
    let key = rcgen::KeyPair::generate().map_err(|error| error.to_string())?;
    let cert = params
        .self_signed(&key)
        .map_err(|error| error.to_string())?;
    Ok((cert.pem().into_bytes(), key.serialize_pem().into_bytes()))
}

/// The common name of a certificate's subject, if it has one.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    // Go's Subject.CommonName is the last one.
    let name = parsed.subject().iter_common_name().last()?;
    name.as_str().ok().map(str::to_string)
}

/// Client certificates checked as webpki checks them, except that a
/// certificate the trusted CA file itself holds is accepted as a client's
/// while it is valid, CA or not, as Go's TLS (and so etcd) accepts it:
/// webpki refuses a CA certificate as an end entity, and etcd users do
/// hand one certificate to the server, the CA file and the client.
#[derive(Debug)]
struct TrustedCaAsClient {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    trusted: Vec<CertificateDer<'static>>,
    /// What a verified certificate must also name.
    allowed: Option<Allowed>,
}

impl TrustedCaAsClient {
    fn is_trusted_and_valid(
        &self,
        end_entity: &CertificateDer<'_>,
        now: rustls::pki_types::UnixTime,
    ) -> bool {
        if !self
            .trusted
            .iter()
            .any(|cert| cert.as_ref() == end_entity.as_ref())
        {
            return false;
        }
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(end_entity.as_ref()) else {
            return false;
        };
        i64::try_from(now.as_secs())
            .ok()
            .and_then(|secs| x509_parser::time::ASN1Time::from_timestamp(secs).ok())
            .is_some_and(|now| parsed.validity().is_valid_at(now))
    }
}

impl rustls::server::danger::ClientCertVerifier for TrustedCaAsClient {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            // webpki's CaUsedAsEndEntity; never a revoked one.
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(_)))
                if self.is_trusted_and_valid(end_entity, now) =>
            {
                rustls::server::danger::ClientCertVerified::assertion()
            }
            verdict => verdict?,
        };
        if let Some(allowed) = &self.allowed {
            allowed.check(end_entity)?;
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A peer's certificate checked by `inner`, then against what is allowed.
#[derive(Debug)]
struct AllowedServer {
    inner: Arc<dyn rustls::client::danger::ServerCertVerifier>,
    allowed: Allowed,
}

impl rustls::client::danger::ServerCertVerifier for AllowedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        self.allowed.check(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts any server certificate (etcd's InsecureSkipVerify for peers
/// of `--auto-tls`): the handshake signatures are still checked.
#[derive(Debug)]
struct AcceptAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What tonic learns about an accepted connection: its address, and the
/// common name of the client's certificate (TLS with client-cert auth).
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub remote: Option<SocketAddr>,
    pub common_name: Option<String>,
}

/// A bound listener: TCP, or a unix socket (etcd's `unix://` and
/// `unixs://` URLs).
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Listener {
    async fn accept(&self) -> io::Result<(Socket, Option<SocketAddr>)> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, remote) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok((Either::Left(stream), Some(remote)))
            }
            Listener::Unix(listener) => {
                let (stream, _) = listener.accept().await?;
                Ok((Either::Right(stream), None))
            }
        }
    }
}

/// A connected socket, TCP or unix; tokio-util's `Either` passes reads
/// and (vectored) writes through to the one it holds.
pub type Socket = Either<TcpStream, UnixStream>;

fn peer_addr(socket: &Socket) -> Option<SocketAddr> {
    match socket {
        Either::Left(stream) => stream.peer_addr().ok(),
        Either::Right(_) => None,
    }
}

/// An accepted connection, plain or TLS. Its own type (not a bare
/// `Either`) because tonic's `Connected` trait must be implemented for it.
pub struct Conn(Either<Socket, Box<tokio_rustls::server::TlsStream<Socket>>>);

impl Conn {
    fn info(&self) -> PeerInfo {
        match &self.0 {
            Either::Left(stream) => PeerInfo {
                remote: peer_addr(stream),
                common_name: None,
            },
            Either::Right(stream) => {
                let (socket, session) = stream.get_ref();
                PeerInfo {
                    remote: peer_addr(socket),
                    common_name: session
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .and_then(common_name),
                }
            }
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// Accepts connections from `listener`: with `tls`, each handshake runs in
/// a task of its own (bounded by `HANDSHAKE_TIMEOUT`), and one that fails
/// (plaintext sent to a TLS port, an untrusted client certificate) is
/// logged and dropped, never ending the listener.
pub fn accept(
    listener: Listener,
    tls: Option<Tls>,
) -> impl futures::Stream<Item = io::Result<Conn>> {
    let (sender, receiver) = tokio::sync::mpsc::channel::<io::Result<Conn>>(64);
    tokio::spawn(async move {
        loop {
            let (stream, remote) = tokio::select! {
                biased;
                () = sender.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accepting a connection failed");
                        continue;
                    }
                },
            };
            let Some(tls) = &tls else {
                if sender.send(Ok(Conn(Either::Left(stream)))).await.is_err() {
                    return;
                }
                continue;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
            let verify_client_san = tls.verify_client_san;
            let from = remote.map_or_else(|| "a unix socket".to_string(), |r| r.to_string());
            let sender = sender.clone();
            tokio::spawn(async move {
                let handshake = async {
                    let stream = acceptor.accept(stream).await?;
                    let certificate = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first());
                    // A unix socket's peer has no address to check (etcd's
                    // check then fails every certificate with names; detcd
                    // lets the socket's file permissions decide).
                    if let (true, Some(certificate), Some(remote)) =
                        (verify_client_san, certificate, remote)
                    {
                        check_client_san(certificate, remote.ip())
                            .await
                            .map_err(io::Error::other)?;
                    }
                    Ok::<_, io::Error>(stream)
                };
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(stream)) => {
                        let _ = sender.send(Ok(Conn(Either::Right(Box::new(stream))))).await;
                    }
                    Ok(Err(error)) => {
                        let error = go_wording(&error);
                        tracing::warn!(remote = %from, %error, "rejected a connection: TLS handshake failed")
                    }
                    Err(_) => {
                        tracing::warn!(remote = %from, "rejected a connection: TLS handshake timed out")
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

/// A TLS error as Go's TLS words it where the words are the ones operators
/// search etcd's logs for: an alert from the other side is "remote error:
/// tls: bad certificate" (and so on), not rustls's "received fatal alert:
/// BadCertificate". Other errors keep rustls's text.
fn go_wording(error: &io::Error) -> String {
    use rustls::AlertDescription as Alert;
    let Some(rustls::Error::AlertReceived(alert)) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return error.to_string();
    };
    // crypto/tls's alertText.
    let text = match alert {
        Alert::CloseNotify => "close notify",
        Alert::UnexpectedMessage => "unexpected message",
        Alert::BadRecordMac => "bad record MAC",
        Alert::DecryptionFailed => "decryption failed",
        Alert::RecordOverflow => "record overflow",
        Alert::DecompressionFailure => "decompression failure",
        Alert::HandshakeFailure => "handshake failure",
        Alert::BadCertificate => "bad certificate",
        Alert::UnsupportedCertificate => "unsupported certificate",
        Alert::CertificateRevoked => "revoked certificate",
        Alert::CertificateExpired => "expired certificate",
        Alert::CertificateUnknown => "unknown certificate",
        Alert::IllegalParameter => "illegal parameter",
        Alert::UnknownCA => "unknown certificate authority",
        Alert::AccessDenied => "access denied",
        Alert::DecodeError => "error decoding message",
        Alert::DecryptError => "error decrypting message",
        Alert::ExportRestriction => "export restriction",
        Alert::ProtocolVersion => "protocol version not supported",
        Alert::InsufficientSecurity => "insufficient security level",
        Alert::InternalError => "internal error",
        Alert::InappropriateFallback => "inappropriate fallback",
        Alert::UserCanceled => "user canceled",
        Alert::NoRenegotiation => "no renegotiation",
        Alert::MissingExtension => "missing extension",
        Alert::UnsupportedExtension => "unsupported extension",
        Alert::CertificateUnobtainable => "certificate unobtainable",
        Alert::UnrecognisedName => "unrecognized name",
        Alert::BadCertificateStatusResponse => "bad certificate status response",
        Alert::BadCertificateHashValue => "bad certificate hash value",
        Alert::UnknownPSKIdentity => "unknown PSK identity",
        Alert::CertificateRequired => "certificate required",
        Alert::NoApplicationProtocol => "no application protocol",
        _ => return error.to_string(),
    };
    format!("remote error: tls: {text}")
}

/// etcd's `checkCertSAN` for its peer listener: a certificate that lists
/// IP addresses or DNS names must list `remote`, or a name that resolves
/// to it (forward only: see the module doc). One that lists neither
/// passes. The errors are Go's words.
async fn check_client_san(
    certificate: &CertificateDer<'_>,
    remote: std::net::IpAddr,
) -> Result<(), String> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref())
        .map_err(|error| format!("x509: {error}"))?;
    let mut addresses = Vec::new();
    let mut names = Vec::new();
    // An extension that does not parse is refused, as Go refuses the
    // certificate.
    let san = parsed
        .subject_alternative_name()
        .map_err(|error| format!("x509: cannot parse the subject alternative names: {error}"))?;
    if let Some(san) = san {
        for name in &san.value.general_names {
            match name {
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => addresses.push(std::net::IpAddr::from(
                        <[u8; 4]>::try_from(*bytes).expect("4 bytes"),
                    )),
                    16 => addresses.push(std::net::IpAddr::from(
                        <[u8; 16]>::try_from(*bytes).expect("16 bytes"),
                    )),
                    _ => {}
                },
                GeneralName::DNSName(name) => names.push(name.to_string()),
                _ => {}
            }
        }
    }
    let remote = remote.to_canonical();
    if addresses
        .iter()
        .any(|address| address.to_canonical() == remote)
    {
        return Ok(());
    }
    if names.is_empty() {
        if addresses.is_empty() {
            return Ok(());
        }
        let listed: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        return Err(format!(
            "x509: certificate is valid for {}, not {remote}",
            listed.join(", ")
        ));
    }
    for name in names.iter().filter(|name| !name.starts_with("*.")) {
        let Ok(resolved) = tokio::net::lookup_host((name.as_str(), 0)).await else {
            continue;
        };
        if resolved
            .map(|address| address.ip().to_canonical())
            .any(|address| address == remote)
        {
            return Ok(());
        }
    }
    // Go's %q of a []string: ["a" "b"].
    let quoted: Vec<String> = names.iter().map(|name| format!("{name:?}")).collect();
    Err(format!(
        "tls: \"{remote}\" does not match any of DNSNames [{}]",
        quoted.join(" ")
    ))
}

/// A tonic channel to `url`: over TLS with `tls`'s client side when it is
/// given, and over the unix socket `unix` when that is given (the name the
/// server's certificate must carry is then the path's part before any
/// `:`, as Go's dialer takes it). tonic is handed a plain-HTTP form of the
/// URL: the socket and the TLS are ours; `configure` sets the endpoint's
/// timeouts and keepalives.
pub async fn connect(
    url: &str,
    tls: Option<&Tls>,
    unix: Option<&Path>,
    configure: impl FnOnce(tonic::transport::Endpoint) -> tonic::transport::Endpoint,
) -> Result<tonic::transport::Channel, String> {
    let unix = unix.map(Path::to_path_buf);
    let (plain, server_name) = match &unix {
        None => {
            let parsed: http::Uri = url.parse().map_err(|error| format!("{url}: {error}"))?;
            let host = parsed.host().ok_or(format!("{url}: no host"))?.to_string();
            let port = parsed.port_u16().unwrap_or(443);
            (format!("http://{host}:{port}"), host)
        }
        Some(path) => {
            let path = path.display().to_string();
            let name = path.split(':').next().unwrap_or_default().to_string();
            ("http://unix.socket".to_string(), name)
        }
    };
    let name = ServerName::try_from(
        server_name
            .trim_matches(|c| c == '[' || c == ']')
            .to_string(),
    )
    .map_err(|error| format!("{url}: {error}"));
    let connector = tls.map(|tls| tokio_rustls::TlsConnector::from(tls.client.clone()));
    let dial = tower::service_fn(move |uri: http::Uri| {
        let connector = connector.clone();
        let name = name.clone();
        let unix = unix.clone();
        async move {
            let socket = match &unix {
                None => {
                    let address = format!(
                        "{}:{}",
                        uri.host().unwrap_or_default(),
                        uri.port_u16().unwrap_or(443)
                    );
                    let tcp = TcpStream::connect(address).await?;
                    let _ = tcp.set_nodelay(true);
                    Either::Left(tcp)
                }
                Some(path) => Either::Right(UnixStream::connect(path).await?),
            };
            let Some(connector) = connector else {
                return Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(Connected::Left(socket)));
            };
            let name = name.map_err(io::Error::other)?;
            let stream = connector
                .connect(name, socket)
                .await
                .map_err(|error| io::Error::new(error.kind(), go_wording(&error)))?;
            Ok(hyper_util::rt::TokioIo::new(Connected::Right(Box::new(
                stream,
            ))))
        }
    });
    let endpoint =
        tonic::transport::Endpoint::from_shared(plain).map_err(|error| error.to_string())?;
    configure(endpoint)
        .connect_with_connector(dial)
        .await
        .map_err(|error| format!("{url}: {error}"))
}

/// A dialed connection, plain or TLS.
type Connected = Either<Socket, Box<tokio_rustls::client::TlsStream<Socket>>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(common_name: &str, names: &[&str]) -> CertificateDer<'static> {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn allowed_names_admit_only_certificates_that_name_them() {
        let cert = certificate("example.com", &["localhost", "127.0.0.1", "*.db.example"]);
        let cn = |name: &str| Allowed::CommonName(name.into()).admits(&cert);
        assert!(cn("example.com"));
        assert!(!cn("example2.com"));
        assert!(!cn("localhost"), "a common name is not a host name");
        let host = |name: &str| Allowed::Hostname(name.into()).admits(&cert);
        assert!(host("localhost"));
        assert!(host("LOCALHOST."));
        assert!(host("127.0.0.1"));
        assert!(host("m1.db.example"));
        assert!(!host("127.0.0.2"));
        assert!(
            !host("example.com"),
            "the common name is no host name (Go 1.15+)"
        );
        assert!(!host("a.b.db.example"));
        assert!(Allowed::CommonName("x".into())
            .check(&cert)
            .is_err_and(|error| error
                == rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)));
    }

    #[tokio::test]
    async fn a_peer_certificate_must_name_the_address_it_comes_from() {
        let loopback: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let check = |names: &[&str]| {
            let cert = certificate("m1", names);
            async move { check_client_san(&cert, loopback).await }
        };
        assert_eq!(check(&[]).await, Ok(()), "no SANs: nothing to check");
        assert_eq!(check(&["127.0.0.1"]).await, Ok(()));
        assert_eq!(check(&["localhost"]).await, Ok(()), "resolves to it");
        assert_eq!(
            check(&["10.0.0.1"]).await,
            Err("x509: certificate is valid for 10.0.0.1, not 127.0.0.1".into())
        );
        assert_eq!(
            check(&["10.0.0.1", "elsewhere.invalid"]).await,
            Err("tls: \"127.0.0.1\" does not match any of DNSNames [\"elsewhere.invalid\"]".into())
        );
        let mapped: std::net::IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let cert = certificate("m1", &["127.0.0.1"]);
        assert_eq!(check_client_san(&cert, mapped).await, Ok(()));
    }

    #[test]
    fn alerts_from_the_other_side_are_worded_as_go_words_them() {
        let alert = |description| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                rustls::Error::AlertReceived(description),
            )
        };
        assert_eq!(
            go_wording(&alert(rustls::AlertDescription::BadCertificate)),
            "remote error: tls: bad certificate"
        );
        assert_eq!(
            go_wording(&alert(rustls::AlertDescription::UnknownCA)),
            "remote error: tls: unknown certificate authority"
        );
        let other = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
        );
        assert_eq!(go_wording(&other), other.to_string());
    }

    #[test]
    fn cipher_suites_narrow_only_tls12() {
        let all = provider_offering(&[]).cipher_suites.len();
        let one = provider_offering(&[0xc02f]);
        let kept: Vec<u16> = one
            .cipher_suites
            .iter()
            .map(|suite| u16::from(suite.suite()))
            .collect();
        assert_eq!(kept.len(), 4, "{kept:x?}");
        assert!(kept.contains(&0xc02f));
        assert!(all > kept.len());
    }
}
