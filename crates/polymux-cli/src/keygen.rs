//! `polymux keygen` (a Noise static key pair) and `polymux cert` (a self-signed TLS server
//! certificate and its key).
//!
//! Both print exactly one line on stdout — the value clients pin (`--noise-pin`, `--tls-pin`)
//! — so that scripts can capture it (`PIN=$(polymux keygen --out server.key)`); what was
//! written and how to use it goes to stderr. Neither overwrites an existing file without
//! `--force`, and private keys are created with mode 0600 (on Unix).
//!
//! The certificate is an end-entity certificate (CA:FALSE, key usage digitalSignature,
//! extended key usage serverAuth) with every `--name` as a subjectAltName, so rustls accepts
//! it both as the trust anchor given to `--tls-ca` and by fingerprint with `--tls-pin`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::error::config_error;
use crate::noise;

/// `polymux keygen`.
#[derive(clap::Args, Clone, Debug)]
#[command(after_help = concat!(
    "Example:\n",
    "  polymux keygen --out server.key        # prints the public key\n",
    "  polymux tunnel server --noise-key server.key ...\n",
    "  polymux tunnel client --noise-pin <the printed key> ...\n\n",
    crate::error::exit_codes_help!()
))]
pub struct KeygenArgs {
    /// Where to write the private key (the public key goes to FILE.pub).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// `polymux cert`.
#[derive(clap::Args, Clone, Debug)]
#[command(after_help = concat!(
    "Example:\n",
    "  polymux cert --name tunnel.example.com      # prints the SHA-256 pin\n",
    "  polymux tunnel server --tls-cert cert.pem --tls-key key.pem ...\n",
    "  polymux tunnel client --tls-ca cert.pem ...   # or --tls-pin <the printed pin>\n\n",
    crate::error::exit_codes_help!()
))]
pub struct CertArgs {
    /// Where to write the PEM certificate.
    #[arg(long, value_name = "FILE", default_value = "cert.pem")]
    pub cert: PathBuf,
    /// Where to write the PEM private key (PKCS#8, ECDSA P-256).
    #[arg(long, value_name = "FILE", default_value = "key.pem")]
    pub key: PathBuf,
    /// A DNS name or IP address clients use to reach the server (subjectAltName); repeatable
    /// or comma-separated. The first is also the subject's common name.
    #[arg(
        long = "name",
        value_name = "NAME",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1"
    )]
    pub names: Vec<String>,
    /// Validity in days, from now.
    #[arg(long, value_name = "DAYS", default_value_t = 3650)]
    pub days: u32,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// Runs `polymux keygen`.
pub fn run_keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let mut public_path = args.out.clone().into_os_string();
    public_path.push(".pub");
    let public_path = PathBuf::from(public_path);
    for path in [&args.out, &public_path] {
        refuse_overwrite(path, args.force)?;
    }
    let (private, public) = noise::generate()?;
    let public = noise::hex(&public);
    write_file(
        &args.out,
        format!(
            "# polymux Noise private key ({}); keep it secret. Public key: {public}\n{}\n",
            noise::PATTERN,
            noise::hex(&private)
        )
        .as_bytes(),
        true,
    )?;
    write_file(&public_path, format!("{public}\n").as_bytes(), false)?;
    eprintln!(
        "wrote the private key to {} and the public key to {}.\n\
         server: --noise-key {}\n\
         client: --noise-pin {public}",
        args.out.display(),
        public_path.display(),
        args.out.display()
    );
    println!("{public}");
    Ok(())
}

/// Runs `polymux cert`.
pub fn run_cert(args: &CertArgs) -> anyhow::Result<()> {
    if args.names.is_empty() {
        return Err(config_error(
            "--name: give at least one DNS name or IP address",
        ));
    }
    if args.days == 0 {
        return Err(config_error("--days must be at least 1"));
    }
    for path in [&args.cert, &args.key] {
        refuse_overwrite(path, args.force)?;
    }
    let mut params = rcgen::CertificateParams::new(args.names.clone()).map_err(|e| {
        config_error(format!(
            "--name {}: {e}; use DNS names (e.g. tunnel.example.com) or IP addresses",
            args.names.join(",")
        ))
    })?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, args.names[0].clone());
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    // A day of slack before now, for clocks that lag behind this one.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(i64::from(args.days));
    let key = rcgen::KeyPair::generate().context("generating the key pair")?;
    let cert = params
        .self_signed(&key)
        .context("signing the certificate")?;
    let pin = crate::tls::fingerprint(cert.der());
    write_file(&args.key, key.serialize_pem().as_bytes(), true)?;
    write_file(&args.cert, cert.pem().as_bytes(), false)?;
    eprintln!(
        "wrote a self-signed server certificate for {} (valid {} days) to {} and its private \
         key to {}.\n\
         server: --tls-cert {} --tls-key {}\n\
         client: --tls-ca {}   or   --tls-pin {pin}",
        args.names.join(", "),
        args.days,
        args.cert.display(),
        args.key.display(),
        args.cert.display(),
        args.key.display(),
        args.cert.display(),
    );
    println!("{pin}");
    Ok(())
}

fn refuse_overwrite(path: &Path, force: bool) -> anyhow::Result<()> {
    if !force && path.exists() {
        return Err(config_error(format!(
            "{} exists; pass --force to overwrite it",
            path.display()
        )));
    }
    Ok(())
}

/// Writes `data` to `path`; a secret gets mode 0600 from the start (never readable by others,
/// not even briefly).
fn write_file(path: &Path, data: &[u8], secret: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options
        .open(path)
        .map_err(|e| config_error(format!("cannot write {}: {e}", path.display())))?;
    #[cfg(unix)]
    if secret {
        // An existing file (--force) keeps its mode on open; tighten it.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| config_error(format!("cannot chmod 600 {}: {e}", path.display())))?;
    }
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(|e| config_error(format!("cannot write {}: {e}", path.display())))
}
