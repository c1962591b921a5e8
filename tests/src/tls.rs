//! Certificates for the TLS tests of the sinks, made by openssl in a test's own directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A self-signed CA in `dir`: `<name>.pem` and `<name>.key`; returns the PEM file.
///
/// # Panics
/// If openssl is missing or fails.
pub fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let (pem, key) = (format!("{name}.pem"), format!("{name}.key"));
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            "/CN=log-capturer test CA",
        ],
        dir,
    );
    dir.join(pem)
}

/// Files of a server certificate for 127.0.0.1 and the CA that signed it.
pub struct ServerCertificate {
    /// The CA's PEM file, which clients must trust.
    pub ca: PathBuf,
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
}

/// A CA (`ca.pem`) and a certificate for 127.0.0.1 it signed (`server.pem`, `server.key`), in
/// `dir` (created if missing).
///
/// # Panics
/// If openssl is missing or fails.
pub fn server_certificate(dir: &Path) -> ServerCertificate {
    std::fs::create_dir_all(dir).expect("create the TLS directory");
    let ca = make_ca(dir, "ca");
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")
        .expect("write the SAN extension");
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        dir,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
        dir,
    );
    ServerCertificate {
        ca,
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

/// Runs `openssl args` in `dir`.
fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run openssl (apt-get install openssl): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
