//! HTTPS for the HTTP server: browsers give pages camera and microphone access only in a secure
//! context, which outside `localhost` means HTTPS.
//!
//! The certificate chain and key are PEM files (`http.tls_cert`, `http.tls_key`). SIGHUP reads
//! them again, so a renewed certificate (e.g. by certbot) takes effect without dropping a
//! lesson; if the new files are unreadable or do not match, the server keeps the old ones and
//! says why in the log.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the certificate chain and its key are read from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first (`http.tls_cert`).
    pub cert: PathBuf,
    /// PEM private key, PKCS#8, PKCS#1 or SEC1 (`http.tls_key`).
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads both files and builds the TLS settings: TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1.
    pub fn load(&self) -> anyhow::Result<Arc<ServerConfig>> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .with_context(|| format!("http.tls_cert: cannot read a PEM certificate chain from {}", self.cert.display()))?;
        if certs.is_empty() {
            anyhow::bail!("http.tls_cert: {} holds no certificate", self.cert.display());
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .with_context(|| format!("http.tls_key: cannot read a PEM private key from {}", self.key.display()))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS: no protocol version available")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("http.tls_key: the key does not belong to the certificate, or is not supported")?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The first load, for the server to start with.
    pub fn start(&self) -> anyhow::Result<RustlsConfig> {
        Ok(RustlsConfig::from_config(self.load()?))
    }

    /// Reads the files again into the running server's settings; on failure the old ones stay.
    pub fn reload(&self, into: &RustlsConfig) -> anyhow::Result<()> {
        into.reload_from_config(self.load()?);
        Ok(())
    }
}

/// Reloads the certificate on every SIGHUP for as long as the server runs.
pub async fn reload_on_hangup(files: Option<TlsFiles>, live: Option<RustlsConfig>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; certificate reloads need a restart");
        return;
    };
    while hangups.recv().await.is_some() {
        match (&files, &live) {
            (Some(files), Some(live)) => match files.reload(live) {
                Ok(()) => tracing::info!(cert = %files.cert.display(), "SIGHUP: TLS certificate reloaded"),
                Err(e) => tracing::error!(error = format!("{e:#}"), "SIGHUP: keeping the old TLS certificate"),
            },
            _ => tracing::info!("SIGHUP: nothing to reload (TLS is off)"),
        }
    }
}
