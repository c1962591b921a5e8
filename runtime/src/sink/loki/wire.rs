//! Loki's push body: `logproto.PushRequest` (grafana/loki `pkg/push/push.proto`, the field
//! numbers below are that file's) compressed with snappy's block format, or the JSON body of
//! `POST /loki/api/v1/push`.
//!
//! Strings are declared as `bytes` here: on the wire a proto3 `string` and `bytes` are the same
//! length-delimited field, and `bytes` lets an entry's line be a slice of the batch the readers
//! sent (no copy per line). Every line is a JSON record, valid UTF-8 by construction.

use std::io;

use bytes::Bytes;
use prost::Message;

/// `logproto.PushRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct PushRequest {
    /// `repeated StreamAdapter streams = 1`.
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `logproto.StreamAdapter`: one label set and its entries.
#[derive(Clone, PartialEq, Message)]
pub struct StreamAdapter {
    /// `string labels = 1`: `{name="value", ...}`.
    #[prost(bytes = "bytes", tag = "1")]
    pub labels: Bytes,
    /// `repeated EntryAdapter entries = 2`.
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    /// `uint64 hash = 3`: set by Loki itself, zero from a client.
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `logproto.EntryAdapter`.
#[derive(Clone, PartialEq, Message)]
pub struct EntryAdapter {
    /// `google.protobuf.Timestamp timestamp = 1`.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    /// `string line = 2`.
    #[prost(bytes = "bytes", tag = "2")]
    pub line: Bytes,
    /// `repeated LabelPairAdapter structuredMetadata = 3`.
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

/// `logproto.LabelPairAdapter`.
#[derive(Clone, PartialEq, Message)]
pub struct LabelPairAdapter {
    /// `string name = 1`.
    #[prost(bytes = "bytes", tag = "1")]
    pub name: Bytes,
    /// `string value = 2`.
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct Timestamp {
    /// `int64 seconds = 1`.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// `int32 nanos = 2`.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    /// Nanoseconds since the epoch as a protobuf timestamp.
    pub fn from_nanos(ns: u64) -> Timestamp {
        Timestamp {
            seconds: (ns / 1_000_000_000) as i64,
            nanos: (ns % 1_000_000_000) as i32,
        }
    }
}

/// One entry to push.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Nanoseconds since the epoch: the daemon's timestamp of the line.
    pub ts: u64,
    /// The JSON record, without its newline.
    pub line: Bytes,
    /// The container id, sent as structured metadata `container_id` if wanted.
    pub id: Bytes,
}

/// The structured metadata key of the container id.
pub const CONTAINER_ID: &str = "container_id";

/// `entries` of the stream `labels` as a snappy-compressed `PushRequest`.
pub fn protobuf(labels: &Bytes, entries: &[Entry], metadata: bool) -> io::Result<Vec<u8>> {
    let name = Bytes::from_static(CONTAINER_ID.as_bytes());
    let request = PushRequest {
        streams: vec![StreamAdapter {
            labels: labels.clone(),
            entries: entries
                .iter()
                .map(|e| EntryAdapter {
                    timestamp: Some(Timestamp::from_nanos(e.ts)),
                    line: e.line.clone(),
                    structured_metadata: if metadata {
                        vec![LabelPairAdapter {
                            name: name.clone(),
                            value: e.id.clone(),
                        }]
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
            hash: 0,
        }],
    };
    let raw = request.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .map_err(io::Error::other)
}

/// `entries` of the stream labelled `pairs` as the JSON push body:
/// `{"streams":[{"stream":{..},"values":[["<ns>","<line>",{"container_id":".."}],..]}]}`.
pub fn json(pairs: &[(String, String)], entries: &[Entry], metadata: bool) -> io::Result<Vec<u8>> {
    let size: usize = entries.iter().map(|e| e.line.len() + 120).sum();
    let mut out = Vec::with_capacity(size + 256);
    out.extend_from_slice(b"{\"streams\":[{\"stream\":{");
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, name).map_err(io::Error::other)?;
        out.push(b':');
        serde_json::to_writer(&mut out, value).map_err(io::Error::other)?;
    }
    out.extend_from_slice(b"},\"values\":[");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"[\"");
        out.extend_from_slice(e.ts.to_string().as_bytes());
        out.extend_from_slice(b"\",");
        let line = std::str::from_utf8(&e.line)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
        serde_json::to_writer(&mut out, line).map_err(io::Error::other)?;
        if metadata {
            out.extend_from_slice(b",{\"container_id\":");
            let id = std::str::from_utf8(&e.id)
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
            serde_json::to_writer(&mut out, id).map_err(io::Error::other)?;
            out.push(b'}');
        }
        out.push(b']');
    }
    out.extend_from_slice(b"]}]}");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<Entry> {
        vec![
            Entry {
                ts: 1_700_000_000_123_456_789,
                line: Bytes::from_static(b"{\"message\":\"a \\\"q\\\"\",\"pos\":\"1.0\"}"),
                id: Bytes::from_static(b"abc"),
            },
            Entry {
                ts: 1_700_000_000_123_456_789,
                line: Bytes::from_static(b"{\"message\":\"a \\\"q\\\"\",\"pos\":\"1.1\"}"),
                id: Bytes::from_static(b"abc"),
            },
        ]
    }

    #[test]
    fn protobuf_round_trips_through_snappy_with_push_proto_field_numbers() {
        let labels = Bytes::from_static(b"{stream=\"stdout\"}");
        let body = protobuf(&labels, &entries(), true).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        // Field 1 of PushRequest, length-delimited: tag byte (1 << 3) | 2.
        assert_eq!(raw[0], 0x0a);
        let back = PushRequest::decode(raw.as_slice()).unwrap();
        let s = &back.streams[0];
        assert_eq!(s.labels, labels);
        assert_eq!(s.entries.len(), 2);
        let t = s.entries[0].timestamp.unwrap();
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 123_456_789));
        assert_eq!(s.entries[1].line, entries()[1].line);
        assert_eq!(s.entries[0].structured_metadata[0].name, "container_id");
        assert_eq!(s.entries[0].structured_metadata[0].value, "abc");
        let bare = protobuf(&labels, &entries(), false).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&bare).unwrap();
        let back = PushRequest::decode(raw.as_slice()).unwrap();
        assert!(back.streams[0].entries[0].structured_metadata.is_empty());
    }

    #[test]
    fn json_is_lokis_push_shape() {
        let pairs = vec![("stream".to_owned(), "std\"out".to_owned())];
        let body = json(&pairs, &entries(), true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let s = &v["streams"][0];
        assert_eq!(s["stream"]["stream"], "std\"out");
        assert_eq!(s["values"][0][0], "1700000000123456789");
        assert_eq!(
            s["values"][1][1],
            "{\"message\":\"a \\\"q\\\"\",\"pos\":\"1.1\"}"
        );
        assert_eq!(s["values"][1][2]["container_id"], "abc");
        let bare = json(&pairs, &entries(), false).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bare).unwrap();
        assert_eq!(v["streams"][0]["values"][0].as_array().unwrap().len(), 2);
    }
}
