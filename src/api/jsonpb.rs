//! The gateway's request JSON read as etcd 3.4's grpc-gateway reads it:
//! golang/protobuf's `jsonpb` over Go's `encoding/json`. prost-reflect's
//! proto3 JSON is more lenient (unpadded and URL-safe base64, enum names
//! it does not know, `1e3` for an integer, trailing bytes refused), so a
//! body is first checked and rewritten here, field by field against the
//! message's descriptor, into JSON prost-reflect reads the same way;
//! what etcd refuses is refused with Go's words.
//!
//! Written by hand because what is wanted is exactly Go's verdicts and
//! error texts ("illegal base64 data at input byte 3", "json: cannot
//! unmarshal number 1.5 into Go value of type int64"), which no crate
//! reproduces. The base64 decoding itself is the `base64` crate's; only
//! Go's rule for where an input goes wrong is written out here.
//!
//! jsonpb's rules, as etcd 3.4.23 answers (diffed in tests/it/gateway.rs):
//! - `null` leaves a field unset, whatever its type;
//! - a field is named as the proto spells it or in lowerCamelCase (the
//!   camel name wins when both are given); unknown names are ignored;
//! - integers are JSON numbers or strings holding one, written as Go's
//!   `strconv.ParseInt` reads them (no fraction or exponent);
//! - an enum is its value's name as a string, or a number;
//! - bytes are standard base64 with its padding (newlines skipped), or a
//!   JSON array of numbers 0-255.

use std::collections::BTreeMap;

use base64::Engine as _;
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::value::RawValue;
use serde_json::Value;

/// Standard base64 as Go's `base64.StdEncoding` decodes it: padding
/// required, trailing bits of the last symbol ignored.
const GO_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

/// The request messages of a gateway call's body, as JSON prost-reflect
/// reads as jsonpb would. For a unary call: the body's first JSON value
/// (Go's decoder reads no further), an empty body one empty message. For
/// a client stream: each value in turn until one does not decode, which
/// ends the stream there (grpc-gateway stops sending) unless it is the
/// first; an empty body sends nothing.
pub fn requests(
    input: &MessageDescriptor,
    body: &[u8],
    stream: bool,
) -> Result<Vec<Value>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(if stream {
            Vec::new()
        } else {
            vec![Value::Object(Default::default())]
        });
    }
    let text = std::str::from_utf8(body).map_err(|error| error.to_string())?;
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
    let mut messages = Vec::new();
    loop {
        let offset = values.byte_offset();
        let Some(value) = values.next() else { break };
        let decoded = value
            .map_err(|error| syntax_error(&text[offset..], &error))
            .and_then(|value| message(input, value));
        match decoded {
            Ok(decoded) => messages.push(decoded),
            Err(_) if stream && !messages.is_empty() => break,
            Err(error) => return Err(error),
        }
        if !stream {
            break;
        }
    }
    Ok(messages)
}

/// What Go's JSON value kinds are called in its type errors.
fn kind(raw: &str) -> &'static str {
    match raw.trim_start().as_bytes().first() {
        Some(b'"') => "string",
        Some(b'[') => "array",
        Some(b'{') => "object",
        Some(b't' | b'f') => "bool",
        Some(b'n') => "null",
        _ => "number",
    }
}

fn type_error(raw: &str, go_type: &str) -> String {
    format!(
        "json: cannot unmarshal {} into Go value of type {go_type}",
        kind(raw)
    )
}

/// A message: a JSON object (or null), its fields checked one by one.
fn message(descriptor: &MessageDescriptor, raw: &RawValue) -> Result<Value, String> {
    let text = raw.get();
    if text == "null" {
        return Ok(Value::Object(Default::default()));
    }
    if kind(text) != "object" {
        return Err(type_error(text, "map[string]json.RawMessage"));
    }
    // Go's map: the last of two equal keys wins, as here.
    let fields: BTreeMap<String, &RawValue> =
        serde_json::from_str(text).map_err(|error| error.to_string())?;
    let mut out = serde_json::Map::new();
    // jsonpb reads the plain fields in order, then the oneofs' members.
    let (plain, oneofs): (Vec<FieldDescriptor>, Vec<FieldDescriptor>) = descriptor
        .fields()
        .partition(|field| field.containing_oneof().is_none());
    for field in plain.iter().chain(&oneofs) {
        let given = fields
            .get(field.json_name())
            .or_else(|| fields.get(field.name()));
        let Some(given) = given else { continue };
        if given.get() == "null" {
            continue;
        }
        if let Some(oneof) = field.containing_oneof() {
            for other in oneof.fields() {
                out.remove(other.name());
            }
        }
        out.insert(field.name().to_string(), field_value(field, given)?);
    }
    Ok(Value::Object(out))
}

fn field_value(field: &FieldDescriptor, raw: &RawValue) -> Result<Value, String> {
    if field.is_map() {
        return serde_json::from_str(raw.get()).map_err(|error| error.to_string());
    }
    if field.is_list() {
        let text = raw.get();
        if kind(text) != "array" {
            return Err(type_error(text, "[]json.RawMessage"));
        }
        let items: Vec<&RawValue> =
            serde_json::from_str(text).map_err(|error| error.to_string())?;
        return items
            .into_iter()
            .map(|item| single(field, item))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    single(field, raw)
}

/// One value of `field` (an element, for a repeated field).
fn single(field: &FieldDescriptor, raw: &RawValue) -> Result<Value, String> {
    let text = raw.get();
    match field.kind() {
        Kind::Message(descriptor) => message(&descriptor, raw),
        Kind::Enum(descriptor) => {
            let go_type = go_enum_name(descriptor.full_name(), descriptor.package_name());
            if let Some(name) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                // jsonpb looks the name up as written, escapes and all.
                return match descriptor.get_value_by_name(name) {
                    Some(_) => Ok(Value::String(name.to_string())),
                    None => Err(format!("unknown value {name:?} for enum {go_type}")),
                };
            }
            integer(text, &go_type, i32::MIN as i128, i32::MAX as i128)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            integer(unquoted(text), "int64", i64::MIN as i128, i64::MAX as i128)
        }
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            integer(unquoted(text), "int32", i32::MIN as i128, i32::MAX as i128)
        }
        Kind::Uint64 | Kind::Fixed64 => integer(unquoted(text), "uint64", 0, u64::MAX as i128),
        Kind::Uint32 | Kind::Fixed32 => integer(unquoted(text), "uint32", 0, u32::MAX as i128),
        Kind::Double | Kind::Float => {
            let inner = unquoted(text);
            let go_type = if field.kind() == Kind::Double {
                "float64"
            } else {
                "float32"
            };
            let value = inner_value(inner)?;
            match value.as_f64() {
                Some(_) => Ok(value),
                None if value.is_null() => Ok(Value::from(0)),
                None => Err(type_error(inner.trim(), go_type)),
            }
        }
        Kind::Bool => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(type_error(text, "bool")),
        },
        Kind::String => match kind(text) {
            "string" => serde_json::from_str::<String>(text)
                .map(Value::String)
                .map_err(|error| error.to_string()),
            _ => Err(type_error(text, "string")),
        },
        Kind::Bytes => bytes(text).map(|bytes| Value::String(GO_BASE64.encode(bytes))),
    }
}

/// jsonpb passes a number field given as a string on without its quotes.
fn unquoted(text: &str) -> &str {
    text.strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(text)
}

/// An integer as Go's `json.Unmarshal` stores one into a Go integer type:
/// `strconv.ParseInt`'s syntax, within the type's range; `null` is zero.
fn integer(text: &str, go_type: &str, min: i128, max: i128) -> Result<Value, String> {
    let value = inner_value(text)?;
    let literal = text.trim_matches([' ', '\t', '\n', '\r']);
    match value {
        Value::Null => Ok(Value::from(0)),
        Value::Number(_) => match literal.parse::<i128>() {
            Ok(number) if (min..=max).contains(&number) => Ok(if number < 0 {
                Value::from(number as i64)
            } else {
                Value::from(number as u64)
            }),
            _ => Err(format!(
                "json: cannot unmarshal number {literal} into Go value of type {go_type}"
            )),
        },
        _ => Err(type_error(literal, go_type)),
    }
}

/// A value Go's `json.Unmarshal` is given as raw text (a number field's
/// string, unquoted): parsed, or Go's syntax error.
fn inner_value(text: &str) -> Result<Value, String> {
    serde_json::from_str::<Value>(text).map_err(|error| {
        if error.is_eof() {
            cut_off(text)
        } else {
            syntax_error(text, &error)
        }
    })
}

/// `json.Unmarshal`'s error for a value cut off: its scanner ends the
/// input with a space, so a number or literal cut short names that space.
fn cut_off(text: &str) -> String {
    let token = text.trim_matches([' ', '\t', '\n', '\r']);
    let bytes = token.as_bytes();
    let numeric = bytes
        .first()
        .is_some_and(|first| *first == b'-' || first.is_ascii_digit());
    let context = match bytes {
        [.., b'e' | b'E'] | [.., b'e' | b'E', b'+' | b'-'] if numeric => {
            "in exponent of numeric literal".to_string()
        }
        [.., b'.'] if numeric => "after decimal point in numeric literal".to_string(),
        [b'-'] => "in numeric literal".to_string(),
        _ => {
            let literal = ["true", "false", "null"]
                .into_iter()
                .find(|literal| !token.is_empty() && literal.starts_with(token));
            match literal {
                Some(literal) => format!(
                    "in literal {literal} (expecting '{}')",
                    &literal[token.len()..token.len() + 1]
                ),
                None => return "unexpected end of JSON input".to_string(),
            }
        }
    };
    format!("invalid character ' ' {context}")
}

/// Bytes as Go's `json.Unmarshal` reads a `[]byte`: standard base64 in a
/// string, or an array of numbers 0-255.
fn bytes(text: &str) -> Result<Vec<u8>, String> {
    match kind(text) {
        "string" => {
            let encoded: String = serde_json::from_str(text).map_err(|error| error.to_string())?;
            go_base64_check(encoded.as_bytes())
                .map_err(|at| format!("illegal base64 data at input byte {at}"))?;
            let plain: Vec<u8> = encoded
                .bytes()
                .filter(|byte| *byte != b'\n' && *byte != b'\r')
                .collect();
            GO_BASE64
                .decode(plain)
                .map_err(|_| "illegal base64 data at input byte 0".to_string())
        }
        "array" => {
            let items: Vec<&RawValue> =
                serde_json::from_str(text).map_err(|error| error.to_string())?;
            items
                .into_iter()
                .map(|item| {
                    let value = integer(item.get(), "uint8", 0, u8::MAX as i128)?;
                    Ok(value.as_u64().unwrap_or(0) as u8)
                })
                .collect()
        }
        _ => Err(type_error(text, "[]uint8")),
    }
}

/// Where Go's `base64.StdEncoding.Decode` finds `src` wrong (its
/// `CorruptInputError`), following its `decodeQuantum` step for step:
/// newlines are skipped, the padding must be complete and last.
fn go_base64_check(src: &[u8]) -> Result<(), usize> {
    let is_symbol = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'+' || byte == b'/';
    let newline = |byte: u8| byte == b'\n' || byte == b'\r';
    let mut si = 0;
    while si < src.len() {
        // One quantum of four symbols.
        let mut j = 0;
        while j < 4 {
            if si == src.len() {
                return match j {
                    0 => Ok(()),
                    _ => Err(si - j),
                };
            }
            let byte = src[si];
            si += 1;
            if is_symbol(byte) {
                j += 1;
                continue;
            }
            if newline(byte) {
                continue;
            }
            if byte != b'=' || j < 2 {
                return Err(si - 1);
            }
            if j == 2 {
                // "==": the second must follow, newlines aside.
                while si < src.len() && newline(src[si]) {
                    si += 1;
                }
                if si == src.len() {
                    return Err(src.len());
                }
                if src[si] != b'=' {
                    return Err(si - 1);
                }
                si += 1;
            }
            while si < src.len() && newline(src[si]) {
                si += 1;
            }
            return if si < src.len() { Err(si) } else { Ok(()) };
        }
    }
    Ok(())
}

/// Go's name for a generated enum type: its package, then its name with
/// the messages it is nested in, joined by `_`
/// (`etcdserverpb.RangeRequest_SortOrder`).
fn go_enum_name(full_name: &str, package: &str) -> String {
    let nested = full_name
        .strip_prefix(package)
        .map_or(full_name, |rest| rest.trim_start_matches('.'));
    let go_package = package.rsplit('.').next().unwrap_or(package);
    format!("{go_package}.{}", nested.replace('.', "_"))
}

/// A JSON syntax error in Go's words where the character at fault is
/// known ("invalid character 'g' looking for beginning of value"),
/// "unexpected EOF" for a cut-off value, serde's words otherwise.
fn syntax_error(text: &str, error: &serde_json::Error) -> String {
    if error.is_eof() {
        return "unexpected EOF".to_string();
    }
    let message = error.to_string();
    // serde counts lines from 1 and, within one, bytes from 1.
    let offset = text
        .split('\n')
        .take(error.line().saturating_sub(1))
        .map(|line| line.len() + 1)
        .sum::<usize>()
        + error.column().saturating_sub(1);
    let Some(&at) = text.as_bytes().get(offset) else {
        return message;
    };
    let before = &text.as_bytes()[..offset];
    let previous = before.last().copied().unwrap_or(b' ');
    let context = if message.starts_with("expected value") {
        "looking for beginning of value"
    } else if message.starts_with("expected `,` or `}`") {
        "after object key:value pair"
    } else if message.starts_with("expected `,` or `]`") {
        "after array element"
    } else if message.starts_with("expected `:`") {
        "after object key"
    } else if message.starts_with("key must be a string") {
        "looking for beginning of object key string"
    } else if message.starts_with("trailing characters") {
        "after top-level value"
    } else if message.starts_with("trailing comma") {
        if at == b'}' {
            "looking for beginning of object key string"
        } else {
            "looking for beginning of value"
        }
    } else if message.starts_with("invalid number") {
        match previous {
            b'.' => "after decimal point in numeric literal",
            b'e' | b'E' | b'+' => "in exponent of numeric literal",
            b'-' if matches!(before.iter().rev().nth(1), Some(b'e' | b'E')) => {
                "in exponent of numeric literal"
            }
            // A number that began with 0 ended there: what follows is
            // out of place where it stands.
            b'0' if at.is_ascii_digit() => match enclosing(before) {
                Some(b'{') => "after object key:value pair",
                Some(_) => "after array element",
                None => "after top-level value",
            },
            _ => "in numeric literal",
        }
    } else {
        return message;
    };
    format!("invalid character {} {context}", go_quote_char(at))
}

/// The bracket (`{` or `[`) open at the end of `before`, strings skipped.
fn enclosing(before: &[u8]) -> Option<u8> {
    let mut open = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    for &byte in before {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => open.push(byte),
            b'}' | b']' => {
                open.pop();
            }
            _ => {}
        }
    }
    open.pop()
}

/// Go's `quoteChar`: the character in single quotes, escaped as Go
/// quotes strings (`'\n'`), a single quote as `'\''`.
fn go_quote_char(byte: u8) -> String {
    match byte {
        b'\'' => "'\\''".to_string(),
        b'"' => "'\"'".to_string(),
        b'\n' => "'\\n'".to_string(),
        b'\r' => "'\\r'".to_string(),
        b'\t' => "'\\t'".to_string(),
        byte if byte.is_ascii_graphic() || byte == b' ' => format!("'{}'", byte as char),
        byte if byte < 0x80 => format!("'\\x{byte:02x}'"),
        byte => format!("'{}'", char::from(byte)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_refused_where_go_refuses_it() {
        for (input, verdict) in [
            ("", Ok(())),
            ("YWJj", Ok(())),
            ("YQ==", Ok(())),
            ("YWI=", Ok(())),
            ("YWJj\n", Ok(())),
            ("YW\r\nJj", Ok(())),
            ("YQ=\n=", Ok(())),
            ("/", Err(0)),
            ("abc", Err(0)),
            ("YQ", Err(0)),
            ("YQ=", Err(3)),
            ("ab!c", Err(2)),
            ("Y-_a", Err(1)),
            ("YQ==YQ==", Err(4)),
            ("=", Err(0)),
            ("YWJjY", Err(4)),
            ("YQ=x", Err(2)),
        ] {
            assert_eq!(go_base64_check(input.as_bytes()), verdict, "{input:?}");
        }
    }

    #[test]
    fn a_cut_off_value_is_worded_as_go_words_it() {
        for (text, error) in [
            ("", "unexpected end of JSON input"),
            ("-", "invalid character ' ' in numeric literal"),
            (
                "1.",
                "invalid character ' ' after decimal point in numeric literal",
            ),
            ("1e", "invalid character ' ' in exponent of numeric literal"),
            (
                "1e-",
                "invalid character ' ' in exponent of numeric literal",
            ),
            (
                "tru",
                "invalid character ' ' in literal true (expecting 'e')",
            ),
            ("n", "invalid character ' ' in literal null (expecting 'u')"),
            ("[1", "unexpected end of JSON input"),
        ] {
            assert_eq!(inner_value(text), Err(error.to_string()), "{text:?}");
        }
    }

    #[test]
    fn go_names_enums_by_package_and_nesting() {
        assert_eq!(
            go_enum_name("etcdserverpb.RangeRequest.SortOrder", "etcdserverpb"),
            "etcdserverpb.RangeRequest_SortOrder"
        );
        assert_eq!(
            go_enum_name("etcdserverpb.AlarmType", "etcdserverpb"),
            "etcdserverpb.AlarmType"
        );
    }

    #[test]
    fn syntax_errors_name_the_character() {
        let error = |text: &str| {
            let error = serde_json::from_str::<Value>(text).unwrap_err();
            syntax_error(text, &error)
        };
        assert_eq!(
            error("garbage"),
            "invalid character 'g' looking for beginning of value"
        );
        assert_eq!(
            error(r#"{"key":"YQ==" "x"}"#),
            "invalid character '\"' after object key:value pair"
        );
        assert_eq!(
            error(r#"{"key":"YQ==","limit":01}"#),
            "invalid character '1' after object key:value pair"
        );
        assert_eq!(error(r#"{"key":"#), "unexpected EOF");
        assert_eq!(error("01"), "invalid character '1' after top-level value");
        assert_eq!(error("[0,01]"), "invalid character '1' after array element");
        assert_eq!(
            error("1.x"),
            "invalid character 'x' after decimal point in numeric literal"
        );
        assert_eq!(
            error("1e-x"),
            "invalid character 'x' in exponent of numeric literal"
        );
        assert_eq!(error("-x"), "invalid character 'x' in numeric literal");
        assert_eq!(error("5 6"), "invalid character '6' after top-level value");
        assert_eq!(
            error("abc"),
            "invalid character 'a' looking for beginning of value"
        );
    }
}
