//! TLS with rustls (ring): what the handshake settled. The acceptor
//! (h2 and HTTP/1.1 by ALPN, optional mTLS) is realip-net's, shared with
//! the lb.

use tokio_rustls::rustls::ServerConnection;

use crate::render::TlsInfo;

pub(crate) use realip_net::tls::acceptor;

/// What the handshake settled.
pub(crate) fn info(conn: &ServerConnection) -> TlsInfo {
    let client_subject = conn.peer_certificates().and_then(|certs| {
        let der = certs.first()?;
        x509_parser::parse_x509_certificate(der.as_ref())
            .ok()
            .map(|(_, cert)| cert.subject().to_string())
    });
    TlsInfo {
        alpn: conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        version: conn.protocol_version().map(|v| format!("{v:?}")),
        client_subject,
    }
}
