//! Logging in to Vault other than with a token, against the real OpenBao server: AppRole, and
//! Kubernetes against a stand-in for the Kubernetes TokenReview API (the one piece not real
//! here); each runs a rotation, a rejected login writes nothing, and the service-account token
//! is read again at each login.

mod common;

use common::*;
use rekey_api::{ErrorKind, SecretStore, SecretString};
use rekey_testkit::openbao::OpenBao;
use rekey_vault::{VaultAuth, VaultStore};
use serde_json::Value;
use std::time::Duration;

#[tokio::test]
async fn approle_login_runs_a_rotation() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("approle");
    // The role's token holds only the minimal policy.
    token_with_policy(bao, &prefix, None, &[]);
    bao.bao_ok(&["auth", "enable", &format!("-path={prefix}"), "approle"]);
    bao.bao_ok(&[
        "write",
        &format!("auth/{prefix}/role/rekey"),
        &format!("token_policies={prefix}"),
        "token_ttl=5m",
    ]);
    let role_id = bao.bao_ok(&[
        "read",
        "-field=role_id",
        &format!("auth/{prefix}/role/rekey/role-id"),
    ]);
    let secret_id = bao.bao_ok(&[
        "write",
        "-f",
        "-field=secret_id",
        &format!("auth/{prefix}/role/rekey/secret-id"),
    ]);
    let auth = VaultAuth::AppRole {
        mount: prefix.clone(),
        role_id: role_id.trim().to_string(),
        secret_id: SecretString::new(secret_id),
    };
    let store = VaultStore::new(config(bao, &prefix, auth)).unwrap();
    store.preflight(CRED).await.unwrap();
    rotate(&store, 1).await;
    store.append_journal(CRED, &entry(1, "r1")).await.unwrap();
    assert_eq!(
        rekey_testkit::conformance::unchained(store.read_journal(CRED).await.unwrap()),
        vec![entry(1, "r1")]
    );
    assert_eq!(
        kv_field(bao, &format!("{prefix}/{CRED}/current"), "generation"),
        "1"
    );

    let bad = VaultAuth::AppRole {
        mount: prefix.clone(),
        role_id: role_id.trim().to_string(),
        secret_id: SecretString::new("not-the-secret-id"),
    };
    let err = VaultStore::new(config(bao, &prefix, bad))
        .unwrap()
        .preflight(CRED)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(!err.to_string().contains("not-the-secret-id"));
}

/// The service account every Kubernetes test logs in as.
const SA_NAMESPACE: &str = "payments";
const SA_NAME: &str = "rekey";
const SA_UID: &str = "4c1e7a52-9d0b-4f3e-8a61-2b7d5e0f9c13";
/// The bearer OpenBao presents to the TokenReview API (`token_reviewer_jwt`). The responder
/// insists on it, as an API server would, so a review made with the login JWT instead fails.
const REVIEWER_BEARER: &str = "token-reviewer-bearer";

/// A stand-in for the one Kubernetes API endpoint OpenBao's Kubernetes auth method calls,
/// `POST /apis/authentication.k8s.io/v1/tokenreviews`, over TLS: OpenBao 2.7.2 refuses a config
/// without `kubernetes_ca_cert` once `disable_local_ca_jwt` is set, so the CA it must be given
/// might as well be one it really checks.
struct TokenReviewer {
    /// `https://127.0.0.1:PORT`, OpenBao's `kubernetes_host`.
    host: String,
    /// The self-signed certificate it serves, OpenBao's `kubernetes_ca_cert`.
    ca_pem: String,
    /// `spec.token` of every review asked for, in order.
    reviewed: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl TokenReviewer {
    /// Serves on 127.0.0.1:0 until the test's runtime ends. Reviews of a token in `accepted`
    /// authenticate the service account; any other token is not authenticated.
    async fn start(accepted: &[&str]) -> TokenReviewer {
        use axum::body::Bytes;
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode, header};
        use std::sync::{Arc, Mutex};

        #[derive(Clone)]
        struct Review {
            accepted: Arc<Vec<String>>,
            reviewed: Arc<Mutex<Vec<String>>>,
        }

        async fn review(
            State(state): State<Review>,
            headers: HeaderMap,
            body: Bytes,
        ) -> (StatusCode, axum::Json<Value>) {
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if bearer != Some(&format!("Bearer {REVIEWER_BEARER}")) {
                // The API server's answer to a caller it does not know.
                let status = serde_json::json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized",
                    "code": 401
                });
                return (StatusCode::UNAUTHORIZED, axum::Json(status));
            }
            let request: Value = serde_json::from_slice(&body).unwrap();
            let token = request["spec"]["token"].as_str().unwrap_or_default();
            state.reviewed.lock().unwrap().push(token.to_string());
            let status = if state.accepted.iter().any(|t| t == token) {
                serde_json::json!({
                    "authenticated": true,
                    "user": {
                        "username": format!("system:serviceaccount:{SA_NAMESPACE}:{SA_NAME}"),
                        "uid": SA_UID,
                        "groups": [
                            "system:serviceaccounts",
                            format!("system:serviceaccounts:{SA_NAMESPACE}"),
                            "system:authenticated"
                        ]
                    },
                    // OpenBao asks for the token's own audiences and insists on one back.
                    "audiences": request["spec"]["audiences"]
                })
            } else {
                serde_json::json!({ "authenticated": false, "user": {}, "error": "invalid bearer token" })
            };
            let answer = serde_json::json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "metadata": {},
                "spec": request["spec"],
                "status": status
            });
            (StatusCode::CREATED, axum::Json(answer))
        }

        /// axum over TLS: the handshake happens in `accept`, which is enough for one client.
        struct TlsListener {
            tcp: tokio::net::TcpListener,
            acceptor: tokio_rustls::TlsAcceptor,
        }

        impl axum::serve::Listener for TlsListener {
            type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
            type Addr = std::net::SocketAddr;

            async fn accept(&mut self) -> (Self::Io, Self::Addr) {
                loop {
                    let Ok((socket, addr)) = self.tcp.accept().await else {
                        continue;
                    };
                    if let Ok(stream) = self.acceptor.accept(socket).await {
                        return (stream, addr);
                    }
                }
            }

            fn local_addr(&self) -> std::io::Result<Self::Addr> {
                self.tcp.local_addr()
            }
        }

        let (tls, ca_pem) = loopback_tls();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = format!("https://{}", tcp.local_addr().unwrap());
        let listener = TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
        };
        let reviewed = Arc::new(Mutex::new(Vec::new()));
        let state = Review {
            accepted: Arc::new(accepted.iter().map(|t| t.to_string()).collect()),
            reviewed: reviewed.clone(),
        };
        let app = axum::Router::new()
            .route(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                axum::routing::post(review),
            )
            .with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        TokenReviewer {
            host,
            ca_pem,
            reviewed,
        }
    }

    fn reviewed(&self) -> Vec<String> {
        self.reviewed.lock().unwrap().clone()
    }
}

/// A projected service-account token as the kubelet mounts it (the kind it rotates), told
/// apart by `jti`. OpenBao parses its claims and requires an RS/ES signature, but without
/// `pem_keys` it leaves the verdict to the TokenReview, so a throwaway key signs it.
fn service_account_jwt(jti: &str) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "aud": ["https://kubernetes.default.svc.cluster.local"],
        "exp": now + 3600,
        "iat": now,
        "nbf": now,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "jti": jti,
        "kubernetes.io": {
            "namespace": SA_NAMESPACE,
            "pod": { "name": "rekey-7d9f8c6b5-x2kqp", "uid": "0f3b9c1e-5a7d-4e2b-9c8f-6d1a2b3c4d5e" },
            "serviceaccount": { "name": SA_NAME, "uid": SA_UID }
        },
        "sub": format!("system:serviceaccount:{SA_NAMESPACE}:{SA_NAME}")
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("test-signing-key".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Enables the Kubernetes auth method at `auth/<prefix>`, pointed at `reviewer`, with a role
/// `rekey` bound to the test's service account whose tokens hold only the minimal policy for
/// `prefix`. Only parameters HashiCorp Vault's Kubernetes method has too.
fn kubernetes_auth(bao: &OpenBao, prefix: &str, reviewer: &TokenReviewer, token_ttl: &[&str]) {
    token_with_policy(bao, prefix, None, &[]);
    bao.bao_ok(&["auth", "enable", &format!("-path={prefix}"), "kubernetes"]);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &reviewer.ca_pem).unwrap();
    bao.bao_ok(&[
        "write",
        &format!("auth/{prefix}/config"),
        &format!("kubernetes_host={}", reviewer.host),
        &format!("kubernetes_ca_cert=@{}", ca.display()),
        // The dev server is not in a pod: no local CA or reviewer JWT to fall back on.
        "disable_local_ca_jwt=true",
        &format!("token_reviewer_jwt={REVIEWER_BEARER}"),
    ]);
    let mut role = vec![
        "write".to_string(),
        format!("auth/{prefix}/role/rekey"),
        format!("bound_service_account_names={SA_NAME}"),
        format!("bound_service_account_namespaces={SA_NAMESPACE}"),
        format!("token_policies={prefix}"),
    ];
    role.extend(token_ttl.iter().map(|s| s.to_string()));
    bao.bao_ok(&role.iter().map(String::as_str).collect::<Vec<_>>());
}

fn kubernetes(prefix: &str, jwt_path: &std::path::Path) -> VaultAuth {
    VaultAuth::Kubernetes {
        mount: prefix.to_string(),
        role: "rekey".into(),
        jwt_path: jwt_path.to_path_buf(),
    }
}

/// Kubernetes login end to end: OpenBao has the JWT read from `jwt_path` reviewed by the
/// (stand-in) Kubernetes API, and the token it issues, holding only the minimal policy, runs
/// check, stage, promote and the journal. The review saw exactly the file's JWT, once.
#[tokio::test]
async fn kubernetes_login_runs_a_rotation() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("k8s");
    let jwt = service_account_jwt("first");
    let reviewer = TokenReviewer::start(&[&jwt]).await;
    kubernetes_auth(bao, &prefix, &reviewer, &["token_ttl=5m"]);
    let dir = tempfile::tempdir().unwrap();
    let jwt_path = dir.path().join("token");
    std::fs::write(&jwt_path, &jwt).unwrap();

    let store = VaultStore::new(config(bao, &prefix, kubernetes(&prefix, &jwt_path))).unwrap();
    store.preflight(CRED).await.unwrap();
    rotate(&store, 1).await;
    store.append_journal(CRED, &entry(1, "r1")).await.unwrap();
    assert_eq!(
        rekey_testkit::conformance::unchained(store.read_journal(CRED).await.unwrap()),
        vec![entry(1, "r1")]
    );
    assert_eq!(
        kv_field(bao, &format!("{prefix}/{CRED}/current"), "generation"),
        "1"
    );
    assert_eq!(
        reviewer.reviewed(),
        vec![jwt],
        "one login, with the file's JWT"
    );
}

/// A well-formed service-account JWT that Kubernetes does not authenticate makes every
/// operation fail as Unauthenticated, naming the auth mount and never the JWT, before anything
/// is written. That the review saw it shows the refusal is Kubernetes' verdict, not OpenBao
/// failing to parse the token.
#[tokio::test]
async fn a_rejected_service_account_jwt_is_unauthenticated_and_writes_nothing() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("k8s-rejected");
    let rejected = service_account_jwt("revoked");
    let reviewer = TokenReviewer::start(&[&service_account_jwt("accepted")]).await;
    kubernetes_auth(bao, &prefix, &reviewer, &["token_ttl=5m"]);
    let dir = tempfile::tempdir().unwrap();
    let jwt_path = dir.path().join("token");
    std::fs::write(&jwt_path, &rejected).unwrap();

    let store = VaultStore::new(config(bao, &prefix, kubernetes(&prefix, &jwt_path))).unwrap();
    let errors = [
        store.preflight(CRED).await.unwrap_err(),
        stage(&store, 1, &pair()).await.unwrap_err(),
    ];
    for err in &errors {
        assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
        assert!(
            err.to_string().contains(&format!(
                "kubernetes login as role 'rekey' at auth/{prefix}"
            )),
            "{err}"
        );
        let shown = format!("{err} {err:?} {}", err.hint().unwrap_or_default());
        assert!(!shown.contains(&rejected), "never the JWT: {shown}");
    }
    assert_eq!(reviewer.reviewed(), vec![rejected.clone(), rejected]);
    assert_never_written(
        bao,
        &prefix,
        &["current", "pending", "journal"],
        "a refused login writes nothing",
    );
}

/// The JWT file is read again at every login, as the kubelet rotates it: once the token
/// can no longer be renewed (token_ttl = token_max_ttl = 2 s, and expired), the store logs in
/// again with the file's new JWT and carries on.
#[tokio::test]
async fn the_service_account_jwt_is_read_again_at_each_login() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("k8s-rotated");
    let (first, second) = (service_account_jwt("first"), service_account_jwt("second"));
    let reviewer = TokenReviewer::start(&[&first, &second]).await;
    kubernetes_auth(
        bao,
        &prefix,
        &reviewer,
        &["token_ttl=2s", "token_max_ttl=2s"],
    );
    let dir = tempfile::tempdir().unwrap();
    let jwt_path = dir.path().join("token");
    std::fs::write(&jwt_path, &first).unwrap();

    let store = VaultStore::new(config(bao, &prefix, kubernetes(&prefix, &jwt_path))).unwrap();
    store.append_journal(CRED, &entry(1, "r")).await.unwrap();
    std::fs::write(&jwt_path, &second).unwrap();
    // Until the server has ended the first token (its max TTL passed), so its renewal is
    // refused and the store logs in again. Not a guess at how long that takes: just short of
    // the max TTL, OpenBao may still report a whole second left, and the store renews.
    let first_token = login_tokens(bao, &prefix).await;
    assert_eq!(first_token.len(), 1, "the store's login: {first_token:?}");
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    while token_by_accessor(bao, &first_token[0]).await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the 2 s token is still alive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.append_journal(CRED, &entry(2, "r")).await.unwrap();
    // Read by root: another operation of the store could renew its new token, which has the
    // JWT reviewed again.
    assert_eq!(
        root_store(bao, &prefix)
            .read_journal(CRED)
            .await
            .unwrap()
            .len(),
        2
    );
    // OpenBao also reviews the login's JWT when a token is renewed, so the first JWT may be
    // seen more than once; the new one comes only from the second login, and last.
    let reviewed = reviewer.reviewed();
    assert_eq!(reviewed.first(), Some(&first), "the first login");
    assert_eq!(reviewed.last(), Some(&second), "the second login");
    assert_eq!(
        reviewed.iter().filter(|t| **t == second).count(),
        1,
        "one login with the new JWT"
    );
    assert!(
        reviewed.iter().all(|t| *t == first || *t == second),
        "nothing else"
    );
}
