//! Lines longer than the server takes (`max_payload`): published cut short, marked.

use bytes::Bytes;

/// `record` with its message cut so that the whole is at most `max` bytes, and marked
/// `"truncated":true`; `None` if even an empty message does not fit.
pub fn fit(record: &[u8], max: usize) -> Option<Bytes> {
    let mut value: serde_json::Value = serde_json::from_slice(record).ok()?;
    let text = value.get("message")?.as_str()?.to_owned();
    let mut keep = text.len();
    loop {
        let mut cut = keep.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        value["message"] = serde_json::Value::String(text[..cut].to_owned());
        value["truncated"] = serde_json::Value::Bool(true);
        let bytes = serde_json::to_vec(&value).ok()?;
        if bytes.len() <= max {
            return Some(Bytes::from(bytes));
        }
        if cut == 0 {
            return None;
        }
        // Escaping may make the message take more than its length: shrink in proportion.
        let scaled = (cut as u128 * max as u128 / bytes.len() as u128) as usize;
        keep = scaled.saturating_sub(16).min(cut - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_too_large_is_cut_to_fit_and_marked() {
        let record = format!(
            "{{\"container_id\":\"c\",\"stream\":\"stdout\",\"pos\":\"5.1\",\"message\":\"{}\"}}",
            "é\\n".repeat(5000)
        );
        let cut = fit(record.as_bytes(), 4000).unwrap();
        assert!(cut.len() <= 4000);
        let v: serde_json::Value = serde_json::from_slice(&cut).unwrap();
        assert_eq!(v["truncated"], true);
        assert_eq!(v["pos"], "5.1");
        assert!(v["message"].as_str().unwrap().starts_with("é\n"), "{v}");
        assert_eq!(fit(record.as_bytes(), 10), None);
    }
}
