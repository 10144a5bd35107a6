//! Naming a key in a PKCS#11 token without opening it: RFC 7512 `pkcs11:` URIs, where the PIN
//! comes from ([`PinSource`]), and the key configuration ([`Pkcs11KeyConfig`]) profiles and
//! commands carry. Pure: parsing and printing only, no token is touched.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::Pkcs11Error;

/// The scheme prefix of an RFC 7512 PKCS#11 URI.
pub const PKCS11_URI_SCHEME: &str = "pkcs11:";

/// Length of the random `CKA_ID` given to generated keys when the caller names none.
pub(super) const GENERATED_KEY_ID_SIZE_BYTES: usize = 8;

/// Whether `text` is a `pkcs11:` URI rather than a file path.
pub fn is_pkcs11_uri(text: &str) -> bool {
    text.trim_start()
        .get(..PKCS11_URI_SCHEME.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("pkcs11:"))
}

/// Where the token's user PIN comes from. Never the PIN itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// An environment variable holding the PIN (`env:IMPRINT_PIN`): the station's service
    /// manager or the operator's shell provides it.
    Environment { variable: String },
    /// A file holding the PIN (`file:/run/credentials/imprint/pin`), trailing newline ignored.
    File { path: PathBuf },
    /// Ask on the terminal without echo (`prompt`); the default when no source is given.
    Prompt,
}

impl PinSource {
    /// Parses `env:VARIABLE`, `file:PATH` or `prompt`.
    pub fn parse(text: &str) -> Result<PinSource, Pkcs11Error> {
        let invalid = |reason: &str| Pkcs11Error::PinSourceSyntax {
            found: text.to_string(),
            reason: reason.to_string(),
        };
        if text == "prompt" {
            return Ok(PinSource::Prompt);
        }
        if let Some(variable) = text.strip_prefix("env:") {
            let well_formed = !variable.is_empty()
                && variable.chars().all(|character| character.is_ascii_alphanumeric() || character == '_');
            if !well_formed {
                return Err(invalid("expected an environment variable name (letters, digits, _) after env:"));
            }
            return Ok(PinSource::Environment { variable: variable.to_string() });
        }
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err(invalid("expected a file path after file:"));
            }
            return Ok(PinSource::File { path: PathBuf::from(path) });
        }
        Err(invalid("expected env:VARIABLE, file:PATH or prompt"))
    }

    /// The form [`PinSource::parse`] reads.
    pub fn as_text(&self) -> String {
        match self {
            PinSource::Environment { variable } => format!("env:{variable}"),
            PinSource::File { path } => format!("file:{}", path.display()),
            PinSource::Prompt => "prompt".to_string(),
        }
    }
}

/// Which PKCS#11 key to use (or, for [`Pkcs11Signer::generate`], to create) and how to log in.
///
/// Holds no secret: the PIN is read from `pin_source` when the token is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11KeyConfig {
    /// The token vendor's PKCS#11 module (a shared library).
    pub module_path: PathBuf,
    /// The token's label (`CKA_LABEL` of the token, `token=` in a URI).
    pub token_label: String,
    /// The token's serial number, when several tokens share a label (`serial=`).
    pub token_serial: Option<String>,
    /// The key's label (`object=`).
    pub key_label: Option<String>,
    /// The key's `CKA_ID` (`id=`, percent-encoded bytes in a URI).
    pub key_id: Option<Vec<u8>>,
    /// Where the user PIN comes from.
    pub pin_source: PinSource,
}

impl Pkcs11KeyConfig {
    /// Parses an RFC 7512 URI such as
    /// `pkcs11:token=line-1;object=update-signing;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:IMPRINT_PIN`.
    ///
    /// Path attributes: `token` (required), `serial`, `object`, `id`, `type` (only `private`).
    /// Query attributes: `module-path` (required), `pin-source` (`env:VAR`, `file:PATH` or
    /// `prompt`, the default). `pin-value` is refused: a PIN written into a profile or a command
    /// line ends up in version control and process listings.
    pub fn from_uri(uri: &str) -> Result<Pkcs11KeyConfig, Pkcs11Error> {
        let shown = redact_uri(uri);
        let invalid = |reason: String| Pkcs11Error::Uri { uri: shown.clone(), reason };
        let trimmed = uri.trim();
        if !is_pkcs11_uri(trimmed) {
            return Err(invalid("it does not start with pkcs11:".to_string()));
        }
        let rest = &trimmed[PKCS11_URI_SCHEME.len()..];
        let (path_part, query_part) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        let mut path_attributes = BTreeMap::new();
        for attribute in path_part.split(';').filter(|attribute| !attribute.is_empty()) {
            let (name, value) = attribute
                .split_once('=')
                .ok_or_else(|| invalid(format!("path attribute {attribute:?} has no '='")))?;
            if is_pin_value(name) {
                return Err(invalid(PIN_VALUE_REFUSED.to_string()));
            }
            let value = percent_decode(value).map_err(|reason| invalid(format!("{name}: {reason}")))?;
            if path_attributes.insert(name.to_ascii_lowercase(), value).is_some() {
                return Err(invalid(format!("attribute {name} appears twice")));
            }
        }
        let mut query_attributes = BTreeMap::new();
        for attribute in query_part.unwrap_or_default().split('&').filter(|attribute| !attribute.is_empty()) {
            let (name, value) = attribute
                .split_once('=')
                .ok_or_else(|| invalid(format!("query attribute {attribute:?} has no '='")))?;
            let name = name.to_ascii_lowercase();
            if is_pin_value(&name) {
                return Err(invalid(PIN_VALUE_REFUSED.to_string()));
            }
            let value = percent_decode(value).map_err(|reason| invalid(format!("{name}: {reason}")))?;
            if query_attributes.insert(name.clone(), value).is_some() {
                return Err(invalid(format!("attribute {name} appears twice")));
            }
        }
        let text = |bytes: Vec<u8>, name: &str| {
            String::from_utf8(bytes)
                .map_err(|_| invalid(format!("{name} is not UTF-8 text after percent-decoding")))
        };
        let mut config = Pkcs11KeyConfig {
            module_path: PathBuf::new(),
            token_label: String::new(),
            token_serial: None,
            key_label: None,
            key_id: None,
            pin_source: PinSource::Prompt,
        };
        for (name, value) in path_attributes {
            match name.as_str() {
                "token" => config.token_label = text(value, "token")?,
                "serial" => config.token_serial = Some(text(value, "serial")?),
                "object" => config.key_label = Some(text(value, "object")?),
                "id" => config.key_id = Some(value),
                "type" => {
                    let object_type = text(value, "type")?;
                    if object_type != "private" {
                        return Err(invalid(format!(
                            "type={object_type}: expected type=private (the signing key itself)"
                        )));
                    }
                }
                other => {
                    return Err(invalid(format!(
                        "unsupported path attribute {other}; expected token, serial, object, id or type"
                    )));
                }
            }
        }
        for (name, value) in query_attributes {
            match name.as_str() {
                "module-path" => config.module_path = PathBuf::from(text(value, "module-path")?),
                "pin-source" => config.pin_source = PinSource::parse(&text(value, "pin-source")?)?,
                "module-name" => {
                    return Err(invalid(
                        "module-name is not supported; give the module's file with module-path=".to_string(),
                    ));
                }
                other => {
                    return Err(invalid(format!(
                        "unsupported query attribute {other}; expected module-path or pin-source"
                    )));
                }
            }
        }
        if config.token_label.is_empty() {
            return Err(invalid("token= is missing (the label of the token holding the key)".to_string()));
        }
        if config.module_path.as_os_str().is_empty() {
            return Err(invalid(
                "module-path= is missing (the token vendor's PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so)"
                    .to_string(),
            ));
        }
        Ok(config)
    }

    /// The RFC 7512 URI naming this key (module path and PIN source in the query; no PIN).
    pub fn to_uri(&self) -> String {
        let mut uri = format!("{}{}", self.path_uri(), "?module-path=");
        uri.push_str(&percent_encode(self.module_path.to_string_lossy().as_bytes(), QUERY_SAFE));
        if self.pin_source != PinSource::Prompt {
            uri.push_str("&pin-source=");
            uri.push_str(&percent_encode(self.pin_source.as_text().as_bytes(), QUERY_SAFE));
        }
        uri
    }

    /// The path part of the URI (token and key, no module or PIN source): a short name for logs.
    pub fn path_uri(&self) -> String {
        let mut attributes =
            vec![format!("token={}", percent_encode(self.token_label.as_bytes(), PATH_SAFE))];
        if let Some(serial) = &self.token_serial {
            attributes.push(format!("serial={}", percent_encode(serial.as_bytes(), PATH_SAFE)));
        }
        if let Some(label) = &self.key_label {
            attributes.push(format!("object={}", percent_encode(label.as_bytes(), PATH_SAFE)));
        }
        if let Some(id) = &self.key_id {
            attributes.push(format!("id={}", percent_encode(id, b"")));
        }
        if self.key_label.is_some() || self.key_id.is_some() {
            attributes.push("type=private".to_string());
        }
        format!("{PKCS11_URI_SCHEME}{}", attributes.join(";"))
    }

    /// "label \"x\" and id 01a2", for messages about which key was looked for.
    pub(super) fn describe_wanted_key(&self) -> String {
        match (&self.key_label, &self.key_id) {
            (Some(label), Some(id)) => format!("label {label:?} and id {}", hex::encode(id)),
            (Some(label), None) => format!("label {label:?}"),
            (None, Some(id)) => format!("id {}", hex::encode(id)),
            (None, None) => "no label or id".to_string(),
        }
    }
}

/// Characters left as they are in path attribute values (RFC 7512 pk11-pchar minus the
/// separators); everything else is percent-encoded.
pub(super) const PATH_SAFE: &[u8] = b"-._~:[]@!$'()*+,&";
/// Characters left as they are in query attribute values (pk11-qchar minus the separators).
pub(super) const QUERY_SAFE: &[u8] = b"-._~:[]@!$'()*+,/?|";

pub(super) fn percent_encode(bytes: &[u8], safe: &[u8]) -> String {
    let mut encoded = String::with_capacity(bytes.len());
    for byte in bytes {
        if byte.is_ascii_alphanumeric() && !safe.is_empty() || safe.contains(byte) {
            encoded.push(char::from(*byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

pub(super) fn percent_decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex_digits = bytes
                .get(index + 1..index + 3)
                .and_then(|digits| std::str::from_utf8(digits).ok())
                .and_then(|digits| u8::from_str_radix(digits, 16).ok())
                .ok_or_else(|| format!("expected two hex digits after '%' at position {index}"))?;
            decoded.push(hex_digits);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    Ok(decoded)
}

/// Why a URI with a `pin-value` attribute (in its path or its query) is refused.
const PIN_VALUE_REFUSED: &str = "pin-value is refused: a PIN must not be written into a profile or command \
     line; use pin-source=env:VARIABLE (or file:PATH, or prompt)";

/// Whether an attribute name is `pin-value` (RFC 7512 puts it in the query; a user may write it in
/// the path, and it is a PIN all the same).
fn is_pin_value(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("pin-value")
}

/// The URI with the value of every `pin-value` attribute replaced, in the path (`;`-separated)
/// and in the query (`&`-separated), so that errors never repeat a PIN.
pub(super) fn redact_uri(uri: &str) -> String {
    let redact_attributes = |part: &str, separator: char| -> String {
        part.split(separator)
            .map(|attribute| match attribute.split_once('=') {
                Some((name, _)) if is_pin_value(name) => format!("{name}=(redacted)"),
                _ => attribute.to_string(),
            })
            .collect::<Vec<_>>()
            .join(&separator.to_string())
    };
    match uri.split_once('?') {
        Some((path, query)) => format!("{}?{}", redact_attributes(path, ';'), redact_attributes(query, '&')),
        None => redact_attributes(uri, ';'),
    }
}
