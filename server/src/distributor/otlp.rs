//! Turns an OTLP/HTTP logs export (`POST /otlp/v1/logs`) into streams of
//! entries, the way Loki 3 maps OpenTelemetry logs: some resource
//! attributes become stream labels (`service.name` → `service_name`), the
//! other attributes and the record's fields become structured metadata, the
//! body becomes the line. The tenant's `otlp_config` says which attribute
//! goes where ([`OtlpConfig`]).
//!
//! Bodies are protobuf (`application/x-protobuf`) or OTLP's JSON encoding
//! (`application/json`), uncompressed or gzip, deflate, zstd, lz4 (frame) or
//! snappy (block). The JSON form is read into the protobuf types first, so
//! one mapping serves both.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use balsa_proto::otlp::{any_value::Value, AnyValue, ExportLogsServiceRequest, KeyValue, LogRecord};
use balsa_storage::Entry;
use base64::Engine;
use prost::Message;

use super::decode::{inflate, BodyLimits, DecodeError, DecodedStream};
use balsa_logql::labels::LabelSet;
use crate::limits::{OtlpAction, OtlpAttributes, OtlpConfig};

/// The resource attributes Loki makes stream labels unless
/// `otlp_config.resource_attributes.ignore_defaults` is set.
pub const DEFAULT_INDEX_LABELS: &[&str] = &[
    "service.name",
    "service.namespace",
    "service.instance.id",
    "deployment.environment",
    "deployment.environment.name",
    "cloud.region",
    "cloud.availability_zone",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.container.name",
    "container.name",
    "k8s.replicaset.name",
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
];

/// Decodes an OTLP logs export given its Content-Type and Content-Encoding
/// headers and maps it with `config`; `now_ns` stamps records that carry no
/// time at all.
pub fn decode_otlp(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    limits: BodyLimits,
    config: &OtlpConfig,
    now_ns: i64,
) -> Result<Vec<DecodedStream>, DecodeError> {
    let media = content_type.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media != "application/x-protobuf" && media != "application/json" {
        return Err(DecodeError::Bad(format!("content type: {} is not supported", content_type.unwrap_or(""))));
    }
    let decoded;
    let body: &[u8] = match content_encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref().unwrap_or("") {
        "" | "identity" | "none" => body,
        "gzip" | "x-gzip" => {
            decoded = inflate(flate2::read::GzDecoder::new(body), limits)?;
            &decoded
        }
        // zlib-wrapped as HTTP means it (and OpenTelemetry's SDKs send), or
        // raw deflate as some clients send it.
        "deflate" if body.len() >= 2 && body[0] & 0x0f == 8 && u16::from_be_bytes([body[0], body[1]]) % 31 == 0 => {
            decoded = inflate(flate2::read::ZlibDecoder::new(body), limits)?;
            &decoded
        }
        "deflate" => {
            decoded = inflate(flate2::read::DeflateDecoder::new(body), limits)?;
            &decoded
        }
        "zstd" => {
            let reader = zstd::stream::read::Decoder::new(body)
                .map_err(|e| DecodeError::Bad(format!("cannot decompress the body: {e}")))?;
            decoded = inflate(reader, limits)?;
            &decoded
        }
        "lz4" => {
            decoded = inflate(lz4_flex::frame::FrameDecoder::new(body), limits)?;
            &decoded
        }
        "snappy" => {
            decoded = match snap::raw::decompress_len(body) {
                Ok(n) if n > limits.max_decompressed => {
                    return Err(DecodeError::Bad(format!(
                        "decompressed message size too large than max ({n} vs {})",
                        limits.max_decompressed
                    )))
                }
                _ => snap::raw::Decoder::new()
                    .decompress_vec(body)
                    .map_err(|e| DecodeError::Bad(format!("cannot decompress the body: snappy: {e}")))?,
            };
            &decoded
        }
        other => return Err(DecodeError::Bad(format!("Content-Encoding \"{other}\" not supported"))),
    };
    let req = if media == "application/json" {
        let json: json::Request = serde_json::from_slice(body)
            .map_err(|e| DecodeError::Bad(format!("invalid OTLP JSON logs request: {e}")))?;
        json.into_proto().map_err(|e| DecodeError::Bad(format!("invalid OTLP JSON logs request: {e}")))?
    } else {
        ExportLogsServiceRequest::decode(body)
            .map_err(|e| DecodeError::Bad(format!("cannot decode the OTLP protobuf logs request: {e}")))?
    };
    to_streams(req, config, now_ns)
}

/// A label or metadata name from an attribute key, as Loki normalizes it:
/// every character but ASCII letters and digits becomes `_`, runs of `_`
/// collapse, and a leading digit gets a `key_` prefix. `None` when nothing
/// but underscores is left.
pub fn normalize_name(key: &str) -> Option<String> {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    if out.bytes().all(|b| b == b'_') {
        return None;
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    }
    Some(out)
}

/// Appends `(name, value)` pairs for one attribute: a key/value-list
/// attribute flattens into `parent_child` names.
fn flatten(prefix: &str, kv: &KeyValue, out: &mut Vec<(String, String)>) -> Result<(), DecodeError> {
    let raw = if prefix.is_empty() { kv.key.clone() } else { format!("{prefix}_{}", kv.key) };
    if let Some(Value::KvlistValue(list)) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        for child in &list.values {
            flatten(&raw, child, out)?;
        }
        return Ok(());
    }
    let name = normalize_name(&raw)
        .ok_or_else(|| DecodeError::Bad(format!("attribute name {:?} has no letter or digit to make a label name of", kv.key)))?;
    out.push((name, kv.value.as_ref().map(as_string).unwrap_or_default()));
    Ok(())
}

/// An attribute or body value as text, as OpenTelemetry's `AsString`:
/// arrays and maps as JSON, bytes as base64, doubles as JavaScript prints
/// them.
pub fn as_string(v: &AnyValue) -> String {
    match &v.value {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => double_string(*d),
        Some(Value::BytesValue(b)) => base64::engine::general_purpose::STANDARD.encode(b),
        Some(Value::ArrayValue(_) | Value::KvlistValue(_)) => as_json(v).to_string(),
    }
}

fn as_json(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.value {
        None => J::Null,
        Some(Value::StringValue(s)) => J::String(s.clone()),
        Some(Value::BoolValue(b)) => J::Bool(*b),
        Some(Value::IntValue(i)) => J::from(*i),
        Some(Value::DoubleValue(d)) => serde_json::Number::from_f64(*d).map_or_else(|| J::String(double_string(*d)), J::Number),
        Some(Value::BytesValue(b)) => J::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Some(Value::ArrayValue(a)) => J::Array(a.values.iter().map(as_json).collect()),
        Some(Value::KvlistValue(l)) => {
            let sorted: BTreeMap<&str, serde_json::Value> =
                l.values.iter().map(|kv| (kv.key.as_str(), kv.value.as_ref().map_or(J::Null, as_json))).collect();
            J::Object(sorted.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        }
    }
}

/// ECMAScript's number-to-string: plain digits from 1e-6 up to 1e21,
/// exponent form (`1e+21`, `1.5e-7`) outside.
fn double_string(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let abs = d.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{d:e}");
        match s.split_once('e') {
            Some((m, exp)) if !exp.starts_with('-') => format!("{m}e+{exp}"),
            _ => s,
        }
    } else {
        format!("{d}")
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The action of the first rule that matches `key`.
fn action<'a>(rules: impl IntoIterator<Item = &'a OtlpAttributes>, key: &str) -> OtlpAction {
    rules.into_iter().find(|r| r.matches(key)).map_or(OtlpAction::StructuredMetadata, |r| r.action)
}

/// Splits attributes by their rules into (labels, metadata), dropping what
/// is dropped.
fn split<'a, R>(attrs: &[KeyValue], rules: R) -> Result<(Vec<(String, String)>, Vec<(String, String)>), DecodeError>
where
    R: Fn(&str) -> OtlpAction + 'a,
{
    let (mut labels, mut metadata) = (Vec::new(), Vec::new());
    for kv in attrs {
        match rules(&kv.key) {
            OtlpAction::IndexLabel => flatten("", kv, &mut labels)?,
            OtlpAction::StructuredMetadata => flatten("", kv, &mut metadata)?,
            OtlpAction::Drop => {}
        }
    }
    Ok((labels, metadata))
}

/// Label pairs with repeated names reduced to the last one.
fn dedupe(mut pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs.drain(..) {
        match seen.get(&k) {
            Some(&i) => out[i].1 = v,
            None => {
                seen.insert(k.clone(), out.len());
                out.push((k, v));
            }
        }
    }
    out
}

/// The mapping proper.
pub fn to_streams(req: ExportLogsServiceRequest, config: &OtlpConfig, now_ns: i64) -> Result<Vec<DecodedStream>, DecodeError> {
    let defaults =
        OtlpAttributes::named(OtlpAction::IndexLabel, DEFAULT_INDEX_LABELS.iter().map(|s| s.to_string()).collect());
    let resource_rules: Vec<&OtlpAttributes> = (!config.resource_attributes.ignore_defaults)
        .then_some(&defaults)
        .into_iter()
        .chain(&config.resource_attributes.attributes_config)
        .collect();
    let mut out = Vec::new();
    for rl in req.resource_logs {
        let resource = rl.resource.unwrap_or_default();
        let (resource_labels, resource_metadata) =
            split(&resource.attributes, |k| action(resource_rules.iter().copied(), k))?;
        // Streams of this resource by the labels their records add.
        let mut streams: Vec<(Vec<(String, String)>, Vec<Entry>)> = Vec::new();
        let mut index: HashMap<Vec<(String, String)>, usize> = HashMap::new();
        for sl in rl.scope_logs {
            let scope = sl.scope.unwrap_or_default();
            // No index labels here: `OtlpConfig::validate` refuses them.
            let (_, mut scope_metadata) = split(&scope.attributes, |k| action(&config.scope_attributes, k))?;
            push_nonempty(&mut scope_metadata, "scope_name", scope.name);
            push_nonempty(&mut scope_metadata, "scope_version", scope.version);
            push_nonzero(&mut scope_metadata, "scope_dropped_attributes_count", scope.dropped_attributes_count.into());
            for record in sl.log_records {
                let (mut extra, mut metadata) = split(&record.attributes, |k| action(&config.log_attributes, k))?;
                push_record_fields(&mut metadata, &record, &resource_metadata, &scope_metadata);
                if config.severity_text_as_label && !record.severity_text.is_empty() {
                    extra.push(("severity_text".into(), record.severity_text.clone()));
                }
                let ts = [record.time_unix_nano, record.observed_time_unix_nano]
                    .into_iter()
                    .find(|&t| t != 0)
                    .map_or(now_ns, |t| i64::try_from(t).unwrap_or(i64::MAX));
                let line = record.body.as_ref().map(as_string).unwrap_or_default();
                let entry = Entry { ts, line, metadata };
                match index.get(&extra) {
                    Some(&i) => streams[i].1.push(entry),
                    None => {
                        index.insert(extra.clone(), streams.len());
                        streams.push((extra, vec![entry]));
                    }
                }
            }
        }
        for (extra, entries) in streams {
            let pairs = dedupe(resource_labels.iter().cloned().chain(extra).collect());
            out.push(DecodedStream { labels: LabelSet::from_pairs(pairs), entries });
        }
    }
    Ok(out)
}

/// Completes a record's structured metadata in Loki's order: after its
/// attributes (already in `md`), its fields, then the resource's and the
/// scope's metadata.
fn push_record_fields(md: &mut Vec<(String, String)>, r: &LogRecord, resource: &[(String, String)], scope: &[(String, String)]) {
    if r.time_unix_nano != 0 && r.observed_time_unix_nano != 0 {
        md.push(("observed_timestamp".into(), r.observed_time_unix_nano.to_string()));
    }
    push_nonzero(md, "severity_number", i64::from(r.severity_number));
    push_nonempty(md, "severity_text", r.severity_text.clone());
    push_nonzero(md, "dropped_attributes_count", r.dropped_attributes_count.into());
    push_nonzero(md, "flags", r.flags.into());
    if r.trace_id.iter().any(|&b| b != 0) {
        md.push(("trace_id".into(), hex(&r.trace_id)));
    }
    if r.span_id.iter().any(|&b| b != 0) {
        md.push(("span_id".into(), hex(&r.span_id)));
    }
    md.extend(resource.iter().cloned());
    md.extend(scope.iter().cloned());
}

fn push_nonempty(md: &mut Vec<(String, String)>, name: &str, value: String) {
    if !value.is_empty() {
        md.push((name.into(), value));
    }
}

fn push_nonzero(md: &mut Vec<(String, String)>, name: &str, value: i64) {
    if value != 0 {
        md.push((name.into(), value.to_string()));
    }
}

/// OTLP's JSON encoding (protobuf's JSON mapping with OTLP's exceptions:
/// trace and span ids in hex). Field names in lowerCamelCase or as in the
/// .proto; 64-bit integers as numbers or strings; unknown keys ignored.
mod json {
    use base64::Engine;
    use serde::de::{self, Deserializer};
    use serde::Deserialize;

    use balsa_proto::otlp as pb;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct Request {
        #[serde(alias = "resource_logs", rename = "resourceLogs")]
        resource_logs: Vec<ResourceLogs>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct ResourceLogs {
        resource: Option<Resource>,
        #[serde(alias = "scope_logs", rename = "scopeLogs")]
        scope_logs: Vec<ScopeLogs>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Resource {
        attributes: Vec<KeyValue>,
        #[serde(alias = "dropped_attributes_count", rename = "droppedAttributesCount", deserialize_with = "int")]
        dropped_attributes_count: i64,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct ScopeLogs {
        scope: Option<Scope>,
        #[serde(alias = "log_records", rename = "logRecords")]
        log_records: Vec<LogRecord>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Scope {
        name: String,
        version: String,
        attributes: Vec<KeyValue>,
        #[serde(alias = "dropped_attributes_count", rename = "droppedAttributesCount", deserialize_with = "int")]
        dropped_attributes_count: i64,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct LogRecord {
        #[serde(alias = "time_unix_nano", rename = "timeUnixNano", deserialize_with = "int")]
        time_unix_nano: i64,
        #[serde(alias = "observed_time_unix_nano", rename = "observedTimeUnixNano", deserialize_with = "int")]
        observed_time_unix_nano: i64,
        #[serde(alias = "severity_number", rename = "severityNumber", deserialize_with = "severity")]
        severity_number: i64,
        #[serde(alias = "severity_text", rename = "severityText")]
        severity_text: String,
        body: Option<AnyValue>,
        attributes: Vec<KeyValue>,
        #[serde(alias = "dropped_attributes_count", rename = "droppedAttributesCount", deserialize_with = "int")]
        dropped_attributes_count: i64,
        #[serde(deserialize_with = "int")]
        flags: i64,
        #[serde(alias = "trace_id", rename = "traceId")]
        trace_id: String,
        #[serde(alias = "span_id", rename = "spanId")]
        span_id: String,
        #[serde(alias = "event_name", rename = "eventName")]
        event_name: String,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct KeyValue {
        key: String,
        value: Option<AnyValue>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct AnyValue {
        #[serde(alias = "string_value", rename = "stringValue")]
        string_value: Option<String>,
        #[serde(alias = "bool_value", rename = "boolValue")]
        bool_value: Option<bool>,
        #[serde(alias = "int_value", rename = "intValue", deserialize_with = "opt_int")]
        int_value: Option<i64>,
        #[serde(alias = "double_value", rename = "doubleValue", deserialize_with = "opt_double")]
        double_value: Option<f64>,
        #[serde(alias = "array_value", rename = "arrayValue")]
        array_value: Option<Values<AnyValue>>,
        #[serde(alias = "kvlist_value", rename = "kvlistValue")]
        kvlist_value: Option<Values<KeyValue>>,
        #[serde(alias = "bytes_value", rename = "bytesValue")]
        bytes_value: Option<String>,
    }

    #[derive(Deserialize)]
    struct Values<T> {
        #[serde(default = "Vec::new")]
        values: Vec<T>,
    }

    /// A number or a string holding one (protobuf JSON's 64-bit integers);
    /// null is 0.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IntForm {
        Num(i64),
        Unsigned(u64),
        Str(String),
    }

    fn to_int<E: de::Error>(v: Option<IntForm>) -> Result<i64, E> {
        match v {
            None => Ok(0),
            Some(IntForm::Num(n)) => Ok(n),
            Some(IntForm::Unsigned(n)) => Ok(i64::try_from(n).unwrap_or(i64::MAX)),
            Some(IntForm::Str(s)) => s
                .parse::<i64>()
                .or_else(|_| s.parse::<u64>().map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
                .map_err(|_| E::custom(format!("{s:?} is not an integer"))),
        }
    }

    fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        to_int(Option::<IntForm>::deserialize(d)?)
    }

    fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Option::<IntForm>::deserialize(d)? {
            None => Ok(None),
            v => to_int(v).map(Some),
        }
    }

    /// A severity number, or its enum name (`SEVERITY_NUMBER_INFO`).
    fn severity<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match Option::<IntForm>::deserialize(d)? {
            Some(IntForm::Str(s)) if s.starts_with("SEVERITY_NUMBER_") => {
                const NAMES: [&str; 25] = [
                    "UNSPECIFIED", "TRACE", "TRACE2", "TRACE3", "TRACE4", "DEBUG", "DEBUG2", "DEBUG3", "DEBUG4", "INFO",
                    "INFO2", "INFO3", "INFO4", "WARN", "WARN2", "WARN3", "WARN4", "ERROR", "ERROR2", "ERROR3", "ERROR4",
                    "FATAL", "FATAL2", "FATAL3", "FATAL4",
                ];
                let name = &s["SEVERITY_NUMBER_".len()..];
                NAMES
                    .iter()
                    .position(|n| *n == name)
                    .map(|i| i as i64)
                    .ok_or_else(|| de::Error::custom(format!("unknown severity number {s:?}")))
            }
            v => to_int(v),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum DoubleForm {
        Num(f64),
        Str(String),
    }

    fn opt_double<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Option::<DoubleForm>::deserialize(d)? {
            None => Ok(None),
            Some(DoubleForm::Num(n)) => Ok(Some(n)),
            Some(DoubleForm::Str(s)) => match s.as_str() {
                "NaN" => Ok(Some(f64::NAN)),
                "Infinity" => Ok(Some(f64::INFINITY)),
                "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
                _ => s.parse().map(Some).map_err(|_| de::Error::custom(format!("{s:?} is not a number"))),
            },
        }
    }

    /// A field of an OTLP JSON request its protobuf form cannot hold.
    #[derive(Debug, thiserror::Error)]
    pub enum FieldError {
        #[error("{field} {value:?} is not {len} bytes in hex")]
        NotHex { field: &'static str, value: String, len: usize },
        #[error("{field} {value} is out of range")]
        OutOfRange { field: &'static str, value: i64 },
        #[error("bytesValue is not base64: {0}")]
        NotBase64(base64::DecodeError),
    }

    fn hex_id(s: &str, field: &'static str, len: usize) -> Result<Vec<u8>, FieldError> {
        if s.is_empty() {
            return Ok(Vec::new());
        }
        let not_hex = || FieldError::NotHex { field, value: s.to_string(), len };
        if s.len() != len * 2 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_hex());
        }
        (0..len).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| not_hex())).collect()
    }

    fn u32_field(value: i64, field: &'static str) -> Result<u32, FieldError> {
        u32::try_from(value).map_err(|_| FieldError::OutOfRange { field, value })
    }

    impl Request {
        pub fn into_proto(self) -> Result<pb::ExportLogsServiceRequest, FieldError> {
            let resource_logs = self
                .resource_logs
                .into_iter()
                .map(|rl| {
                    let resource = rl
                        .resource
                        .map(|r| -> Result<_, FieldError> {
                            Ok(pb::Resource {
                                attributes: kvs(r.attributes)?,
                                dropped_attributes_count: u32_field(r.dropped_attributes_count, "droppedAttributesCount")?,
                            })
                        })
                        .transpose()?;
                    let scope_logs = rl.scope_logs.into_iter().map(ScopeLogs::into_proto).collect::<Result<_, _>>()?;
                    Ok(pb::ResourceLogs { resource, scope_logs, schema_url: String::new() })
                })
                .collect::<Result<_, FieldError>>()?;
            Ok(pb::ExportLogsServiceRequest { resource_logs })
        }
    }

    impl ScopeLogs {
        fn into_proto(self) -> Result<pb::ScopeLogs, FieldError> {
            let scope = self
                .scope
                .map(|s| -> Result<_, FieldError> {
                    Ok(pb::InstrumentationScope {
                        name: s.name,
                        version: s.version,
                        attributes: kvs(s.attributes)?,
                        dropped_attributes_count: u32_field(s.dropped_attributes_count, "droppedAttributesCount")?,
                    })
                })
                .transpose()?;
            let log_records = self.log_records.into_iter().map(LogRecord::into_proto).collect::<Result<_, _>>()?;
            Ok(pb::ScopeLogs { scope, log_records, schema_url: String::new() })
        }
    }

    impl LogRecord {
        fn into_proto(self) -> Result<pb::LogRecord, FieldError> {
            Ok(pb::LogRecord {
                time_unix_nano: self.time_unix_nano as u64,
                observed_time_unix_nano: self.observed_time_unix_nano as u64,
                severity_number: i32::try_from(self.severity_number)
                    .map_err(|_| FieldError::OutOfRange { field: "severityNumber", value: self.severity_number })?,
                severity_text: self.severity_text,
                body: self.body.map(AnyValue::into_proto).transpose()?,
                attributes: kvs(self.attributes)?,
                dropped_attributes_count: u32_field(self.dropped_attributes_count, "droppedAttributesCount")?,
                flags: u32_field(self.flags, "flags")?,
                trace_id: hex_id(&self.trace_id, "traceId", 16)?,
                span_id: hex_id(&self.span_id, "spanId", 8)?,
                event_name: self.event_name,
            })
        }
    }

    fn kvs(list: Vec<KeyValue>) -> Result<Vec<pb::KeyValue>, FieldError> {
        list.into_iter()
            .map(|kv| Ok(pb::KeyValue { key: kv.key, value: kv.value.map(AnyValue::into_proto).transpose()? }))
            .collect()
    }

    impl AnyValue {
        fn into_proto(self) -> Result<pb::AnyValue, FieldError> {
            use pb::any_value::Value as V;
            let value = if let Some(s) = self.string_value {
                Some(V::StringValue(s))
            } else if let Some(b) = self.bool_value {
                Some(V::BoolValue(b))
            } else if let Some(i) = self.int_value {
                Some(V::IntValue(i))
            } else if let Some(d) = self.double_value {
                Some(V::DoubleValue(d))
            } else if let Some(a) = self.array_value {
                Some(V::ArrayValue(pb::ArrayValue {
                    values: a.values.into_iter().map(AnyValue::into_proto).collect::<Result<_, _>>()?,
                }))
            } else if let Some(l) = self.kvlist_value {
                Some(V::KvlistValue(pb::KeyValueList { values: kvs(l.values)? }))
            } else if let Some(b) = self.bytes_value {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b.as_bytes())
                    .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(b.as_bytes()))
                    .map_err(FieldError::NotBase64)?;
                Some(V::BytesValue(bytes))
            } else {
                None
            };
            Ok(pb::AnyValue { value })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use balsa_proto::otlp::{ArrayValue, InstrumentationScope, KeyValueList, Resource, ResourceLogs, ScopeLogs};

    const L: BodyLimits = BodyLimits { max_decompressed: 1 << 20 };

    fn s(v: &str) -> Option<AnyValue> {
        Some(AnyValue { value: Some(Value::StringValue(v.into())) })
    }

    fn kv(k: &str, value: Option<AnyValue>) -> KeyValue {
        KeyValue { key: k.into(), value }
    }

    fn md(e: &Entry) -> Vec<(&str, &str)> {
        e.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    fn request() -> ExportLogsServiceRequest {
        let record = LogRecord {
            time_unix_nano: 1_700_000_000_000_000_001,
            observed_time_unix_nano: 1_700_000_000_000_000_002,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: s("user logged in"),
            attributes: vec![
                kv("http.method", s("GET")),
                kv("count", Some(AnyValue { value: Some(Value::IntValue(3)) })),
                kv(
                    "user",
                    Some(AnyValue {
                        value: Some(Value::KvlistValue(KeyValueList { values: vec![kv("id", s("42"))] })),
                    }),
                ),
            ],
            trace_id: (1..=16).collect(),
            span_id: vec![0; 8],
            ..Default::default()
        };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", s("checkout")),
                        kv("k8s.pod.name", s("checkout-1")),
                        kv("host.name", s("node-a")),
                    ],
                    dropped_attributes_count: 0,
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "auth".into(),
                        version: "1.2".into(),
                        attributes: vec![kv("lib", s("x"))],
                        dropped_attributes_count: 0,
                    }),
                    log_records: vec![record],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    #[test]
    fn resource_attributes_become_labels_and_the_rest_structured_metadata() {
        let streams = to_streams(request(), &OtlpConfig::default(), 0).unwrap();
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].labels.to_string(), r#"{k8s_pod_name="checkout-1", service_name="checkout"}"#);
        let e = &streams[0].entries[0];
        assert_eq!(e.ts, 1_700_000_000_000_000_001);
        assert_eq!(e.line, "user logged in");
        assert_eq!(
            md(e),
            vec![
                ("http_method", "GET"),
                ("count", "3"),
                ("user_id", "42"),
                ("observed_timestamp", "1700000000000000002"),
                ("severity_number", "9"),
                ("severity_text", "INFO"),
                ("trace_id", "0102030405060708090a0b0c0d0e0f10"),
                ("host_name", "node-a"),
                ("lib", "x"),
                ("scope_name", "auth"),
                ("scope_version", "1.2"),
            ]
        );
    }

    #[test]
    fn otlp_config_rules_promote_drop_and_split_streams() {
        let yaml = r#"
resource_attributes:
  ignore_defaults: true
  attributes_config:
    - action: index_label
      regex: host\..*
    - action: drop
      attributes: [k8s.pod.name]
log_attributes:
  - action: index_label
    attributes: [http.method]
  - action: drop
    regex: "c.*"
severity_text_as_label: true
"#;
        let config: OtlpConfig = serde_yaml_ng::from_str(yaml).unwrap();
        config.validate().unwrap();
        let mut req = request();
        let mut second = req.resource_logs[0].scope_logs[0].log_records[0].clone();
        second.attributes[0] = kv("http.method", s("POST"));
        req.resource_logs[0].scope_logs[0].log_records.push(second);
        let streams = to_streams(req, &config, 0).unwrap();
        let labels: Vec<String> = streams.iter().map(|s| s.labels.to_string()).collect();
        assert_eq!(
            labels,
            vec![
                r#"{host_name="node-a", http_method="GET", severity_text="INFO"}"#,
                r#"{host_name="node-a", http_method="POST", severity_text="INFO"}"#,
            ]
        );
        let names: Vec<&str> = streams[0].entries[0].metadata.iter().map(|(k, _)| k.as_str()).collect();
        assert!(names.contains(&"service_name") && names.contains(&"user_id"), "{names:?}");
        assert!(!names.contains(&"count") && !names.contains(&"k8s_pod_name"), "{names:?}");
    }

    #[test]
    fn names_are_normalized_like_loki() {
        assert_eq!(normalize_name("service.name").as_deref(), Some("service_name"));
        assert_eq!(normalize_name("a..b--c").as_deref(), Some("a_b_c"));
        assert_eq!(normalize_name("1st").as_deref(), Some("key_1st"));
        assert_eq!(normalize_name("é").as_deref(), None);
        assert_eq!(normalize_name("...").as_deref(), None);
        let mut req = request();
        req.resource_logs[0].scope_logs[0].log_records[0].attributes.push(kv("..", s("v")));
        let err = to_streams(req, &OtlpConfig::default(), 0).unwrap_err();
        assert!(matches!(err, DecodeError::Bad(ref m) if m.contains("\"..\"")), "{err}");
    }

    #[test]
    fn values_print_as_opentelemetry_prints_them() {
        let v = |value| AnyValue { value: Some(value) };
        assert_eq!(as_string(&v(Value::DoubleValue(1.5))), "1.5");
        assert_eq!(as_string(&v(Value::DoubleValue(1e21))), "1e+21");
        assert_eq!(as_string(&v(Value::DoubleValue(1.5e-7))), "1.5e-7");
        assert_eq!(as_string(&v(Value::DoubleValue(100.0))), "100");
        assert_eq!(as_string(&v(Value::BoolValue(true))), "true");
        assert_eq!(as_string(&v(Value::BytesValue(b"hi".to_vec()))), "aGk=");
        let array = v(Value::ArrayValue(ArrayValue { values: vec![v(Value::IntValue(1)), v(Value::StringValue("a".into()))] }));
        assert_eq!(as_string(&array), r#"[1,"a"]"#);
        let map = v(Value::KvlistValue(KeyValueList { values: vec![kv("z", s("1")), kv("a", s("2"))] }));
        assert_eq!(as_string(&map), r#"{"a":"2","z":"1"}"#);
    }

    #[test]
    fn json_and_protobuf_bodies_decode_the_same() {
        let json = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}},
            {"key":"k8s.pod.name","value":{"stringValue":"checkout-1"}},{"key":"host.name","value":{"stringValue":"node-a"}}]},
          "scope_logs":[{"scope":{"name":"auth","version":"1.2","attributes":[{"key":"lib","value":{"stringValue":"x"}}]},
          "logRecords":[{"timeUnixNano":"1700000000000000001","observedTimeUnixNano":1700000000000000002,
            "severityNumber":"SEVERITY_NUMBER_INFO","severityText":"INFO","body":{"stringValue":"user logged in"},
            "attributes":[{"key":"http.method","value":{"stringValue":"GET"}},{"key":"count","value":{"intValue":"3"}},
              {"key":"user","value":{"kvlistValue":{"values":[{"key":"id","value":{"stringValue":"42"}}]}}}],
            "traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"","unknown":{"x":1}}]}]}],"extra":true}"#;
        let from_json = decode_otlp(Some("application/json"), None, json, L, &OtlpConfig::default(), 0).unwrap();
        let proto = request().encode_to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &proto).unwrap();
        let gz = gz.finish().unwrap();
        let from_proto = decode_otlp(Some("application/x-protobuf"), Some("gzip"), &gz, L, &OtlpConfig::default(), 0).unwrap();
        let zst = zstd::encode_all(proto.as_slice(), 1).unwrap();
        let from_zstd = decode_otlp(Some("application/x-protobuf"), Some("zstd"), &zst, L, &OtlpConfig::default(), 0).unwrap();
        for other in [&from_proto, &from_zstd] {
            assert_eq!(from_json.len(), other.len());
            assert_eq!(from_json[0].labels, other[0].labels);
            assert_eq!(from_json[0].entries, other[0].entries);
        }
    }

    #[test]
    fn records_without_time_take_the_observed_time_or_now() {
        let mut req = request();
        let r = &mut req.resource_logs[0].scope_logs[0].log_records[0];
        r.time_unix_nano = 0;
        let mut untimed = r.clone();
        untimed.observed_time_unix_nano = 0;
        req.resource_logs[0].scope_logs[0].log_records.push(untimed);
        let streams = to_streams(req, &OtlpConfig::default(), 77).unwrap();
        let e = &streams[0].entries;
        assert_eq!((e[0].ts, e[1].ts), (1_700_000_000_000_000_002, 77));
        assert!(!md(&e[0]).iter().any(|(k, _)| *k == "observed_timestamp"));
    }

    #[test]
    fn bad_bodies_are_clear_errors() {
        let c = OtlpConfig::default();
        let bad = |ct, ce, body: &[u8]| match decode_otlp(ct, ce, body, L, &c, 0) {
            Err(DecodeError::Bad(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(bad(Some("text/plain"), None, b"x"), "content type: text/plain is not supported");
        assert_eq!(bad(None, None, b"x"), "content type:  is not supported");
        assert!(bad(Some("application/x-protobuf"), None, b"\xff\xff\xff").contains("cannot decode"));
        assert!(bad(Some("application/json"), None, b"[1]").contains("invalid OTLP JSON"));
        assert!(bad(Some("application/json"), None, br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"zz"}]}]}]}"#)
            .contains("traceId"));
        assert!(bad(Some("application/json"), Some("zstd"), b"not zstd").contains("decompress"));
        assert!(bad(Some("application/json"), Some("br"), b"").contains("not supported"));
        let huge = zstd::encode_all(&vec![b' '; (1 << 20) + 10][..], 1).unwrap();
        assert!(bad(Some("application/json"), Some("zstd"), &huge).contains("too large"));
    }
}
