//! Stream labels from `--loki-label NAME=TEMPLATE`: parsed once, rendered once per container
//! and stream, written as Loki's label string `{name="value", ...}` (sorted by name, so that
//! the same set is always the same stream).

use std::collections::HashMap;

use bytes::Bytes;

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Name,
    Image,
    Stream,
    Host,
    Label(String),
}

/// The label templates.
#[derive(Clone, Debug)]
pub struct Templates {
    labels: Vec<(String, Vec<Part>)>,
    host: String,
}

/// What a template can refer to, for one container.
pub struct Container<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its image.
    pub image: &'a str,
    /// Its Docker labels (empty if unknown).
    pub labels: &'a HashMap<String, String>,
}

/// A rendered label set: Loki's label string and the pairs, sorted by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSet {
    /// `{a="1", b="2"}`.
    pub text: Bytes,
    /// `[(a, 1), (b, 2)]`.
    pub pairs: Vec<(String, String)>,
}

impl Templates {
    /// Templates checked by the configuration (`config::parse_loki_label`); `host` is what
    /// `{host}` becomes.
    pub fn new(labels: &[(String, String)], host: String) -> Templates {
        Templates {
            labels: labels
                .iter()
                .map(|(name, t)| (name.clone(), parse(t)))
                .collect(),
            host,
        }
    }

    /// Whether some template needs the container's Docker labels (an inspect).
    pub fn need_docker_labels(&self) -> bool {
        self.labels
            .iter()
            .any(|(_, parts)| parts.iter().any(|p| matches!(p, Part::Label(_))))
    }

    /// The label set of `stream` of container `c`. A label whose value comes out empty is left
    /// out (Loki ignores it anyway); if none is left, `container_name` alone, since Loki
    /// refuses a stream without labels.
    pub fn render(&self, c: &Container<'_>, stream: &str) -> LabelSet {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, parts) in &self.labels {
            let mut value = String::new();
            for p in parts {
                match p {
                    Part::Text(t) => value.push_str(t),
                    Part::Name => value.push_str(c.name),
                    Part::Image => value.push_str(c.image),
                    Part::Stream => value.push_str(stream),
                    Part::Host => value.push_str(&self.host),
                    Part::Label(k) => value.push_str(c.labels.get(k).map_or("", String::as_str)),
                }
            }
            if !value.is_empty() {
                pairs.push((name.clone(), value));
            }
        }
        if pairs.is_empty() {
            let name = if c.name.is_empty() { "unnamed" } else { c.name };
            pairs.push(("container_name".to_owned(), name.to_owned()));
        }
        pairs.sort();
        let mut text = String::from("{");
        for (i, (name, value)) in pairs.iter().enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            text.push_str(name);
            text.push_str("=\"");
            quote(&mut text, value);
            text.push('"');
        }
        text.push('}');
        LabelSet {
            text: Bytes::from(text),
            pairs,
        }
    }
}

/// A template as parts; unknown placeholders were refused by the configuration, and are kept
/// as text here.
fn parse(template: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(len) = rest[open..].find('}') else {
            break;
        };
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_owned()));
        }
        let field = &rest[open + 1..open + len];
        parts.push(match field {
            "container_name" => Part::Name,
            "image" => Part::Image,
            "stream" => Part::Stream,
            "host" => Part::Host,
            f => match f.strip_prefix("label:") {
                Some(k) => Part::Label(k.to_owned()),
                None => Part::Text(rest[open..=open + len].to_owned()),
            },
        });
        rest = &rest[open + len + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    parts
}

/// `value` escaped as inside a double-quoted label value of Loki's (PromQL's) label syntax.
fn quote(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
}

/// This machine's host name, for `{host}`.
pub fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            let name = std::fs::read_to_string(p).ok()?;
            let name = name.trim();
            (!name.is_empty()).then(|| name.to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LOKI_DEFAULT_LABELS;

    fn defaults() -> Templates {
        let labels: Vec<(String, String)> = LOKI_DEFAULT_LABELS
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect();
        Templates::new(&labels, "h1".to_owned())
    }

    #[test]
    fn defaults_name_stream_host_and_the_compose_service_when_there_is_one() {
        let t = defaults();
        assert!(t.need_docker_labels());
        let none = HashMap::new();
        let c = Container {
            name: "web",
            image: "nginx",
            labels: &none,
        };
        let set = t.render(&c, "stdout");
        assert_eq!(
            set.text,
            "{container_name=\"web\", host=\"h1\", stream=\"stdout\"}"
        );
        let compose = HashMap::from([("com.docker.compose.service".to_owned(), "api".to_owned())]);
        let c = Container {
            labels: &compose,
            ..c
        };
        let set = t.render(&c, "stderr");
        assert_eq!(
            set.text,
            "{compose_service=\"api\", container_name=\"web\", host=\"h1\", stream=\"stderr\"}"
        );
        assert_eq!(set.pairs[0], ("compose_service".into(), "api".into()));
    }

    #[test]
    fn templates_mix_text_and_fields_and_values_are_quoted() {
        let labels = vec![
            ("job".to_owned(), "docker/{image}".to_owned()),
            ("app".to_owned(), "{label:app}".to_owned()),
        ];
        let t = Templates::new(&labels, "h".to_owned());
        let l = HashMap::from([("app".to_owned(), "a\"b\\c\nd".to_owned())]);
        let c = Container {
            name: "n",
            image: "img:1",
            labels: &l,
        };
        assert_eq!(
            t.render(&c, "stdout").text,
            "{app=\"a\\\"b\\\\c\\nd\", job=\"docker/img:1\"}"
        );
        let none = HashMap::new();
        let only_label = Templates::new(&labels[1..], "h".to_owned());
        let c = Container { labels: &none, ..c };
        assert_eq!(
            only_label.render(&c, "stdout").text,
            "{container_name=\"n\"}",
            "never a stream without labels"
        );
    }
}
