//! A real `nats-server` (JetStream, temporary store), and throwaway credentials and TLS
//! material made at run time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use station_core::process::{ChildProcess, CommandSpec};

use super::repo_root;

/// How long `nats-server` may take to accept connections.
const NATS_START_DEADLINE: Duration = Duration::from_secs(20);

/// The `nats-server` binary: `$STN_TEST_NATS_SERVER`, else the one on PATH. Panics with how
/// to install it when missing.
pub fn nats_server_bin() -> PathBuf {
    const HINT: &str =
        "install it with `apt-get install nats-server` (or set STN_TEST_NATS_SERVER)";
    if let Some(path) = std::env::var_os("STN_TEST_NATS_SERVER") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "STN_TEST_NATS_SERVER={} does not exist; {HINT}",
            path.display()
        );
        return path;
    }
    CommandSpec::new("nats-server", repo_root())
        .resolve_program()
        .unwrap_or_else(|_| panic!("`nats-server` was not found on PATH: {HINT}"))
}

/// A running `nats-server -js` on 127.0.0.1 with a temporary store; killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    /// `nats://127.0.0.1:PORT` (`tls://` for [`NatsServer::start_tls`]).
    pub url: String,
    /// The client port (kept across restarts).
    pub port: u16,
    store: tempfile::TempDir,
    /// The server config file (TLS), kept across restarts.
    config_file: Option<PathBuf>,
    child: Option<ChildProcess>,
}

impl NatsServer {
    /// Start on a port the server picks, with JetStream and a fresh store directory. Panics
    /// when it does not accept connections within 20 s.
    pub async fn start() -> NatsServer {
        Self::start_with(None, "nats").await
    }

    /// Start with `config` (the server config file's text) if any, in a fresh store; the URL
    /// has `scheme`.
    async fn start_with(config: Option<String>, scheme: &str) -> NatsServer {
        let store = tempfile::tempdir().expect("a temporary store directory");
        let config_file = config.map(|text| {
            let file = store.path().join("nats-server.conf");
            std::fs::write(&file, text).expect("write the nats-server config");
            file
        });
        let child = spawn_nats(store.path(), None, config_file.as_deref());
        let port = wait_for_port(&child).await;
        wait_accepting(port, &child).await;
        NatsServer {
            url: format!("{scheme}://127.0.0.1:{port}"),
            port,
            store,
            config_file,
            child: Some(child),
        }
    }

    /// Like [`NatsServer::start`], but clients must use TLS with the server certificate of
    /// `tls`; with `verify_clients` they must also present a certificate signed by its CA
    /// (mutual TLS). The URL is `tls://127.0.0.1:PORT`.
    pub async fn start_tls(tls: &TlsFiles, verify_clients: bool) -> NatsServer {
        // nats-server's config syntax takes JSON strings.
        let quoted = |p: &Path| serde_json::to_string(&p.to_string_lossy()).expect("a string");
        let config = format!(
            "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: {verify_clients}\n  timeout: 5\n}}\n",
            quoted(&tls.server_cert),
            quoted(&tls.server_key),
            quoted(&tls.ca_file),
        );
        Self::start_with(Some(config), "tls").await
    }

    /// Like [`NatsServer::start`], but in operator mode (decentralised JWT auth): only users
    /// of the account in `creds` get in, with a `.creds` file ([`NatsCreds::creds_file`]).
    pub async fn start_with_accounts(creds: &NatsCreds) -> NatsServer {
        let quoted = |s: &str| serde_json::to_string(s).expect("a string");
        let config = format!(
            "operator: {}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {}\n  {}: {}\n}}\n",
            quoted(&creds.operator_jwt),
            quoted(&creds.system_account),
            quoted(&creds.system_account),
            quoted(&creds.system_account_jwt),
            quoted(&creds.account),
            quoted(&creds.account_jwt),
        );
        Self::start_with(Some(config), "nats").await
    }

    /// Stop the server (SIGTERM, then SIGKILL after 2 s). [`NatsServer::restart`] brings it back.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.terminate(Duration::from_secs(2)).await;
        }
    }

    /// Stop the server and start it again on the same port and store directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        let child = spawn_nats(
            self.store.path(),
            Some(self.port),
            self.config_file.as_deref(),
        );
        wait_accepting(self.port, &child).await;
        self.child = Some(child);
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }
}

fn spawn_nats(store: &Path, port: Option<u16>, config_file: Option<&Path>) -> ChildProcess {
    let port = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
    let mut command = CommandSpec::new(nats_server_bin(), store);
    if let Some(config_file) = config_file {
        command = command.arg("-c").arg(config_file);
    }
    // Flags after `-c` override the file.
    command
        .args(["-js", "-a", "127.0.0.1", "-p", &port, "--store_dir"])
        .arg(store)
        .install_hint("apt-get install nats-server")
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start nats-server: {e}"))
}

/// Throwaway NATS decentralised-auth material made at run time: an operator, a system account,
/// an account with JetStream, a user of it (as a `.creds` file), and a user of an account the
/// server does not know. Files in a temporary directory, removed on drop.
#[derive(Debug)]
pub struct NatsCreds {
    /// A user of the server's account: JWT and seed, in the format `nsc` writes.
    pub creds_file: PathBuf,
    /// A user of an account the server does not know (it must be refused).
    pub stranger_creds_file: PathBuf,
    operator_jwt: String,
    system_account: String,
    system_account_jwt: String,
    account: String,
    account_jwt: String,
    _dir: tempfile::TempDir,
}

impl NatsCreds {
    /// Generate fresh keys and JWTs (panics if that fails).
    pub fn generate() -> NatsCreds {
        use nkeys::KeyPair;
        let operator = KeyPair::new_operator();
        let system = KeyPair::new_account();
        let account = KeyPair::new_account();
        let stranger_account = KeyPair::new_account();
        let unlimited = serde_json::json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
            "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1
        });
        let account_claims = |name: &str, jetstream: bool| {
            let mut limits = unlimited.clone();
            if !jetstream {
                for k in ["mem_storage", "disk_storage", "streams", "consumer"] {
                    limits[k] = 0.into();
                }
            }
            serde_json::json!({"limits": limits, "type": "account", "version": 2, "name": name})
        };
        let user_claims = serde_json::json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2
        });
        let operator_jwt = nats_jwt(
            &operator,
            &operator.public_key(),
            "test-operator",
            serde_json::json!({"type": "operator", "version": 2, "system_account": system.public_key()}),
        );
        let system_account_jwt = nats_jwt(
            &operator,
            &system.public_key(),
            "SYS",
            account_claims("SYS", false),
        );
        let account_jwt = nats_jwt(
            &operator,
            &account.public_key(),
            "station",
            account_claims("station", true),
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        let write_user = |issuer: &KeyPair, file: &str| {
            let user = KeyPair::new_user();
            let jwt = nats_jwt(
                issuer,
                &user.public_key(),
                "station-user",
                user_claims.clone(),
            );
            let seed = user.seed().expect("a user seed");
            let creds = format!(
                "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
                 ************************* IMPORTANT *************************\n\
                 NKEY Seed printed below can be used to sign and prove identity.\n\
                 NKEYs are sensitive and should be treated as secrets.\n\n\
                 -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
                 *************************************************************\n"
            );
            let path = dir.path().join(file);
            std::fs::write(&path, creds).expect("write a creds file");
            path
        };
        let creds_file = write_user(&account, "station.creds");
        let stranger_creds_file = write_user(&stranger_account, "stranger.creds");
        NatsCreds {
            creds_file,
            stranger_creds_file,
            operator_jwt,
            system_account: system.public_key(),
            system_account_jwt,
            account: account.public_key(),
            account_jwt,
            _dir: dir,
        }
    }
}

/// A NATS JWT (`ed25519-nkey`) for `subject`, signed by `issuer`.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let jti = format!("{:X}{:X}", now, std::process::id()) + &subject[1..20];
    let claims = serde_json::json!({
        "jti": jti, "iat": now, "iss": issuer.public_key(), "name": name, "sub": subject,
        "nats": nats
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{claims}");
    let signature = issuer
        .sign(signing_input.as_bytes())
        .expect("an nkey signature");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Throwaway TLS material made at run time: a CA, a server certificate for `127.0.0.1` and
/// `localhost` and a client certificate, both signed by the CA, plus an unrelated CA. PEM
/// files in a temporary directory, removed on drop.
#[derive(Debug)]
pub struct TlsFiles {
    /// The CA that signed the server and client certificates.
    pub ca_file: PathBuf,
    /// A CA that signed nothing here (trusting it alone must fail).
    pub other_ca_file: PathBuf,
    /// The server certificate (SANs `127.0.0.1`, `localhost`).
    pub server_cert: PathBuf,
    /// The server certificate's key.
    pub server_key: PathBuf,
    /// A client certificate for mutual TLS.
    pub client_cert: PathBuf,
    /// The client certificate's key.
    pub client_key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsFiles {
    /// Generate fresh keys and certificates (panics if that fails).
    pub fn generate() -> TlsFiles {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };

        fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let key = KeyPair::generate().expect("a CA key");
            let cert = params.self_signed(&key).expect("a self-signed CA");
            (cert.pem(), Issuer::new(params, key))
        }

        fn leaf(
            names: &[&str],
            usage: ExtendedKeyUsagePurpose,
            issuer: &Issuer<'static, KeyPair>,
        ) -> (String, String) {
            let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            let mut params = CertificateParams::new(names.clone()).expect("leaf params");
            params.distinguished_name.push(
                DnType::CommonName,
                names.first().cloned().unwrap_or_default(),
            );
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![usage];
            params.use_authority_key_identifier_extension = true;
            let key = KeyPair::generate().expect("a leaf key");
            let cert = params.signed_by(&key, issuer).expect("a signed leaf");
            (cert.pem(), key.serialize_pem())
        }

        let dir = tempfile::tempdir().expect("a temporary TLS directory");
        let (ca_pem, issuer) = ca("Station test CA");
        let (other_ca_pem, _) = ca("Station unrelated CA");
        let (server_pem, server_key) = leaf(
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
        );
        let (client_pem, client_key) = leaf(
            &["station-test-client"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &issuer,
        );
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {name}: {e}"));
            path
        };
        TlsFiles {
            ca_file: write("ca.pem", &ca_pem),
            other_ca_file: write("other-ca.pem", &other_ca_pem),
            server_cert: write("server.pem", &server_pem),
            server_key: write("server-key.pem", &server_key),
            client_cert: write("client.pem", &client_pem),
            client_key: write("client-key.pem", &client_key),
            _dir: dir,
        }
    }
}

/// The port from `Listening for client connections on 127.0.0.1:PORT` in the server's log.
async fn wait_for_port(child: &ChildProcess) -> u16 {
    const MARK: &str = "Listening for client connections on 127.0.0.1:";
    let deadline = tokio::time::Instant::now() + NATS_START_DEADLINE;
    while tokio::time::Instant::now() < deadline {
        let log = child.stderr_tail();
        if let Some(port) = log.split(MARK).nth(1).and_then(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        }) {
            return port;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "nats-server did not report its port within {NATS_START_DEADLINE:?}; log: {}",
        child.stderr_tail()
    );
}

pub(crate) async fn wait_accepting(port: u16, child: &ChildProcess) {
    let deadline = tokio::time::Instant::now() + NATS_START_DEADLINE;
    while tokio::time::Instant::now() < deadline {
        let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "nats-server on port {port} did not accept connections within {NATS_START_DEADLINE:?}; log: {}",
        child.stderr_tail()
    );
}
