//! What an AMQP URL asks for, and opening that connection: plain TCP for `amqp://`, TLS with
//! certificate and host name verification for `amqps://`.
//!
//! lapin is built with rustls, but its own TLS set-up always loads the platform's roots and adds
//! a private CA to them, so a container without `ca-certificates` could not reach a private
//! broker. The connection is therefore opened here, with the rustls configuration of
//! [`crate::tls`]. TLS options travel in the URL, as in RabbitMQ's URI specification, so every
//! connection the settings produce (services, CLI, benchmarks, tests) carries them:
//!
//! | query parameter | meaning |
//! |---|---|
//! | `cacertfile=/path/ca.pem` | trust only the CA certificates in this PEM file (a private broker) instead of the platform's roots |
//! | `verify=verify_peer` | the only mode there is (accepted for compatibility) |
//!
//! Refused, with the reason: `cacertfile` on `amqp://` (it would not encrypt anything),
//! `verify=verify_none` (certificate verification cannot be turned off), client certificates
//! (`certfile`, `keyfile`, `password`) and `server_name_indication`, which are not supported.

use std::{io, path::PathBuf, sync::Arc};

use lapin::{
    AsyncTcpStream, Connection, ConnectionProperties,
    tcp::RustlsConnector,
    uri::{AMQPScheme, AMQPUri},
};

use crate::tls::{self, TlsError, TrustRoots, Verification};

/// A parsed AMQP URL: the broker to connect to and, for `amqps://`, whom to trust.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    uri: AMQPUri,
    /// `None` for `amqp://`.
    tls: Option<TrustRoots>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password of the URL.
        f.debug_struct("Endpoint")
            .field("scheme", &self.uri.scheme)
            .field("host", &self.uri.authority.host)
            .field("port", &self.uri.authority.port)
            .field("vhost", &self.uri.vhost)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Why an AMQP URL cannot be used; the text says what to change, never the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EndpointError(String);

impl Endpoint {
    /// Parses `url` and its TLS options; files are not read yet (see [`Endpoint::check`]).
    pub fn parse(url: &str) -> Result<Self, EndpointError> {
        let refuse = |reason: String| Err(EndpointError(reason));
        let uri: AMQPUri = match url.parse() {
            Ok(uri) => uri,
            // lapin's message may quote the whole URL, password included.
            Err(_) => return refuse("not a valid amqp:// or amqps:// URL".into()),
        };
        let mut ca_file = None;
        for (key, value) in crate::settings::query_pairs(url) {
            match key.as_str() {
                "cacertfile" => {
                    if value.is_empty() {
                        return refuse("`cacertfile` needs a file name".into());
                    }
                    ca_file = Some(PathBuf::from(value));
                }
                "verify" if value == "verify_peer" => {}
                "verify" => {
                    return refuse(format!(
                        "`verify={value}`: certificate verification cannot be turned off \
                         (only verify_peer)"
                    ));
                }
                "certfile" | "keyfile" | "password" => {
                    return refuse(format!(
                        "`{key}`: client certificates are not supported; authenticate with the \
                         URL's user and password"
                    ));
                }
                "server_name_indication" => {
                    return refuse(
                        "`server_name_indication` is not supported: connect by the host name \
                         the broker's certificate names"
                            .into(),
                    );
                }
                _ => {}
            }
        }
        let tls = match (&uri.scheme, ca_file) {
            (AMQPScheme::AMQP, None) => None,
            (AMQPScheme::AMQP, Some(_)) => {
                return refuse(
                    "`cacertfile` is set but the URL is amqp:// (plaintext): use amqps:// and \
                     the broker's TLS port (usually 5671)"
                        .into(),
                );
            }
            (AMQPScheme::AMQPS, Some(file)) => Some(TrustRoots::File(file)),
            (AMQPScheme::AMQPS, None) => Some(TrustRoots::Platform),
        };
        Ok(Self { uri, tls })
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Builds the TLS configuration once (reading the CA file or the platform's roots), so a
    /// service refuses to start on what it could never connect with.
    pub fn check(&self) -> Result<(), TlsError> {
        self.connector().map(drop)
    }

    fn connector(&self) -> Result<Option<RustlsConnector>, TlsError> {
        self.tls
            .as_ref()
            .map(|roots| {
                let config = tls::client_config(&Verification::Full(roots.clone()))?;
                Ok(RustlsConnector::from(Arc::new(config)))
            })
            .transpose()
    }

    /// Opens the connection: TCP, then (for `amqps://`) the TLS handshake with verification,
    /// then AMQP.
    pub async fn connect(&self, properties: ConnectionProperties) -> lapin::Result<Connection> {
        let connector = self
            .connector()
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err.to_string()))?;
        let runtime = lapin::runtime::default_runtime()?;
        Connection::connector(
            self.uri.clone(),
            runtime,
            async move |uri, runtime| {
                let host = uri.authority.host.clone();
                let port = uri.authority.port;
                let addresses: Vec<_> = tokio::net::lookup_host((host.as_str(), port))
                    .await?
                    .collect();
                let stream = AsyncTcpStream::connect(&runtime, addresses).await?;
                match &connector {
                    None => Ok(stream),
                    Some(connector) => stream.into_rustls(connector, &host).await.map_err(|err| {
                        io::Error::new(
                            err.kind(),
                            format!(
                                "TLS handshake with {host}:{port} failed: {err} (amqps:// \
                                     needs the broker's TLS listener, usually port 5671)"
                            ),
                        )
                        .into()
                    }),
                }
            },
            properties,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(url: &str) -> String {
        Endpoint::parse(url).expect_err(url).to_string()
    }

    #[test]
    fn amqps_means_tls_with_the_platform_roots_unless_a_ca_file_is_named() {
        let plain = Endpoint::parse("amqp://guest:guest@127.0.0.1:5672/%2f").expect("valid");
        assert!(!plain.is_tls());
        let public = Endpoint::parse("amqps://u:p@broker.example.com/vh").expect("valid");
        assert_eq!(public.tls, Some(TrustRoots::Platform));
        assert_eq!(public.uri.authority.port, 5671, "the TLS port by default");
        let private =
            Endpoint::parse("amqps://u:p@rabbit.internal:5671/%2f?cacertfile=%2Fetc%2Fca%20x.pem")
                .expect("valid");
        assert_eq!(
            private.tls,
            Some(TrustRoots::File("/etc/ca x.pem".into())),
            "percent-decoded"
        );
        Endpoint::parse("amqps://h/%2f?verify=verify_peer&heartbeat=10").expect("valid");
    }

    #[test]
    fn what_cannot_be_done_securely_is_refused_with_the_reason() {
        assert!(
            refusal("amqp://h/%2f?cacertfile=/ca.pem").contains("use amqps://"),
            "plaintext with a CA file"
        );
        assert!(refusal("amqps://h/%2f?verify=verify_none").contains("cannot be turned off"));
        assert!(refusal("amqps://h/%2f?certfile=/c.pem").contains("client certificates"));
        assert!(refusal("amqps://h/%2f?server_name_indication=x").contains("not supported"));
        assert!(refusal("amqps://h/%2f?cacertfile=").contains("needs a file name"));
        let err = refusal("amqpx://user:s3cret@h/");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn debug_never_shows_the_password() {
        let endpoint = Endpoint::parse("amqps://user:s3cret@h/%2f").expect("valid");
        let text = format!("{endpoint:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("\"h\""), "{text}");
    }
}
