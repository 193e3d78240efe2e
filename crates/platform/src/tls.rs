//! TLS for the connections the services open themselves: RabbitMQ (`amqps://`) and PostgreSQL
//! (`sslmode` of `DATABASE_URL`).
//!
//! One place builds every rustls client configuration, always with the `ring` provider (no C
//! toolchain beyond ring's own build; aws-lc and OpenSSL are not compiled in), and decides what
//! is trusted:
//! - [`TrustRoots::Platform`]: the operating system's root certificates (`ca-certificates` on
//!   Debian), for brokers and databases with publicly trusted certificates;
//! - [`TrustRoots::File`]: only the certificates of one PEM file, for a private CA.
//!
//! What cannot be trusted is refused with the reason, never downgraded: a CA file that cannot be
//! read or holds no certificate, or a platform without root certificates.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};

/// Which certificate authorities a connection trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustRoots {
    /// The platform's root certificates.
    Platform,
    /// Only the certificates in this PEM file (a private CA).
    File(PathBuf),
}

/// Why no TLS configuration could be built. The text names the file and the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

impl TlsError {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// The crypto provider of every TLS connection: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The root store for `roots`; refused when it would be empty.
pub fn root_store(roots: &TrustRoots) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match roots {
        TrustRoots::File(path) => {
            let certificates = read_certificates(path)?;
            let (_, unusable) = store.add_parsable_certificates(certificates);
            if store.is_empty() {
                return Err(TlsError::new(format!(
                    "CA file {}: none of its {unusable} certificate(s) can be used as a root",
                    path.display()
                )));
            }
        }
        TrustRoots::Platform => {
            let loaded = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(loaded.certs);
            if store.is_empty() {
                let cause = loaded
                    .errors
                    .first()
                    .map_or_else(|| "none found".to_owned(), ToString::to_string);
                return Err(TlsError::new(format!(
                    "no root certificates on this platform ({cause}): install the \
                     `ca-certificates` package, or name a CA file"
                )));
            }
        }
    }
    Ok(store)
}

/// Reads every certificate of a PEM file; a file without one is refused.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path)
        .map_err(|err| TlsError::new(format!("CA file {}: cannot read: {err}", path.display())))?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::new(format!("CA file {}: not PEM: {err}", path.display())))?;
    if certificates.is_empty() {
        return Err(TlsError::new(format!(
            "CA file {}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certificates)
}

/// How much of the server's certificate a connection checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Chain to a trusted root and the host name (the only mode for RabbitMQ; PostgreSQL's
    /// `verify-full`).
    Full(TrustRoots),
    /// Chain to a trusted root, any host name (PostgreSQL's `verify-ca`).
    ChainOnly(TrustRoots),
    /// Encryption without authenticating the server (PostgreSQL's `prefer` and `require`, as
    /// libpq defines them): protects against eavesdropping, not against an impostor.
    EncryptionOnly,
}

/// A rustls client configuration for `verification`, with the ring provider and rustls' safe
/// protocol versions (TLS 1.2 and 1.3).
pub fn client_config(verification: &Verification) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError::new(format!("TLS configuration: {err}")))?;
    let config = match verification {
        Verification::Full(roots) => builder
            .with_root_certificates(root_store(roots)?)
            .with_no_client_auth(),
        Verification::ChainOnly(roots) => {
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(root_store(roots)?), provider)
                    .build()
                    .map_err(|err| TlsError::new(format!("TLS configuration: {err}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyHostName { webpki }))
                .with_no_client_auth()
        }
        Verification::EncryptionOnly => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// Verifies the chain like [`WebPkiServerVerifier`] and accepts a certificate issued for another
/// name (PostgreSQL's `verify-ca`). webpki checks the name only after the chain, so a name
/// mismatch means the chain was good.
struct AnyHostName {
    webpki: Arc<WebPkiServerVerifier>,
}

impl fmt::Debug for AnyHostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnyHostName")
    }
}

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Accepts any server certificate but still checks the handshake signatures made with it, so
/// the session is encrypted to whoever holds that certificate's key.
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for AnyCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnyCertificate")
    }
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_refused_with_its_name() {
        let missing = TrustRoots::File("/nonexistent/ca.pem".into());
        let err = client_config(&Verification::Full(missing)).expect_err("refused");
        assert!(
            err.to_string()
                .starts_with("CA file /nonexistent/ca.pem: cannot read"),
            "{err}"
        );

        let dir = std::env::temp_dir().join(format!("tls-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").expect("write");
        let err =
            client_config(&Verification::ChainOnly(TrustRoots::File(empty))).expect_err("refused");
        assert!(
            err.to_string().ends_with("no PEM certificate in it"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn encryption_only_needs_no_roots() {
        client_config(&Verification::EncryptionOnly).expect("no file, no platform store needed");
    }
}
