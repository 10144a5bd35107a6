//! Where the central database is and how to reach it: a libpq-style connection URL, the TLS
//! mode, and where the password comes from.
//!
//! The URL is what operators already know from `psql`: `postgresql://USER@HOST:PORT/DB?sslmode=...`.
//! The parts the Rust client does not read itself are taken out here and honoured the way
//! libpq does, so one URL works for `psql` and for Imprint:
//! - `sslmode` `disable | prefer | require | verify-ca | verify-full` (default `prefer`; also
//!   `PGSSLMODE`), `sslrootcert=PATH` (also `PGSSLROOTCERT`). `require` with a root
//!   certificate verifies like `verify-ca`, as libpq does;
//! - the password: in the URL (discouraged: it shows in process lists and shell history), else
//!   `PGPASSWORD`, else a password file (`passfile=PATH` in the URL, `PGPASSFILE`, or
//!   `~/.pgpass`) in libpq's format, which must not be readable by group or others.
//!
//! The password never appears in an error, a log line or `Debug` output: everything prints the
//! redacted target `USER@HOST:PORT/DB`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use postgres::config::{Host, SslMode as ClientSslMode};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::CentralError;
use super::preflight::{ConnectFailure, is_passing};

/// How long a connection attempt may take before the station treats the database as offline.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long sent data may stay unacknowledged before the connection is declared dead, so a
/// pulled cable is noticed in seconds rather than at the TCP default of many minutes.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(15);

/// The libpq TLS modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, plain otherwise; the certificate is not checked.
    Prefer,
    /// TLS or fail; the certificate is not checked (unless a root certificate is given).
    Require,
    /// TLS, and the certificate must chain to the root certificate.
    VerifyCa,
    /// TLS, the certificate must chain to the root certificate and name the host.
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// Where the password came from (for messages; never the password itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    None,
    Url,
    Environment,
    PasswordFile(PathBuf),
}

/// A checked central database configuration, ready to connect.
#[derive(Clone)]
pub struct CentralConfig {
    client_config: postgres::Config,
    ssl_mode: SslMode,
    root_certificate: Option<PathBuf>,
    password_source: PasswordSource,
    target: String,
}

impl fmt::Debug for CentralConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No password, whatever `postgres::Config`'s own Debug would print.
        formatter
            .debug_struct("CentralConfig")
            .field("target", &self.target)
            .field("ssl_mode", &self.ssl_mode)
            .field("root_certificate", &self.root_certificate)
            .field("password_source", &self.password_source)
            .finish()
    }
}

/// The environment variables the configuration reads, looked up through a function so tests
/// can supply their own.
pub type Environment<'a> = &'a dyn Fn(&str) -> Option<String>;

fn process_environment(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

impl CentralConfig {
    /// Parses a connection URL, reading `PGPASSWORD`, `PGPASSFILE`, `PGSSLMODE`,
    /// `PGSSLROOTCERT`, `USER` and `HOME` from the process environment.
    pub fn from_url(url: &str) -> Result<CentralConfig, CentralError> {
        CentralConfig::from_url_with_environment(url, &process_environment)
    }

    /// [`CentralConfig::from_url`] with an explicit environment.
    pub fn from_url_with_environment(
        url: &str,
        environment: Environment<'_>,
    ) -> Result<CentralConfig, CentralError> {
        let redacted_url = redact_url(url);
        let invalid = |reason: String| CentralError::InvalidUrl { url: redacted_url.clone(), reason };
        if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
            return Err(invalid("expected postgresql://USER@HOST:PORT/DATABASE[?sslmode=...]".to_owned()));
        }
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, query),
            None => (url, ""),
        };
        let mut kept_parameters = Vec::new();
        let mut ssl_mode_text = None;
        let mut root_certificate = None;
        let mut password_file = None;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = percent_decode(value).ok_or_else(|| invalid(format!("bad %-escape in {key}")))?;
            match key {
                "sslmode" => ssl_mode_text = Some(decoded),
                "sslrootcert" => root_certificate = Some(PathBuf::from(decoded)),
                "passfile" => password_file = Some(PathBuf::from(decoded)),
                _ => kept_parameters.push(pair),
            }
        }
        let rebuilt = if kept_parameters.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept_parameters.join("&"))
        };
        let mut client_config =
            postgres::Config::from_str(&rebuilt).map_err(|error| invalid(error.to_string()))?;

        let ssl_mode_text = ssl_mode_text.or_else(|| environment("PGSSLMODE"));
        let ssl_mode = match &ssl_mode_text {
            None => SslMode::Prefer,
            Some(text) => SslMode::parse(text).ok_or_else(|| {
                invalid(format!(
                    "sslmode {text:?}: expected disable, prefer, require, verify-ca or verify-full"
                ))
            })?,
        };
        let root_certificate = root_certificate.or_else(|| environment("PGSSLROOTCERT").map(PathBuf::from));
        if matches!(ssl_mode, SslMode::VerifyCa | SslMode::VerifyFull) && root_certificate.is_none() {
            return Err(CentralError::RootCertificateMissing { ssl_mode: ssl_mode.as_str() });
        }
        client_config.ssl_mode(match ssl_mode {
            SslMode::Disable => ClientSslMode::Disable,
            SslMode::Prefer => ClientSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => ClientSslMode::Require,
        });
        if client_config.get_user().is_none() {
            let user = environment("USER").ok_or_else(|| {
                invalid("no user: give postgresql://USER@HOST/DATABASE (or set USER)".to_owned())
            })?;
            client_config.user(&user);
        }
        if client_config.get_hosts().is_empty() {
            return Err(invalid("no host: give postgresql://USER@HOST:PORT/DATABASE".to_owned()));
        }
        if client_config.get_connect_timeout().is_none() {
            client_config.connect_timeout(CONNECT_TIMEOUT);
        }
        if client_config.get_tcp_user_timeout().is_none() {
            client_config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        client_config.keepalives(true);
        client_config.application_name("imprint");

        let host = match client_config.get_hosts().first() {
            Some(Host::Tcp(name)) => name.clone(),
            // libpq matches a socket connection against `localhost` in the password file.
            Some(Host::Unix(_)) | None => "localhost".to_owned(),
        };
        let port = client_config.get_ports().first().copied().unwrap_or(5432);
        let user = client_config.get_user().unwrap_or_default().to_owned();
        let database = client_config.get_dbname().unwrap_or(&user).to_owned();
        let target = format!("{user}@{host}:{port}/{database}");

        let password_source = if client_config.get_password().is_some() {
            tracing::warn!(
                target = %target,
                "the central database URL holds a password; prefer PGPASSWORD or a password file (docs/central.md)"
            );
            PasswordSource::Url
        } else if let Some(password) = environment("PGPASSWORD") {
            client_config.password(password.as_bytes());
            PasswordSource::Environment
        } else {
            let path = password_file
                .or_else(|| environment("PGPASSFILE").map(PathBuf::from))
                .or_else(|| environment("HOME").map(|home| Path::new(&home).join(".pgpass")));
            match path {
                Some(path) if path.exists() => {
                    match read_password_file(&path, &host, port, &database, &user)? {
                        Some(password) => {
                            client_config.password(password.as_bytes());
                            PasswordSource::PasswordFile(path)
                        }
                        None => PasswordSource::None,
                    }
                }
                _ => PasswordSource::None,
            }
        };
        Ok(CentralConfig { client_config, ssl_mode, root_certificate, password_source, target })
    }

    /// `USER@HOST:PORT/DATABASE`: the target without any secret, for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    pub fn password_source(&self) -> &PasswordSource {
        &self.password_source
    }

    /// Opens a connection (TLS as configured). Fails within [`CONNECT_TIMEOUT`] when the
    /// server cannot be reached.
    pub fn connect(&self) -> Result<postgres::Client, CentralError> {
        self.connect_classified().map_err(|failure| match failure {
            ConnectFailure::Passing(error) | ConnectFailure::Permanent(error) => error,
        })
    }

    /// [`CentralConfig::connect`], with the failure sorted into passing (the network or the
    /// server is away) and permanent (the server will keep refusing this station).
    pub(crate) fn connect_classified(&self) -> Result<postgres::Client, ConnectFailure> {
        let connect_error = |error: postgres::Error| {
            let text = super::error_text(&error);
            let hint = if text.contains("no encryption") {
                " (the server accepts only TLS connections: use sslmode=require, verify-ca or verify-full)"
            } else if text.contains("password authentication failed") {
                " (check PGPASSWORD or the password file, docs/central.md)"
            } else if text.contains("password missing") {
                " (the server wants a password: set PGPASSWORD or use a password file, docs/central.md)"
            } else if text.contains("server does not support TLS") {
                " (the server has ssl = off: use sslmode=disable or prefer, or turn TLS on at the server)"
            } else {
                ""
            };
            let central_error = CentralError::Connect {
                target: self.target.clone(),
                ssl_mode: self.ssl_mode.as_str(),
                cause: text,
                hint,
            };
            if is_passing(&error) {
                ConnectFailure::Passing(central_error)
            } else {
                ConnectFailure::Permanent(central_error)
            }
        };
        match self.ssl_mode {
            SslMode::Disable => self.client_config.connect(postgres::NoTls).map_err(connect_error),
            _ => {
                let tls_config = self.tls_config().map_err(ConnectFailure::Permanent)?;
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config);
                self.client_config.connect(tls).map_err(connect_error)
            }
        }
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, CentralError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls_error = |source| CentralError::Tls { source };
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?;
        let roots = match &self.root_certificate {
            Some(path) => Some(load_roots(path)?),
            None => None,
        };
        let config = match (self.ssl_mode, roots) {
            (SslMode::VerifyFull, Some(roots)) => builder.with_root_certificates(roots).with_no_client_auth(),
            (_, Some(roots)) => {
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|error| CentralError::RootCertificate {
                    path: self.root_certificate.clone().unwrap_or_default(),
                    reason: error.to_string(),
                })?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnlyVerifier { webpki }))
                    .with_no_client_auth()
            }
            (_, None) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(UncheckedCertificate { provider }))
                .with_no_client_auth(),
        };
        Ok(config)
    }
}

fn load_roots(path: &Path) -> Result<RootCertStore, CentralError> {
    let unreadable = |reason: String| CentralError::RootCertificate { path: path.to_owned(), reason };
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(path).map_err(|error| unreadable(error.to_string()))? {
        let certificate = certificate.map_err(|error| unreadable(error.to_string()))?;
        roots.add(certificate).map_err(|error| unreadable(error.to_string()))?;
    }
    if roots.is_empty() {
        return Err(unreadable("expected at least one PEM certificate, found none".to_owned()));
    }
    Ok(roots)
}

/// `verify-ca`: the certificate must chain to the root, whatever name it carries (libpq's
/// meaning; `verify-full` also checks the name).
#[derive(Debug)]
struct ChainOnlyVerifier {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `prefer`/`require` without a root certificate: encrypted, but the server is not
/// authenticated (libpq's meaning). The handshake signature is still checked, so the session
/// is bound to whatever certificate the server presented.
#[derive(Debug)]
struct UncheckedCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for UncheckedCertificate {
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
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The URL with any password replaced by `***`, for messages.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// Finds the password for the connection in a libpq password file
/// (`hostname:port:database:username:password`, `*` matching anything, `\:` and `\\`
/// escaped). Like libpq, a file that group or others can read is not trusted; unlike libpq,
/// which then ignores it with a warning, this is an error: a station must not silently run
/// without the password its operator set up.
fn read_password_file(
    path: &Path,
    host: &str,
    port: u16,
    database: &str,
    user: &str,
) -> Result<Option<String>, CentralError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = std::fs::metadata(path)
            .map_err(|source| CentralError::PasswordFileRead { path: path.to_owned(), source })?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CentralError::PasswordFilePermissions { path: path.to_owned(), mode });
        }
    }
    let text = std::fs::read_to_string(path)
        .map_err(|source| CentralError::PasswordFileRead { path: path.to_owned(), source })?;
    let port_text = port.to_string();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_password_line(line);
        if fields.len() != 5 {
            continue;
        }
        let matches = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        if matches(&fields[0], host)
            && matches(&fields[1], &port_text)
            && matches(&fields[2], database)
            && matches(&fields[3], user)
        {
            return Ok(Some(fields[4].clone()));
        }
    }
    Ok(None)
}

fn split_password_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut characters = line.chars();
    while let Some(character) = characters.next() {
        match character {
            '\\' => {
                if let Some(escaped) = characters.next()
                    && let Some(field) = fields.last_mut()
                {
                    field.push(escaped);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            other => {
                if let Some(field) = fields.last_mut() {
                    field.push(other);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, variables: &[(&str, &str)], expected: Result<(&str, SslMode, PasswordSource), &str>) {
        let environment =
            |name: &str| variables.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned());
        let parsed = CentralConfig::from_url_with_environment(url, &environment);
        match (parsed, expected) {
            (Ok(config), Ok((target, ssl_mode, source))) => {
                assert_eq!(config.target(), target, "{url}");
                assert_eq!(config.ssl_mode(), ssl_mode, "{url}");
                assert_eq!(config.password_source(), &source, "{url}");
                assert!(!format!("{config:?}").contains("secret"), "{url}: Debug shows the password");
            }
            (Err(error), Err(fragment)) => {
                let message = error.to_string();
                assert!(message.contains(fragment), "{url}: {message:?} lacks {fragment:?}");
                assert!(!message.contains("secret"), "{url}: error shows the password: {message}");
            }
            (outcome, expected) => panic!("{url}: got {outcome:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn check_urls() {
        check(
            "postgresql://imprint@db.example:6543/factory",
            &[],
            Ok(("imprint@db.example:6543/factory", SslMode::Prefer, PasswordSource::None)),
        );
        check(
            "postgres://imprint@db.example/factory?sslmode=require&connect_timeout=3",
            &[("PGPASSWORD", "secret")],
            Ok(("imprint@db.example:5432/factory", SslMode::Require, PasswordSource::Environment)),
        );
        check(
            "postgresql://imprint:secret@db.example/factory",
            &[],
            Ok(("imprint@db.example:5432/factory", SslMode::Prefer, PasswordSource::Url)),
        );
        check(
            "postgresql://imprint@db.example/factory?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
            &[],
            Ok(("imprint@db.example:5432/factory", SslMode::VerifyFull, PasswordSource::None)),
        );
        check(
            "postgresql://db.example/factory",
            &[("USER", "line3"), ("PGSSLMODE", "disable")],
            Ok(("line3@db.example:5432/factory", SslMode::Disable, PasswordSource::None)),
        );
        check(
            "postgresql://imprint@db.example/factory?sslmode=verify-ca",
            &[],
            Err("needs a root certificate"),
        );
        check("postgresql://imprint:secret@db.example/factory?sslmode=tight", &[], Err("sslmode \"tight\""));
        check("mysql://imprint:secret@db.example/factory", &[], Err("expected postgresql://"));
        check(
            "postgresql://imprint:secret@db.example/factory?bogus=1",
            &[],
            Err("invalid central database url"),
        );
    }

    #[test]
    fn check_password_files() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("pgpass");
        std::fs::write(
            &path,
            "# comment\nother:*:*:*:wrong\ndb.example:5432:factory:imprint:secret\\:with colon\n*:*:*:*:fallback\n",
        )
        .unwrap();
        let path_text = path.to_str().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            check("postgresql://imprint@db.example/factory", &[("PGPASSFILE", path_text)], Err("chmod 600"));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        check(
            "postgresql://imprint@db.example/factory",
            &[("PGPASSFILE", path_text)],
            Ok((
                "imprint@db.example:5432/factory",
                SslMode::Prefer,
                PasswordSource::PasswordFile(path.clone()),
            )),
        );
        assert_eq!(
            read_password_file(&path, "db.example", 5432, "factory", "imprint").unwrap().as_deref(),
            Some("secret:with colon")
        );
        assert_eq!(read_password_file(&path, "elsewhere", 1, "x", "y").unwrap().as_deref(), Some("fallback"));
        assert_eq!(redact_url("postgresql://u:secret@h:1/d?x=y"), "postgresql://u:***@h:1/d?x=y");
    }
}
