//! A shop's `admin_base_url`: `http(s)://host[:port]`, read with the `url` crate, https except on
//! loopback.
//!
//! The `url` crate parses as browsers do (WHATWG), which repairs what it can: it drops tabs,
//! line breaks and surrounding spaces, reads a backslash as a slash and `https:acme` as
//! `https://acme`. A configuration should say what it means, so any such repair refuses the
//! value, with the crate's description of it.

use std::cell::Cell;

use url::{Host, ParseError, SyntaxViolation, Url};

use crate::validate::quote_untrusted;

/// Checks `http(s)://host[:port]` (an optional single trailing slash is dropped) and returns it
/// normalised, without a trailing slash: `https://acme.myshopify.com`, `http://127.0.0.1:9470`
/// (scheme and host lowercase, a default port left out). Paths, queries, fragments and
/// credentials are refused: the services append `/admin/api/...` themselves, and secrets only
/// ever come from the environment. Plain `http` only reaches loopback (the sandbox): the access
/// token travels in a header.
pub(super) fn normalize_admin_base_url(text: &str) -> Result<String, String> {
    let refuse = |why: &str| {
        Err(format!(
            "must be http(s)://host[:port] {why}, got {}",
            quote_untrusted(text)
        ))
    };
    let repaired = Cell::new(None);
    // Also set for an empty user information (`https://@host`), which `url` drops.
    let credentials = Cell::new(false);
    let on_violation = |violation: SyntaxViolation| {
        if violation == SyntaxViolation::EmbeddedCredentials {
            credentials.set(true);
        } else if repaired.get().is_none() {
            repaired.set(Some(violation));
        }
    };
    let url = match Url::options()
        .syntax_violation_callback(Some(&on_violation))
        .parse(text)
    {
        Ok(url) => url,
        Err(err) => return refuse(parse_error_reason(err)),
    };
    if !matches!(url.scheme(), "http" | "https") {
        // `localhost:8080` parses as the scheme `localhost`.
        return refuse(if text.contains("://") {
            "(scheme must be http or https)"
        } else {
            "(missing scheme)"
        });
    }
    // `url` gives an http(s) URL the path `/` when it has none.
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return refuse("with no path, query or fragment");
    }
    if credentials.get() || !url.username().is_empty() || url.password().is_some() {
        return refuse("with no credentials");
    }
    if let Some(violation) = repaired.get() {
        return refuse(&format!("({})", violation.description()));
    }
    let Some(host) = url.host() else {
        return refuse("(invalid host)");
    };
    // WHATWG hosts may hold `_`, `~` and more; a DNS host name holds letters, digits, `-`, `.`.
    if let Host::Domain(name) = host
        && !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return refuse("(invalid host)");
    }
    // `url` reads `host:` as the scheme's default port; here it is more likely a port left out
    // (a template variable that expanded to nothing), so it is refused like port 0.
    let empty_port = text.strip_suffix('/').unwrap_or(text).ends_with(':');
    if empty_port || url.port() == Some(0) {
        return refuse("(invalid port)");
    }
    if url.scheme() == "http" && !is_loopback(&host) {
        return refuse(
            "with https:// except on loopback (the access token must not travel in plaintext)",
        );
    }
    Ok(url.origin().ascii_serialization())
}

/// Why `url` could not parse the value, in the words of the rule it breaks.
fn parse_error_reason(err: ParseError) -> &'static str {
    match err {
        ParseError::RelativeUrlWithoutBase => "(missing scheme)",
        ParseError::EmptyHost
        | ParseError::InvalidDomainCharacter
        | ParseError::IdnaError
        | ParseError::InvalidIpv4Address => "(invalid host)",
        ParseError::InvalidIpv6Address => "(invalid IPv6 address)",
        ParseError::InvalidPort => "(invalid port)",
        _ => "(not a URL)",
    }
}

/// `localhost`, `127.0.0.0/8` or `::1`: the machine itself.
fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}
