//! NATS in operator mode (decentralized JWT authentication) for the end-to-end test of
//! `--nats-creds`.
//!
//! [`NatsServer::use_operator`] makes what `nsc` would: an operator, a system account, an
//! account with JetStream and a user of it, and a user of an account the server is never told
//! of. Each key is an nkey made here; each JWT is `base64url(header).base64url(claims).
//! base64url(signature)`, signed by its issuer's nkey (nats-io/jwt v2, the schema
//! nats-server 2.9 reads). The server trusts the operator and knows the accounts from its
//! configuration (`resolver: MEMORY`, `resolver_preload`). A user's credentials file holds
//! its JWT and its seed, with which the client signs the server's nonce.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use nkeys::KeyPair;
use serde_json::{json, Value};

use crate::nats::NatsServer;

/// "No limit" in a JWT's limits. (A limit left out is 0, which for most means none allowed.)
const NO_LIMIT: i64 = -1;

/// The credentials files that [`NatsServer::use_operator`] made.
#[derive(Clone, Debug)]
pub struct OperatorCreds {
    /// A user of the account the server knows (JetStream on, no limits).
    pub good: PathBuf,
    /// A user signed by an account the server does not know: the server refuses it.
    pub stranger: PathBuf,
    /// The public key of the account the server knows.
    pub account: String,
    /// The public key of the account it does not.
    pub unknown_account: String,
}

impl NatsServer {
    /// Puts the server in operator mode from its next start: it trusts an operator made here
    /// and knows two accounts of it, the system account and one with JetStream; a client must
    /// present a user JWT of a known account and sign the nonce with the user's seed.
    /// Returns the credentials files of a good user and of a stranger.
    ///
    /// # Panics
    /// If a file cannot be written or a key cannot sign.
    pub fn use_operator(&mut self) -> OperatorCreds {
        let dir = self.dir().join("operator");
        std::fs::create_dir_all(&dir).expect("create the operator directory");
        let operator = KeyPair::new_operator();
        let system = KeyPair::new_account();
        let account = KeyPair::new_account();
        let unknown = KeyPair::new_account();
        let operator_jwt = jwt(
            &operator,
            &operator.public_key(),
            "lc-test-operator",
            json!({
                "type": "operator",
                "version": 2,
                "system_account": system.public_key(),
            }),
        );
        let system_jwt = jwt(&operator, &system.public_key(), "SYS", account_nats(false));
        let account_jwt = jwt(
            &operator,
            &account.public_key(),
            "lc-test",
            account_nats(true),
        );
        let operator_file = dir.join("operator.jwt");
        write(&operator_file, &operator_jwt);
        let config = dir.join("server.conf");
        write(
            &config,
            &format!(
                "operator: \"{}\"\nsystem_account: \"{}\"\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{system_jwt}\"\n  {}: \"{account_jwt}\"\n}}\n",
                operator_file.display(),
                system.public_key(),
                system.public_key(),
                account.public_key(),
            ),
        );
        self.use_config(config);
        let good = dir.join("good.creds");
        write(&good, &user_creds(&account, "capturer"));
        let stranger = dir.join("stranger.creds");
        write(&stranger, &user_creds(&unknown, "stranger"));
        OperatorCreds {
            good,
            stranger,
            account: account.public_key(),
            unknown_account: unknown.public_key(),
        }
    }
}

/// The `nats` claims of an account: no connection or message limits, no import or export
/// limits, and, if `jetstream`, JetStream with no limits (the system account must not have
/// it). JetStream is on where `mem_storage` or `disk_storage` is not 0.
fn account_nats(jetstream: bool) -> Value {
    let mut limits = json!({
        "subs": NO_LIMIT,
        "data": NO_LIMIT,
        "payload": NO_LIMIT,
        "imports": NO_LIMIT,
        "exports": NO_LIMIT,
        "wildcards": true,
        "conn": NO_LIMIT,
        "leaf": NO_LIMIT,
    });
    if jetstream {
        for key in ["mem_storage", "disk_storage", "streams", "consumer"] {
            limits[key] = json!(NO_LIMIT);
        }
    }
    json!({
        "type": "account",
        "version": 2,
        "limits": limits,
        "default_permissions": { "pub": {}, "sub": {} },
    })
}

/// A credentials file for a new user issued by `account`: may publish and subscribe to
/// anything, no limits, not a bearer token (the client proves it holds the seed).
fn user_creds(account: &KeyPair, name: &str) -> String {
    let user = KeyPair::new_user();
    let token = jwt(
        account,
        &user.public_key(),
        name,
        json!({
            "type": "user",
            "version": 2,
            "pub": {},
            "sub": {},
            "subs": NO_LIMIT,
            "data": NO_LIMIT,
            "payload": NO_LIMIT,
        }),
    );
    creds_text(&token, &user.seed().expect("the user's seed"))
}

/// A credentials file's text: the user's JWT and seed, framed as `nsc` writes them.
pub fn creds_text(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

/// A JWT of `subject` (a public key) named `name`, with the type-specific claims `nats`,
/// issued and signed by `issuer`.
///
/// `jti` is only an identifier: nats-io/jwt computes it as a hash of the other standard
/// claims, but nothing checks that (the server checks the signature, the issuer's and
/// subject's kinds, and trust); a unique value is enough here.
pub fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> String {
    static ISSUED: AtomicU64 = AtomicU64::new(0);
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    let n = ISSUED.fetch_add(1, Ordering::Relaxed);
    let jti = format!("LCTEST{}{iat}{n}", std::process::id());
    let header = json!({ "typ": "JWT", "alg": "ed25519-nkey" });
    let claims = json!({
        "jti": jti,
        "iat": iat,
        "iss": issuer.public_key(),
        "sub": subject,
        "name": name,
        "nats": nats,
    });
    let signed = format!("{}.{}", b64(&header), b64(&claims));
    let signature = issuer.sign(signed.as_bytes()).expect("sign a JWT");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// base64url, no padding, of `value`'s JSON.
fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("JSON of a claim"))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
