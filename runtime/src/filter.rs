//! Which containers to capture: name, label and image selectors.

use std::collections::HashMap;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::config::{LabelSelector, Settings};

/// The selectors of `--include-*` / `--exclude-*`, compiled.
#[derive(Clone, Debug)]
pub struct Filter {
    include_name: Option<GlobSet>,
    exclude_name: GlobSet,
    include_label: Vec<LabelSelector>,
    exclude_label: Vec<LabelSelector>,
    include_image: Option<GlobSet>,
}

/// What a selector looks at.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// The container's name, without the leading `/`.
    pub name: &'a str,
    /// The image name the container was created from.
    pub image: &'a str,
    /// The container's labels.
    pub labels: &'a HashMap<String, String>,
}

impl Filter {
    /// Compiles the selectors (the globs were validated with the settings).
    pub fn new(s: &Settings) -> Result<Filter, globset::Error> {
        let set = |globs: &[String]| -> Result<GlobSet, globset::Error> {
            let mut b = GlobSetBuilder::new();
            for g in globs {
                b.add(Glob::new(g)?);
            }
            b.build()
        };
        let optional = |globs: &[String]| -> Result<Option<GlobSet>, globset::Error> {
            if globs.is_empty() {
                Ok(None)
            } else {
                set(globs).map(Some)
            }
        };
        Ok(Filter {
            include_name: optional(&s.include_name)?,
            exclude_name: set(&s.exclude_name)?,
            include_label: s.include_label.clone(),
            exclude_label: s.exclude_label.clone(),
            include_image: optional(&s.include_image)?,
        })
    }

    /// Whether to capture this container: every include kind that is set matches (any of its
    /// selectors), and no exclude matches.
    pub fn selects(&self, c: Subject<'_>) -> bool {
        let has = |sel: &LabelSelector| match (c.labels.get(&sel.key), &sel.value) {
            (Some(_), None) => true,
            (Some(v), Some(want)) => v == want,
            (None, _) => false,
        };
        self.include_name
            .as_ref()
            .is_none_or(|g| g.is_match(c.name))
            && self
                .include_image
                .as_ref()
                .is_none_or(|g| g.is_match(c.image))
            && (self.include_label.is_empty() || self.include_label.iter().any(has))
            && !self.exclude_name.is_match(c.name)
            && !self.exclude_label.iter().any(has)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn filter(args: &[&str]) -> Filter {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Filter::new(&Settings::load(&args, &BTreeMap::new()).unwrap()).unwrap()
    }

    #[test]
    fn includes_and_excludes() {
        let labels: HashMap<String, String> = [("team".to_string(), "a".to_string())].into();
        let none = HashMap::new();
        let web = Subject {
            name: "web-1",
            image: "nginx:1",
            labels: &labels,
        };
        let db = Subject {
            name: "db",
            image: "postgres:16",
            labels: &none,
        };
        let all = filter(&[]);
        assert!(all.selects(web) && all.selects(db));
        let f = filter(&["--include-name", "web-*"]);
        assert!(f.selects(web) && !f.selects(db));
        let f = filter(&["--include-label", "team=a"]);
        assert!(f.selects(web) && !f.selects(db));
        let f = filter(&["--include-label", "team=b"]);
        assert!(!f.selects(web));
        let f = filter(&["--exclude-label", "team"]);
        assert!(!f.selects(web) && f.selects(db));
        let f = filter(&["--include-image", "postgres:*", "--exclude-name", "db"]);
        assert!(!f.selects(web) && !f.selects(db));
    }
}
