//! TLS on real processes, with certificates made here (rcgen): a cluster
//! with client and peer TLS and certificate authentication serves etcdctl
//! over https and fails over; clients and peers without a certificate the
//! CA signed are refused; with auth on, a client certificate's common name
//! is its user. Each runs against etcd 3.4.23 too (DETCD_IT_FLAVOR=etcd).

use std::io::Read;
use std::process::Command;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use crate::cluster_support::Cluster;

/// A CA, a server certificate for 127.0.0.1 (client and peer side), and
/// client certificates by common name; plus a rogue CA's certificate.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new(users: &[&str]) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let (ca, ca_key) = authority("detcd test CA");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let server = leaf("member", &ca, &ca_key);
        std::fs::write(dir.path().join("server.pem"), server.0).unwrap();
        std::fs::write(dir.path().join("server.key"), server.1).unwrap();
        for user in users {
            let (cert, key) = leaf(user, &ca, &ca_key);
            std::fs::write(dir.path().join(format!("{user}.pem")), cert).unwrap();
            std::fs::write(dir.path().join(format!("{user}.key")), key).unwrap();
        }
        // The members' common name, but valid for no host here.
        let (cert, key) = leaf_for("member", &["elsewhere.example"], &ca, &ca_key);
        std::fs::write(dir.path().join("elsewhere.pem"), cert).unwrap();
        std::fs::write(dir.path().join("elsewhere.key"), key).unwrap();
        let (rogue_ca, rogue_key) = authority("someone else's CA");
        let (cert, key) = leaf("root", &rogue_ca, &rogue_key);
        std::fs::write(dir.path().join("rogue.pem"), cert).unwrap();
        std::fs::write(dir.path().join("rogue.key"), key).unwrap();
        Pki { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    /// Client and peer TLS with certificate authentication on both.
    fn server_flags(&self) -> Vec<String> {
        [
            ("--cert-file", "server.pem"),
            ("--key-file", "server.key"),
            ("--trusted-ca-file", "ca.pem"),
            ("--peer-cert-file", "server.pem"),
            ("--peer-key-file", "server.key"),
            ("--peer-trusted-ca-file", "ca.pem"),
        ]
        .iter()
        .map(|(flag, file)| format!("{flag}={}", self.path(file)))
        .chain([
            "--client-cert-auth".into(),
            "--peer-client-cert-auth".into(),
        ])
        .collect()
    }

    /// Makes every etcdctl this test process starts use `user`'s
    /// certificate (nextest runs each test in a process of its own).
    fn use_certificate_of(&self, user: &str) {
        std::env::set_var("ETCDCTL_CACERT", self.path("ca.pem"));
        std::env::set_var("ETCDCTL_CERT", self.path(&format!("{user}.pem")));
        std::env::set_var("ETCDCTL_KEY", self.path(&format!("{user}.key")));
    }
}

fn authority(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap(), key)
}

/// A certificate for 127.0.0.1 and localhost, good for servers and
/// clients, with `common_name`, signed by `ca`: (cert PEM, key PEM).
fn leaf(common_name: &str, ca: &rcgen::Certificate, ca_key: &KeyPair) -> (String, String) {
    leaf_for(common_name, &["127.0.0.1", "localhost"], ca, ca_key)
}

/// `leaf`, valid for `names` instead.
fn leaf_for(
    common_name: &str,
    names: &[&str],
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
) -> (String, String) {
    let mut params = CertificateParams::new(
        names
            .iter()
            .map(|name| name.to_string())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca, ca_key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// etcdctl with exactly the TLS files given (none of the ETCDCTL_*
/// variables), short timeouts: for clients that must be refused.
fn etcdctl_with(endpoint: &str, tls: &[String], args: &[&str]) -> std::process::Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_CACERT")
        .env_remove("ETCDCTL_CERT")
        .env_remove("ETCDCTL_KEY")
        .arg(format!("--endpoints={endpoint}"))
        .args(["--dial-timeout=2s", "--command-timeout=3s"])
        .args(tls)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_tls_cluster_with_client_certificates_serves_etcdctl_and_fails_over() {
    let pki = Pki::new(&["root"]);
    pki.use_certificate_of("root");
    let flags = pki.server_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut cluster = Cluster::start_with_scheme("tls-failover", 3, &flags, "https");
    cluster.put(0, "k", "v1");
    assert_eq!(
        cluster.ctl_ok(1, &["get", "k", "--print-value-only"]),
        "v1\n"
    );

    let endpoint = cluster.members[0].client_url.clone();
    let ca = format!("--cacert={}", pki.path("ca.pem"));
    let no_certificate = etcdctl_with(&endpoint, std::slice::from_ref(&ca), &["get", "k"]);
    assert!(
        !no_certificate.status.success(),
        "a client without a certificate was served"
    );
    let rogue = [
        ca.clone(),
        format!("--cert={}", pki.path("rogue.pem")),
        format!("--key={}", pki.path("rogue.key")),
    ];
    let rogue_client = etcdctl_with(&endpoint, &rogue, &["get", "k"]);
    assert!(
        !rogue_client.status.success(),
        "a client with a rogue certificate was served"
    );
    let plaintext = etcdctl_with(&endpoint.replace("https://", "http://"), &[], &["get", "k"]);
    assert!(
        !plaintext.status.success(),
        "plaintext was served on a TLS port"
    );
    // The member is unharmed by all that.
    assert_eq!(
        cluster.ctl_ok(0, &["get", "k", "--print-value-only"]),
        "v1\n"
    );

    let leader = cluster.wait_for_leader(&cluster.all());
    cluster.kill(leader);
    let survivors: Vec<usize> = cluster.all().into_iter().filter(|&i| i != leader).collect();
    let new_leader = cluster.wait_for_leader(&survivors);
    cluster.put(new_leader, "k", "v2");
    let other = *survivors.iter().find(|&&i| i != new_leader).unwrap();
    assert_eq!(
        cluster.ctl_ok(other, &["get", "k", "--print-value-only"]),
        "v2\n"
    );
}

/// With `--peer-client-cert-auth`, the peer port completes nothing for a
/// client whose certificate another CA signed: raft messages never reach
/// the member. A member's own certificate is answered (the server's
/// HTTP/2 settings arrive).
#[test]
fn the_peer_port_refuses_certificates_the_peer_ca_did_not_sign() {
    let pki = Pki::new(&[]);
    pki.use_certificate_of("server");
    let flags = pki.server_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = Cluster::start_with_scheme("tls-peer", 1, &flags, "https");
    let answer = |name: &str| http2_answer(&pki, &cluster.members[0].peer_url, name);
    let member = answer("server");
    assert!(
        member.is_ok(),
        "a member's certificate was refused: {member:?}"
    );
    let rogue = answer("rogue");
    assert!(rogue.is_err(), "a rogue certificate was not refused");
}

/// `--peer-cert-allowed-cn`: of the certificates the peer CA signed, the
/// peer port admits only those with that common name, and the member logs
/// the refusal in etcd's words. `--client-cert-allowed-hostname`: a client
/// certificate must also be valid for that host.
#[test]
fn the_allowed_common_name_and_host_narrow_whom_the_ca_admits() {
    let pki = Pki::new(&["root", "other"]);
    pki.use_certificate_of("root");
    let mut flags = pki.server_flags();
    flags.push("--peer-cert-allowed-cn=member".into());
    flags.push("--client-cert-allowed-hostname=localhost".into());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = Cluster::start_with_scheme("tls-allowed-cn", 1, &flags, "https");
    let answer = |name: &str| http2_answer(&pki, &cluster.members[0].peer_url, name);
    let member = answer("server");
    assert!(
        member.is_ok(),
        "the allowed common name was refused: {member:?}"
    );
    assert!(answer("other").is_err(), "another common name was admitted");
    assert!(
        crate::support::eventually(std::time::Duration::from_secs(10), || cluster
            .log(0)
            .contains("client certificate authentication failed")),
        "the refusal is logged:\n{}",
        cluster.log(0)
    );

    let endpoint = cluster.members[0].client_url.clone();
    let with = |name: &str| {
        etcdctl_with(
            &endpoint,
            &[
                format!("--cacert={}", pki.path("ca.pem")),
                format!("--cert={}", pki.path(&format!("{name}.pem"))),
                format!("--key={}", pki.path(&format!("{name}.key"))),
            ],
            &["put", "k", "v"],
        )
    };
    let localhost = with("root");
    assert!(
        localhost.status.success(),
        "a certificate for localhost was refused: {}",
        String::from_utf8_lossy(&localhost.stderr)
    );
    assert!(
        !with("elsewhere").status.success(),
        "a certificate for another host was admitted"
    );
}

/// `--peer-cert-allowed-hostname`: the certificate must be valid for that
/// host; its common name does not count. (The address check is off, so
/// the host is all that refuses.)
#[test]
fn the_peer_port_admits_only_certificates_for_the_allowed_host() {
    let pki = Pki::new(&[]);
    pki.use_certificate_of("server");
    let mut flags = pki.server_flags();
    flags.push("--peer-cert-allowed-hostname=localhost".into());
    flags.push("--experimental-peer-skip-client-san-verification".into());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = Cluster::start_with_scheme("tls-allowed-host", 1, &flags, "https");
    let answer = |name: &str| http2_answer(&pki, &cluster.members[0].peer_url, name);
    let member = answer("server");
    assert!(
        member.is_ok(),
        "a certificate for localhost was refused: {member:?}"
    );
    assert!(
        answer("elsewhere").is_err(),
        "a certificate for another host was admitted"
    );
}

/// The peer port refuses a member certificate that lists hosts none of
/// which is the address it connects from (etcd's peer listener checks
/// that), unless `--experimental-peer-skip-client-san-verification`. The
/// client port does not check.
#[test]
fn the_peer_port_checks_a_certificate_against_its_address() {
    let pki = Pki::new(&[]);
    pki.use_certificate_of("server");
    for skip in [false, true] {
        let mut flags = pki.server_flags();
        if skip {
            flags.push("--experimental-peer-skip-client-san-verification=true".into());
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let cluster = Cluster::start_with_scheme("tls-peer-san", 1, &flags, "https");
        let member = &cluster.members[0];
        let answer = |url: &str, name: &str| http2_answer(&pki, url, name);
        let own = answer(&member.peer_url, "server");
        assert!(
            own.is_ok(),
            "a certificate for 127.0.0.1 was refused: {own:?}"
        );
        let elsewhere = answer(&member.peer_url, "elsewhere");
        assert_eq!(
            elsewhere.is_ok(),
            skip,
            "skip={skip}: a certificate for another host: {elsewhere:?}"
        );
        let client = answer(&member.client_url, "elsewhere");
        assert!(
            client.is_ok(),
            "the client port checked the host: {client:?}"
        );
    }
}

/// `--cipher-suites` narrows TLS 1.2 to the named suites on every port;
/// TLS 1.3 is untouched (as Go's TLS, and so etcd).
#[test]
fn cipher_suites_narrow_tls12_and_leave_tls13() {
    const ECDSA_AES_128_GCM: u16 = 0xc02b;
    const ECDSA_AES_256_GCM: u16 = 0xc02c;
    let pki = Pki::new(&[]);
    pki.use_certificate_of("server");
    let mut flags = pki.server_flags();
    flags.push("--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = Cluster::start_with_scheme("tls-ciphers", 1, &flags, "https");
    let member = &cluster.members[0];
    for url in [&member.client_url, &member.peer_url] {
        let address = url.trim_start_matches("https://");
        let answer = |suite| {
            tls_answer(
                address,
                &pki.path("ca.pem"),
                &pki.path("server.pem"),
                &pki.path("server.key"),
                suite,
            )
        };
        let named = answer(Some(ECDSA_AES_128_GCM));
        assert!(
            named.is_ok(),
            "{url}: the named suite was refused: {named:?}"
        );
        assert!(
            answer(Some(ECDSA_AES_256_GCM)).is_err(),
            "{url}: a suite not named was accepted"
        );
        let tls13 = answer(None);
        assert!(tls13.is_ok(), "{url}: TLS 1.3 was refused: {tls13:?}");
    }
}

/// Opens TLS to `url` with the client certificate `name` of `pki` (its
/// `name.pem` and `name.key`) and reads: Ok if the connection stays open
/// for 3 s (the server waits for a request), Err if the server closed or
/// refused it.
fn http2_answer(pki: &Pki, url: &str, name: &str) -> Result<(), String> {
    tls_answer(
        url.trim_start_matches("https://"),
        &pki.path("ca.pem"),
        &pki.path(&format!("{name}.pem")),
        &pki.path(&format!("{name}.key")),
        None,
    )
}

/// `http2_answer`, offering only TLS 1.2 and the one cipher suite
/// `tls12_suite` (IANA number) when it is given.
fn tls_answer(
    address: &str,
    ca: &str,
    cert: &str,
    key: &str,
    tls12_suite: Option<u16>,
) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let mut provider = rustls::crypto::ring::default_provider();
    let versions: &[&rustls::SupportedProtocolVersion] = match tls12_suite {
        Some(suite) => {
            provider
                .cipher_suites
                .retain(|offered| u16::from(offered.suite()) == suite);
            &[&rustls::version::TLS12]
        }
        None => rustls::DEFAULT_VERSIONS,
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let connection =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let socket = std::net::TcpStream::connect(address).map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    let mut stream = rustls::StreamOwned::new(connection, socket);
    // Finish the handshake; the server judges the certificate after it.
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| e.to_string())?;
    }
    let mut buffer = [0u8; 64];
    match stream.read(&mut buffer) {
        Ok(0) => Err("closed".into()),
        Ok(_) => Ok(()),
        Err(error)
            if error.kind() == std::io::ErrorKind::WouldBlock
                || error.kind() == std::io::ErrorKind::TimedOut =>
        {
            Ok(())
        }
        Err(error) => Err(error.to_string()),
    }
}

/// etcd: with client-cert auth and auth on, a request without a token runs
/// as the user its certificate names.
#[test]
fn the_certificate_common_name_is_the_user_once_auth_is_on() {
    let pki = Pki::new(&["root", "alice"]);
    pki.use_certificate_of("root");
    let flags = pki.server_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = Cluster::start_with_scheme("tls-cn", 1, &flags, "https");
    for step in [
        &["user", "add", "root", "--new-user-password=rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["user", "add", "alice", "--new-user-password=apw"],
        &["role", "add", "reader"],
        &["role", "grant-permission", "reader", "read", "a"],
        &["user", "grant-role", "alice", "reader"],
        &["put", "a", "1"],
        &["auth", "enable"],
    ] {
        cluster.ctl_ok(0, step);
    }
    // Root's certificate is root: no password needed.
    cluster.put(0, "b", "2");
    let endpoint = cluster.members[0].client_url.clone();
    let alice = [
        format!("--cacert={}", pki.path("ca.pem")),
        format!("--cert={}", pki.path("alice.pem")),
        format!("--key={}", pki.path("alice.key")),
    ];
    let read = etcdctl_with(&endpoint, &alice, &["get", "a", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&read.stdout), "1\n", "{read:?}");
    let write = etcdctl_with(&endpoint, &alice, &["put", "a", "2"]);
    assert!(
        String::from_utf8_lossy(&write.stderr).contains("etcdserver: permission denied"),
        "{write:?}"
    );
    let other = etcdctl_with(&endpoint, &alice, &["get", "b"]);
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("etcdserver: permission denied"),
        "{other:?}"
    );
}

/// `--auto-tls` and `--peer-auto-tls`: a self-signed certificate made at
/// start and kept in the data dir; etcdctl reaches it when told not to
/// verify, and the member keeps the same certificate across a restart.
#[test]
fn auto_tls_serves_with_a_self_signed_certificate() {
    // etcdctl 3.4 speaks TLS without certificate files only when told to.
    std::env::set_var("ETCDCTL_INSECURE_TRANSPORT", "false");
    std::env::set_var("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "true");
    let mut cluster =
        Cluster::start_with_scheme("tls-auto", 1, &["--auto-tls", "--peer-auto-tls"], "https");
    cluster.put(0, "k", "v");
    let endpoint = cluster.members[0].client_url.clone();
    let verifying = etcdctl_with(
        &endpoint,
        &["--insecure-skip-tls-verify=false".into()],
        &["get", "k"],
    );
    assert!(
        !verifying.status.success(),
        "a self-signed certificate passed verification"
    );
    let certificate = std::fs::read(cluster.members[0].data_dir.join("fixtures/client/cert.pem"))
        .expect("the certificate is kept in the data dir");
    cluster.terminate(0);
    cluster.restart(&[0]);
    assert_eq!(
        cluster.ctl_ok(0, &["get", "k", "--print-value-only"]),
        "v\n"
    );
    let after =
        std::fs::read(cluster.members[0].data_dir.join("fixtures/client/cert.pem")).unwrap();
    assert_eq!(certificate, after, "a restart keeps its certificate");
}

/// One self-signed CA certificate as the server's, the trusted CA and the
/// client's (etcd's e2e fixture `CommonName-root.crt` is one): Go's TLS,
/// so etcd, accepts a trusted CA certificate from a client, and so must
/// detcd, though webpki refuses a CA as an end entity.
#[test]
fn a_trusted_ca_certificate_is_accepted_as_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "root");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let cert_path = dir.path().join("root.pem").display().to_string();
    let key_path = dir.path().join("root.key").display().to_string();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    std::env::set_var("ETCDCTL_CACERT", &cert_path);
    std::env::set_var("ETCDCTL_CERT", &cert_path);
    std::env::set_var("ETCDCTL_KEY", &key_path);
    let flags = [
        format!("--cert-file={cert_path}"),
        format!("--key-file={key_path}"),
        format!("--trusted-ca-file={cert_path}"),
        "--client-cert-auth".to_string(),
        format!("--peer-cert-file={cert_path}"),
        format!("--peer-key-file={key_path}"),
        format!("--peer-trusted-ca-file={cert_path}"),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = Cluster::start_with_scheme("tls-ca-as-client", 1, &flags, "https");
    cluster.put(0, "k", "v");
    assert_eq!(
        cluster.ctl_ok(0, &["get", "k", "--print-value-only"]),
        "v\n"
    );
}

/// `--client-crl-file`: a client certificate the revocation list names is
/// refused at the handshake; one it does not name still works.
#[test]
fn a_client_certificate_the_revocation_list_names_is_refused() {
    let pki = Pki::new(&["root"]);
    pki.use_certificate_of("root");
    let (ca, ca_key) = {
        // The CA of `Pki` is not kept; sign the revoked one and the list
        // with a CA of their own, trusted beside it.
        authority("revoking CA")
    };
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "revoked");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.serial_number = Some(rcgen::SerialNumber::from(4242u64));
    let revoked_key = KeyPair::generate().unwrap();
    let revoked = params.signed_by(&revoked_key, &ca, &ca_key).unwrap();
    let crl = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2020, 1, 1),
        next_update: rcgen::date_time_ymd(2100, 1, 1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from(4242u64),
            revocation_time: rcgen::date_time_ymd(2021, 1, 1),
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&ca, &ca_key)
    .unwrap();
    std::fs::write(pki.path("revoked.pem"), revoked.pem()).unwrap();
    std::fs::write(pki.path("revoked.key"), revoked_key.serialize_pem()).unwrap();
    // DER, as etcd's own fixture (revoke.crl) is; PEM works too.
    std::fs::write(pki.path("revoke.crl"), crl.der()).unwrap();
    let both_cas = format!(
        "{}{}",
        std::fs::read_to_string(pki.path("ca.pem")).unwrap(),
        ca.pem()
    );
    std::fs::write(pki.path("cas.pem"), both_cas).unwrap();
    let flags: Vec<String> = pki
        .server_flags()
        .into_iter()
        .map(|flag| {
            flag.replace(
                &format!("--trusted-ca-file={}", pki.path("ca.pem")),
                &format!("--trusted-ca-file={}", pki.path("cas.pem")),
            )
        })
        .chain([format!("--client-crl-file={}", pki.path("revoke.crl"))])
        .collect();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = Cluster::start_with_scheme("tls-crl", 1, &flags, "https");
    cluster.put(0, "k", "v");
    let endpoint = cluster.members[0].client_url.clone();
    let revoked_client = [
        format!("--cacert={}", pki.path("ca.pem")),
        format!("--cert={}", pki.path("revoked.pem")),
        format!("--key={}", pki.path("revoked.key")),
    ];
    let refused = etcdctl_with(&endpoint, &revoked_client, &["get", "k"]);
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("Error:"),
        "a revoked certificate was served: {refused:?}"
    );
}
