//! Certificates made for one test: a private CA, a server certificate it signed, and a second,
//! unrelated CA (a server "signed by someone else"). Nothing is read from the machine; the files
//! live in a directory of their own, removed when the value is dropped (also after a panic).

use std::{net::IpAddr, path::PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};

/// PEM files of a CA and a server certificate it signed.
#[derive(Debug)]
pub struct TestCertificates {
    dir: PathBuf,
    /// The CA that signed the server certificate.
    pub ca: PathBuf,
    /// The server certificate.
    pub cert: PathBuf,
    /// The server certificate's private key (PKCS#8).
    pub key: PathBuf,
    /// Another CA, which signed nothing the server presents.
    pub other_ca: PathBuf,
}

impl TestCertificates {
    /// Generates the certificates into a scratch directory. `names` are the server
    /// certificate's subject alternative names: DNS names or IP addresses.
    pub fn generate(names: &[&str]) -> Self {
        let dir = crate::private::scratch_dir("certs");
        let ca = new_ca("wos-sync test CA");
        let other_ca = new_ca("an unrelated CA");

        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*name).try_into().expect("DNS name")),
            })
            .collect();
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &ca).expect("server certificate");

        let files = Self {
            dir: dir.clone(),
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            other_ca: dir.join("other-ca.pem"),
        };
        for (path, text) in [
            (&files.ca, ca.pem()),
            (&files.cert, cert.pem()),
            (&files.key, key.serialize_pem()),
            (&files.other_ca, other_ca.pem()),
        ] {
            std::fs::write(path, text).expect("write PEM");
        }
        files
    }
}

impl Drop for TestCertificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}
