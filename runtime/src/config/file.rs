//! The `--config` TOML file: the keys of [`super::KEYS`] and no others (serde's
//! `deny_unknown_fields`), each a string, a number, true/false or (for a repeatable key) a
//! list of them. Values are handed on as text and checked like any other source's.

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::{err, ConfigError, Kind, Raw, Source, KEYS};

/// A value in the file, as text: one, or a list.
#[derive(Debug)]
enum Value {
    One(String),
    List(Vec<String>),
}

macro_rules! file_keys {
    ($($key:ident),* $(,)?) => {
        /// The file's keys.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FileSettings {
            $(#[serde(default)] $key: Option<Value>,)*
        }

        impl FileSettings {
            fn entries(self) -> Vec<(&'static str, Value)> {
                let mut out = Vec::new();
                $(if let Some(v) = self.$key { out.push((stringify!($key), v)); })*
                out
            }
        }

        #[cfg(test)]
        pub(super) const FILE_KEYS: &[&str] = &[$(stringify!($key)),*];
    };
}

file_keys!(
    docker_host,
    output,
    state_dir,
    sink,
    rotate_every,
    rotate_when_quiet,
    heartbeat_every,
    include_name,
    exclude_name,
    include_label,
    exclude_label,
    include_image,
    from,
    metrics_addr,
    stop_timeout,
    max_file_size,
    max_files,
    checkpoint_every,
    read_pause,
    log_format,
    log_level,
    nats_url,
    nats_stream,
    nats_subject_prefix,
    nats_creds,
    nats_ca,
    nats_replicas,
    loki_url,
    loki_tenant,
    loki_username,
    loki_password,
    loki_bearer_token,
    loki_ca,
    loki_label,
    loki_encoding,
    loki_batch_size,
    loki_batch_wait,
    loki_structured_metadata,
    loki_max_line_size,
);

const EXPECTED: &str = "a string, a number, true or false, or a list of them";

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        struct Scalar;
        impl Visitor<'_> for Scalar {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a number, true or false")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_owned())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
                Ok(v.to_string())
            }
        }
        struct AnyValue;
        impl<'de> Visitor<'de> for AnyValue {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
                Scalar.visit_str(v).map(Value::One)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
                Scalar.visit_i64(v).map(Value::One)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
                Scalar.visit_u64(v).map(Value::One)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
                Scalar.visit_f64(v).map(Value::One)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
                Scalar.visit_bool(v).map(Value::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
                struct Item(String);
                impl<'de> Deserialize<'de> for Item {
                    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Item, D::Error> {
                        d.deserialize_any(Scalar).map(Item)
                    }
                }
                let mut items = Vec::new();
                while let Some(Item(s)) = seq.next_element()? {
                    items.push(s);
                }
                Ok(Value::List(items))
            }
        }
        d.deserialize_any(AnyValue)
    }
}

/// The settings in the file at `path`, by key. `source` says how the file was named (for an
/// error reading it).
pub(super) fn read(path: &Path, named_by: &str) -> Result<Vec<(&'static str, Raw)>, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        err(
            "config",
            &Source::Named(named_by.to_owned()),
            &format!("cannot read {shown}: {e}"),
        )
    })?;
    let file = Source::File(shown.clone());
    let settings: FileSettings = toml::from_str(&text).map_err(|e| {
        let key = key_of(&text, &e).unwrap_or_else(|| "config".to_owned());
        let problem = if e.message().starts_with("unknown field") {
            match suggest(&key) {
                Some(near) => format!("unknown key (did you mean {near}?)"),
                None => "unknown key (the keys are the flags' names with underscores)".to_owned(),
            }
        } else {
            format!("not valid TOML: {}", e.message().trim())
        };
        err(&key, &file, &problem)
    })?;
    let mut out = Vec::new();
    for (key, value) in settings.entries() {
        let kind = KEYS
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(Kind::One, |(_, kind)| *kind);
        let values = match (value, kind) {
            (Value::One(v), _) => vec![v],
            (Value::List(items), Kind::Many) => items,
            (Value::List(_), Kind::One) => {
                return Err(err(key, &file, "takes one value, not a list"));
            }
        };
        out.push((
            key,
            Raw {
                values,
                source: file.clone(),
            },
        ));
    }
    Ok(out)
}

/// The key at the error's place in the file: the span of an unknown key, or the key of the
/// line a bad value is on.
fn key_of(text: &str, e: &toml::de::Error) -> Option<String> {
    let span = e.span()?;
    let spanned = text.get(span.clone())?.trim();
    if e.message().starts_with("unknown field") {
        return Some(spanned.trim_matches(['"', '\'']).to_owned());
    }
    let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    Some(key.trim().trim_matches(['"', '\'']).to_owned())
}

/// The known key nearest to an unknown one, if it is one or two edits away.
fn suggest(unknown: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|(k, _)| (*k, edit_distance(unknown, k)))
        .filter(|(_, d)| *d <= 2)
        .min_by_key(|(_, d)| *d)
        .map(|(k, _)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
