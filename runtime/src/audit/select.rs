//! Which containers an audit judges: `--container`, `--include-name`, `--exclude-name` and
//! `--include-label`, matched as `run` matches its own selectors (globs by globset).

use std::collections::HashMap;

use globset::{Glob, GlobSet, GlobSetBuilder};

/// The audit's selectors as given on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selectors {
    /// Names, full ids or id prefixes (any).
    pub containers: Vec<String>,
    /// Name globs, any of which must match.
    pub include_name: Vec<String>,
    /// Name globs, none of which may match.
    pub exclude_name: Vec<String>,
    /// `KEY` or `KEY=VALUE`, any of which must match.
    pub include_label: Vec<String>,
}

/// The selectors, compiled.
#[derive(Clone, Debug)]
pub struct Selection {
    containers: Vec<String>,
    include_name: Option<GlobSet>,
    exclude_name: GlobSet,
    include_label: Vec<(String, Option<String>)>,
}

/// What a selector looks at: labels are known only for containers the daemon lists.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// The full id.
    pub id: &'a str,
    /// The name, without the leading `/`.
    pub name: &'a str,
    /// The labels, if the daemon lists it.
    pub labels: Option<&'a HashMap<String, String>>,
}

impl Selection {
    /// Compiles `s`; the error names the glob that does not compile.
    pub fn new(s: &Selectors) -> Result<Selection, String> {
        let set = |globs: &[String]| -> Result<GlobSet, String> {
            let mut b = GlobSetBuilder::new();
            for g in globs {
                b.add(Glob::new(g).map_err(|e| format!("{g:?}: {e}"))?);
            }
            b.build().map_err(|e| e.to_string())
        };
        Ok(Selection {
            containers: s.containers.clone(),
            include_name: if s.include_name.is_empty() {
                None
            } else {
                Some(set(&s.include_name)?)
            },
            exclude_name: set(&s.exclude_name)?,
            include_label: s
                .include_label
                .iter()
                .map(|l| match l.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                    None => (l.clone(), None),
                })
                .collect(),
        })
    }

    /// Whether `c` is selected: every kind of selector given matches, and no exclusion does. A
    /// label selector never matches a container whose labels are unknown.
    pub fn selects(&self, c: Candidate<'_>) -> bool {
        let named = self.containers.is_empty()
            || self
                .containers
                .iter()
                .any(|n| n == c.name || (!n.is_empty() && c.id.starts_with(n.as_str())));
        let labelled = self.include_label.is_empty()
            || c.labels.is_some_and(|labels| {
                self.include_label
                    .iter()
                    .any(|(k, v)| match (labels.get(k), v) {
                        (Some(_), None) => true,
                        (Some(have), Some(want)) => have == want,
                        (None, _) => false,
                    })
            });
        named
            && labelled
            && self
                .include_name
                .as_ref()
                .is_none_or(|g| g.is_match(c.name))
            && !self.exclude_name.is_match(c.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_combine_as_run_combines_them() {
        let labels: HashMap<String, String> = [("team".to_owned(), "a".to_owned())].into();
        let web = Candidate {
            id: "abc123",
            name: "web-1",
            labels: Some(&labels),
        };
        let gone = Candidate {
            id: "def456",
            name: "db",
            labels: None,
        };
        let all = Selection::new(&Selectors::default()).unwrap();
        assert!(all.selects(web) && all.selects(gone));
        let pick = |s: Selectors| Selection::new(&s).unwrap();
        let by_id = pick(Selectors {
            containers: vec!["def".into()],
            ..Selectors::default()
        });
        assert!(!by_id.selects(web) && by_id.selects(gone));
        let by_name = pick(Selectors {
            include_name: vec!["web-*".into()],
            ..Selectors::default()
        });
        assert!(by_name.selects(web) && !by_name.selects(gone));
        let by_label = pick(Selectors {
            include_label: vec!["team=a".into()],
            ..Selectors::default()
        });
        assert!(by_label.selects(web) && !by_label.selects(gone));
        let excluded = pick(Selectors {
            exclude_name: vec!["web*".into()],
            ..Selectors::default()
        });
        assert!(!excluded.selects(web) && excluded.selects(gone));
        assert!(Selection::new(&Selectors {
            include_name: vec!["[".into()],
            ..Selectors::default()
        })
        .is_err());
    }
}
