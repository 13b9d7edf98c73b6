//! TLS for the daemon's clients (IMAP, SMTP): the web PKI roots plus an optional private CA
//! file (`tls_ca_file`), with rustls on ring — one TLS stack for every connection.

use std::sync::Arc;

use tokio_rustls::rustls;

/// A client configuration trusting the web PKI and the certificates in `ca_file` (PEM).
pub fn client_config(ca_file: Option<&std::path::Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(f) = ca_file {
        for c in CertificateDer::pem_file_iter(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))? {
            roots
                .add(c.map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        }
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}
