//! The device's response CBOR, decoded: an indefinite-length map of `SchemeVersion`, `SID`,
//! `ReturnStatus` (`fcc_status_e`), `InfoMessage`, `WarningInfo` and, for `CsrReqs`, `Csrs`
//! (`[{PrKN, Data}]`, each a PKCS#10 request in DER).

use ciborium::value::Value;

use super::error::FccError;
use super::status::FccStatus;

/// A CSR the device answered: the name of the private key it made and the PKCS#10 DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCsr {
    /// The private key's name on the device (`PrKN`).
    pub private_key_name: String,
    /// The PKCS#10 request (DER).
    pub request_der: Vec<u8>,
}

/// A decoded response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FccResponse {
    /// `SchemeVersion` as the device sent it.
    pub scheme_version: Option<String>,
    /// `SID`, echoed.
    pub session_id: Option<String>,
    /// `ReturnStatus`.
    pub return_status: FccStatus,
    /// `InfoMessage`: the device's own words on the status ("The Factory process succeeded",
    /// "Item size is wrong:mbed.VendorId").
    pub info_message: Option<String>,
    /// `WarningInfo`: warnings (certificates valid under 10 years, items not set).
    pub warning_info: Option<String>,
    /// `Csrs`.
    pub csrs: Vec<DeviceCsr>,
}

impl FccResponse {
    /// Decodes a response's CBOR; `endpoint` names the device in errors.
    pub fn decode(response_cbor: &[u8], endpoint: &str) -> Result<FccResponse, FccError> {
        let malformed = |expected: &'static str, found: String| FccError::MalformedResponse {
            endpoint: endpoint.to_string(),
            expected,
            found,
        };
        let value: Value = ciborium::from_reader(response_cbor)
            .map_err(|error| malformed("a CBOR map", format!("bytes that do not decode ({error})")))?;
        let Value::Map(entries) = value else {
            return Err(malformed("a CBOR map", describe(&value)));
        };
        let mut response = FccResponse {
            scheme_version: None,
            session_id: None,
            return_status: FccStatus(u32::MAX),
            info_message: None,
            warning_info: None,
            csrs: Vec::new(),
        };
        let mut has_return_status = false;
        for (key, value) in entries {
            let Value::Text(key) = key else {
                return Err(malformed("text keys", describe(&key)));
            };
            match key.as_str() {
                "SchemeVersion" => {
                    response.scheme_version = Some(expect_text(value, "SchemeVersion", &malformed)?)
                }
                "SID" => response.session_id = Some(expect_text(value, "SID", &malformed)?),
                "InfoMessage" => response.info_message = Some(expect_text(value, "InfoMessage", &malformed)?),
                "WarningInfo" => response.warning_info = Some(expect_text(value, "WarningInfo", &malformed)?),
                "ReturnStatus" => {
                    let code = match &value {
                        Value::Integer(integer) => u32::try_from(i128::from(*integer)).ok(),
                        _ => None,
                    };
                    let code = code
                        .ok_or_else(|| malformed("ReturnStatus as an unsigned integer", describe(&value)))?;
                    response.return_status = FccStatus(code);
                    has_return_status = true;
                }
                "Csrs" => response.csrs = decode_csrs(value, &malformed)?,
                // A newer FCC may add groups: they are not ours to refuse.
                _ => {}
            }
        }
        if !has_return_status {
            return Err(malformed("a ReturnStatus", "a response without one".to_string()));
        }
        Ok(response)
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Integer(integer) => format!("integer {}", i128::from(*integer)),
        Value::Bytes(bytes) => format!("a byte string of {} bytes", bytes.len()),
        Value::Text(text) => format!("text {text:?}"),
        Value::Array(items) => format!("an array of {} items", items.len()),
        Value::Map(entries) => format!("a map of {} entries", entries.len()),
        Value::Bool(flag) => format!("boolean {flag}"),
        Value::Null => "null".to_string(),
        _ => "another CBOR type".to_string(),
    }
}

fn expect_text(
    value: Value,
    field: &'static str,
    malformed: &impl Fn(&'static str, String) -> FccError,
) -> Result<String, FccError> {
    match value {
        Value::Text(text) => Ok(text),
        other => Err(malformed(field_expectation(field), describe(&other))),
    }
}

fn field_expectation(field: &'static str) -> &'static str {
    match field {
        "SchemeVersion" => "SchemeVersion as text",
        "SID" => "SID as text",
        "InfoMessage" => "InfoMessage as text",
        "WarningInfo" => "WarningInfo as text",
        "PrKN" => "Csrs[].PrKN as text",
        _ => "text",
    }
}

fn decode_csrs(
    value: Value,
    malformed: &impl Fn(&'static str, String) -> FccError,
) -> Result<Vec<DeviceCsr>, FccError> {
    let Value::Array(items) = value else {
        return Err(malformed("Csrs as an array", describe(&value)));
    };
    let mut csrs = Vec::with_capacity(items.len());
    for item in items {
        let Value::Map(entries) = item else {
            return Err(malformed("Csrs entries as maps", describe(&item)));
        };
        let mut private_key_name = None;
        let mut request_der = None;
        for (key, value) in entries {
            match (key, value) {
                (Value::Text(key), value) if key == "PrKN" => {
                    private_key_name = Some(expect_text(value, "PrKN", malformed)?)
                }
                (Value::Text(key), Value::Bytes(bytes)) if key == "Data" => request_der = Some(bytes),
                (Value::Text(key), other) if key == "Data" => {
                    return Err(malformed("Csrs[].Data as a byte string", describe(&other)));
                }
                _ => {}
            }
        }
        match (private_key_name, request_der) {
            (Some(private_key_name), Some(request_der)) => {
                csrs.push(DeviceCsr { private_key_name, request_der })
            }
            _ => {
                return Err(malformed("Csrs entries with PrKN and Data", "an entry lacking one".to_string()));
            }
        }
    }
    Ok(csrs)
}
