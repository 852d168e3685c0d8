//! Optional TLS (rustls with the `ring` provider, via tokio-rustls).
//!
//! - Server: `--tls-cert FILE --tls-key FILE` (PEM; the certificate file may hold a chain).
//!   At startup the server logs the SHA-256 fingerprint of its certificate, for clients that
//!   pin it.
//! - Client: `--tls-ca FILE` trusts the CA(s) in that PEM file; `--tls-pin SHA256` trusts
//!   exactly the certificate with that fingerprint (hex, colons optional), whatever its name
//!   or issuer; `--tls` alone trusts the system's root certificates. The name checked against
//!   the certificate is the host of `--server`, or `--tls-server-name`.
//!
//! Every failure here is a configuration error (exit code 4) naming the file or flag to fix.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use subtle::ConstantTimeEq;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::config_error;

/// Server-side TLS settings from the command line.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ServerTlsArgs {
    /// Serve TLS with this PEM certificate (chain); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Client-side TLS settings from the command line.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClientTlsArgs {
    /// Use TLS, trusting the system's root certificates (implied by --tls-ca / --tls-pin).
    #[arg(long)]
    pub tls: bool,
    /// Use TLS, trusting the CA certificate(s) in this PEM file (e.g. the server's
    /// self-signed certificate).
    #[arg(long, value_name = "FILE", conflicts_with = "tls_pin")]
    pub tls_ca: Option<PathBuf>,
    /// Use TLS, trusting only the server certificate with this SHA-256 fingerprint (hex;
    /// the server logs it at startup).
    #[arg(long, value_name = "SHA256")]
    pub tls_pin: Option<String>,
    /// The name to verify the server certificate against [default: the host of --server].
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The hex SHA-256 fingerprint of a DER certificate.
pub fn fingerprint(cert: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn read_file(path: &Path, what: &str, flag: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        config_error(format!(
            "cannot read the {what} {} ({flag}): {e}; check the path and its permissions",
            path.display()
        ))
    })
}

fn load_certs(path: &Path, flag: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read_file(path, "certificate file", flag)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            config_error(format!(
                "{} ({flag}) is not a valid PEM certificate file: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(config_error(format!(
            "{} ({flag}) holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

/// A TLS acceptor and the fingerprint of its certificate.
#[derive(Clone)]
pub struct ServerTls {
    /// The acceptor.
    pub acceptor: TlsAcceptor,
    /// SHA-256 of the leaf certificate, hex.
    pub fingerprint: String,
}

impl ServerTls {
    /// Loads `--tls-cert` / `--tls-key`; `None` when TLS is off.
    pub fn from_args(args: &ServerTlsArgs) -> anyhow::Result<Option<ServerTls>> {
        let (Some(cert_path), Some(key_path)) = (&args.tls_cert, &args.tls_key) else {
            return Ok(None);
        };
        let certs = load_certs(cert_path, "--tls-cert")?;
        let key_pem = read_file(key_path, "private key", "--tls-key")?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            config_error(format!(
                "{} (--tls-key) holds no usable PEM private key: {e}",
                key_path.display()
            ))
        })?;
        let fingerprint = fingerprint(&certs[0]);
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(format!("TLS setup failed: {e}")))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                config_error(format!(
                    "--tls-cert {} and --tls-key {} cannot be used together: {e}; the key must \
                     belong to the certificate",
                    cert_path.display(),
                    key_path.display()
                ))
            })?;
        Ok(Some(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            fingerprint,
        }))
    }
}

/// A TLS connector and the name it verifies.
#[derive(Clone)]
pub struct ClientTls {
    /// The connector.
    pub connector: TlsConnector,
    /// The name sent as SNI and checked against the certificate.
    pub server_name: ServerName<'static>,
}

/// The host part of `host:port` / `[v6]:port`.
fn host_of(addr: &str) -> &str {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => addr,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

impl ClientTls {
    /// Builds the client TLS settings for connecting to `server`; `None` when TLS is off.
    pub fn from_args(args: &ClientTlsArgs, server: &str) -> anyhow::Result<Option<ClientTls>> {
        if !args.tls && args.tls_ca.is_none() && args.tls_pin.is_none() {
            if args.tls_server_name.is_some() {
                return Err(config_error(
                    "--tls-server-name needs TLS: add --tls, --tls-ca FILE or --tls-pin SHA256",
                ));
            }
            return Ok(None);
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(format!("TLS setup failed: {e}")))?;
        let config = if let Some(pin) = &args.tls_pin {
            let pinned = parse_pin(pin)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedCert {
                    fingerprint: pinned,
                    provider: provider(),
                }))
                .with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            if let Some(ca) = &args.tls_ca {
                for cert in load_certs(ca, "--tls-ca")? {
                    roots.add(cert).map_err(|e| {
                        config_error(format!(
                            "{} (--tls-ca) holds a certificate rustls cannot use as a trust \
                             anchor: {e}",
                            ca.display()
                        ))
                    })?;
                }
            } else {
                let found = rustls_native_certs::load_native_certs();
                let (added, _ignored) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(config_error(
                        "--tls: no system root certificates found to verify the TLS server; pass the server's CA with \
                         --tls-ca FILE or pin its certificate with --tls-pin SHA256",
                    ));
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        let name = args
            .tls_server_name
            .clone()
            .unwrap_or_else(|| host_of(server).to_owned());
        let server_name = match name.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(name.clone()).map_err(|e| {
                config_error(format!(
                    "{name:?} is not a valid TLS server name ({e}); set --tls-server-name"
                ))
            })?,
        };
        Ok(Some(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        }))
    }
}

fn parse_pin(pin: &str) -> anyhow::Result<[u8; 32]> {
    let hex: String = pin
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect::<String>()
        .to_ascii_lowercase();
    let hex = hex.strip_prefix("sha256/").unwrap_or(&hex);
    let bad = || {
        config_error(format!(
            "--tls-pin {pin:?} is not a SHA-256 fingerprint: expected 64 hex digits (colons \
             allowed), as logged by the server at startup"
        ))
    };
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Trusts exactly one certificate, by fingerprint; signatures are still verified, so the
/// server must hold the certificate's key.
#[derive(Debug)]
struct PinnedCert {
    fingerprint: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = ring::digest::digest(&ring::digest::SHA256, end_entity);
        if bool::from(got.as_ref().ct_eq(&self.fingerprint)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server certificate's SHA-256 fingerprint is {}, not the pinned one (--tls-pin)",
                fingerprint(end_entity)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Whether an I/O error from a TLS handshake is a TLS-level failure (certificate, protocol)
/// rather than a network one.
pub fn is_tls_failure(err: &std::io::Error) -> bool {
    err.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        || err.kind() == std::io::ErrorKind::InvalidData
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_pins_parse() {
        assert_eq!(host_of("example.com:443"), "example.com");
        assert_eq!(host_of("[::1]:7000"), "::1");
        assert_eq!(host_of("127.0.0.1:1"), "127.0.0.1");
        let hex = "AB:".repeat(31) + "AB";
        assert_eq!(parse_pin(&hex).expect("valid"), [0xab; 32]);
        assert!(parse_pin("abc").is_err());
        assert!(parse_pin(&"zz".repeat(32)).is_err());
    }
}
