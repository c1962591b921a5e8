//! Sets `LOG_CAPTURER_COMMIT` for `--version` (and the build-info metric): the commit the
//! binary is built from, `git rev-parse --short=12 HEAD`; or the variable of that name when the
//! build's environment sets it (a Docker build without `.git` can pass it in); else `unknown`.
//!
//! It reruns when HEAD moves (a checkout, or a commit on the branch HEAD points to), not on
//! every build.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env_dir())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn env_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
}

/// A path `git rev-parse --git-path` names, if it exists (a missing file in rerun-if-changed
/// would rerun the script on every build).
fn watch(git_path: &str) {
    if let Some(p) = git(&["rev-parse", "--git-path", git_path]) {
        let p = env_dir().join(p);
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LOG_CAPTURER_COMMIT");
    let given = std::env::var("LOG_CAPTURER_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty());
    let commit = given.or_else(|| {
        let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
        watch("HEAD");
        // The branch HEAD points to (absent when detached), loose or packed.
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch(&branch);
        }
        watch("packed-refs");
        Some(commit)
    });
    println!(
        "cargo:rustc-env=LOG_CAPTURER_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
}
