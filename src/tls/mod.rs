//! TLS client configuration: one crypto provider (ring), webpki roots plus an optional
//! extra CA file, always verified; and the client stream of upstream connections
//! ([`stream::TlsClient`]).

pub mod stream;

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The CA file could not be read or held no certificate.
    #[error("cannot use CA file {path}: {cause}")]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        cause: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider every TLS user in tcvnc shares: ring, with AES-128-GCM offered
/// before AES-256-GCM (as browsers do: the same security level TLS 1.3 mandates, and
/// cheaper per byte), then ChaCha20-Poly1305.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.sort_by_key(|s| suite_rank(*s));
    Arc::new(p)
}

/// Preference of a cipher suite (lower first): TLS 1.3 before TLS 1.2, then AES-128-GCM,
/// AES-256-GCM, ChaCha20-Poly1305.
fn suite_rank(s: rustls::SupportedCipherSuite) -> (u8, u8) {
    let name = format!("{:?}", s.suite());
    let version = u8::from(s.tls13().is_none());
    let cipher = if name.contains("AES_128_GCM") {
        0
    } else if name.contains("AES_256_GCM") {
        1
    } else {
        2
    };
    (version, cipher)
}

/// Whether this CPU encrypts AES-GCM in hardware (AES and carry-less multiply
/// instructions), where it costs far less per byte than ChaCha20-Poly1305.
pub fn hardware_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Reads every PEM certificate from `path`.
///
/// # Errors
/// [`Error::CaFile`] when unreadable or empty.
pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let fail = |cause: String| Error::CaFile {
        path: path.display().to_string(),
        cause,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| fail(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(fail("no CERTIFICATE block in it".into()));
    }
    Ok(certs)
}

/// A client config trusting webpki roots plus the certificates in `extra_ca`.
///
/// # Errors
/// When the CA file is unusable.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, Error> {
    client_config_with(extra_ca, provider())
}

/// The same, offering AES-GCM suites only, when this CPU has hardware AES (`None`
/// otherwise). Console gateways that put ChaCha20-Poly1305 first in their own preference
/// (OpenSSL's "intermediate" settings do) would otherwise make tcvnc decrypt every byte of
/// the console with the slower cipher; a gateway that has no AES-GCM suite refuses this
/// offer before any byte of the URL is sent, and the dialer retries with every suite.
///
/// # Errors
/// When the CA file is unusable.
pub fn client_config_aes_only(
    extra_ca: Option<&Path>,
) -> Result<Option<Arc<rustls::ClientConfig>>, Error> {
    if !hardware_aes() {
        return Ok(None);
    }
    let mut p = (*provider()).clone();
    p.cipher_suites.retain(|s| suite_rank(*s).1 < 2);
    client_config_with(extra_ca, Arc::new(p)).map(Some)
}

fn client_config_with(
    extra_ca: Option<&Path>,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        for cert in read_certs(path)? {
            roots.add(cert).map_err(|e| Error::CaFile {
                path: path.display().to_string(),
                cause: e.to_string(),
            })?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
