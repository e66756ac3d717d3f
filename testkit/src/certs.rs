//! A throwaway PKI for TLS and mutual-TLS tests, made with rcgen and written as PEM files.
//!
//! [`TestPki::new`] makes:
//! - a CA (`ca_cert`), which signs
//!   - a server certificate for `localhost` and IPs `127.0.0.1` and `::1` (`server_cert`, `server_key`,
//!     serverAuth), and
//!   - a client certificate (`client_cert`, `client_key`, clientAuth);
//! - an unrelated CA (`other_ca`) and a client certificate it signed (`other_client_cert`,
//!   `other_client_key`), for "wrong client certificate" tests.
//!
//! Keys are ECDSA P-256 (rcgen's default), which rustls, OpenSSL (nginx, curl) all accept.

use std::fs;
use std::path::{Path, PathBuf};

pub use rcgen::ExtendedKeyUsagePurpose;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// The PEM files of a test PKI; see the module docs. All paths are inside `dir`.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The directory the files were written to.
    pub dir: PathBuf,
    /// The CA that signed the server and client certificates.
    pub ca_cert: PathBuf,
    /// Server certificate for `localhost`, `127.0.0.1` and `::1`, signed by `ca_cert`.
    pub server_cert: PathBuf,
    /// Private key of `server_cert` (PKCS#8 PEM).
    pub server_key: PathBuf,
    /// Client certificate (clientAuth), signed by `ca_cert`.
    pub client_cert: PathBuf,
    /// Private key of `client_cert`.
    pub client_key: PathBuf,
    /// A CA unrelated to `ca_cert`.
    pub other_ca: PathBuf,
    /// Client certificate (clientAuth) signed by `other_ca`: a server that trusts only
    /// `ca_cert` must refuse it.
    pub other_client_cert: PathBuf,
    /// Private key of `other_client_cert`.
    pub other_client_key: PathBuf,
}

impl TestPki {
    /// Make the PKI and write its files into `dir` (created if missing).
    pub fn new(dir: &Path) -> TestPki {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let ca = Ca::new("update test CA");
        let other = Ca::new("unrelated test CA");
        let server = ca.issue(
            &["localhost", "127.0.0.1", "::1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = ca.issue(&["test-client"], ExtendedKeyUsagePurpose::ClientAuth);
        let other_client = other.issue(
            &["unrelated-test-client"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let write = |name: &str, pem: &str| write(dir, name, pem);
        TestPki {
            dir: dir.to_path_buf(),
            ca_cert: write("ca.crt", &ca.pem),
            server_cert: write("server.crt", &server.0),
            server_key: write("server.key", &server.1),
            client_cert: write("client.crt", &client.0),
            client_key: write("client.key", &client.1),
            other_ca: write("other-ca.crt", &other.pem),
            other_client_cert: write("other-client.crt", &other_client.0),
            other_client_key: write("other-client.key", &other_client.1),
        }
    }
}

/// A test certificate authority that issues leaf certificates.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    /// The CA certificate, PEM.
    pub pem: String,
}

impl Ca {
    /// A fresh self-signed CA named `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generate CA key");
        let pem = params.self_signed(&key).expect("self-sign CA").pem();
        Ca { params, key, pem }
    }

    /// A leaf certificate and its key, both PEM, valid now. `names` become subject
    /// alternative names (IP addresses as IP SANs, anything else as DNS names); the first
    /// one, or "leaf", is the common name.
    pub fn issue(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> (String, String) {
        self.leaf(names, purpose, false)
    }

    /// Like [`Ca::issue`], but valid only during the year 2000: expired.
    pub fn issue_expired(
        &self,
        names: &[&str],
        purpose: ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        self.leaf(names, purpose, true)
    }

    fn leaf(
        &self,
        names: &[&str],
        purpose: ExtendedKeyUsagePurpose,
        expired: bool,
    ) -> (String, String) {
        let common_name = names.first().copied().unwrap_or("leaf");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![purpose];
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2000, 12, 31);
        }
        let key = KeyPair::generate().expect("generate leaf key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }

    /// Write the CA certificate to `dir/name`; returns the path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        write(dir, name, &self.pem)
    }
}

/// Write `text` to `dir/name`; returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// Write a leaf from [`Ca::issue`] to `dir/NAME.crt` and `dir/NAME.key`; returns both paths.
pub fn write_pair(dir: &Path, name: &str, pair: &(String, String)) -> (PathBuf, PathBuf) {
    (
        write(dir, &format!("{name}.crt"), &pair.0),
        write(dir, &format!("{name}.key"), &pair.1),
    )
}
