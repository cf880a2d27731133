//! A recording HTTP receiver on a free 127.0.0.1 port, for tests of what rekey sends (alerts,
//! webhooks): answers from a script, then a default, and keeps every request (method, path,
//! headers, raw body).

#![allow(missing_docs)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// Held until this gate opens: the request is recorded at once, the answer waits.
    pub gate: Option<Gate>,
}

impl Reply {
    pub fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            gate: None,
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }

    /// This reply is sent only once `gate` is open, so a test can keep a request in flight
    /// until something else has happened.
    pub fn held_until(mut self, gate: &Gate) -> Reply {
        self.gate = Some(gate.clone());
        self
    }
}

/// Closed until [`Gate::open`]; replies [held](Reply::held_until) on it wait until then.
#[derive(Clone, Debug)]
pub struct Gate(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Gate {
    fn default() -> Gate {
        Gate(Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Gate {
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    async fn opened(&self) {
        let mut open = self.0.subscribe();
        // The sender lives in `self`, so this cannot fail.
        let _ = open.wait_for(|open| *open).await;
    }
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header").to_string())
    }
}

struct Inner {
    requests: Mutex<Vec<Recorded>>,
    /// How many requests were recorded, for [`Receiver::received`] to wait on.
    recorded: tokio::sync::watch::Sender<usize>,
    script: Mutex<VecDeque<Reply>>,
    default: Reply,
}

pub struct Receiver {
    pub port: u16,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = {
        let mut requests = inner.requests.lock().unwrap();
        requests.push(Recorded {
            method: method.to_string(),
            path: uri.path().to_string(),
            headers,
            body: body.to_vec(),
        });
        inner.recorded.send_replace(requests.len());
        inner
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| inner.default.clone())
    };
    if let Some(gate) = &reply.gate {
        gate.opened().await;
    }
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("header value"));
    }
    response
}

impl Receiver {
    /// Answers `script` in order, then `default` forever.
    pub async fn start(script: Vec<Reply>, default: Reply) -> Receiver {
        let inner = Arc::new(Inner {
            requests: Mutex::new(Vec::new()),
            recorded: tokio::sync::watch::Sender::new(0),
            script: Mutex::new(script.into()),
            default,
        });
        let router = Router::new().fallback(record).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        Receiver { port, inner, task }
    }

    /// Always answers `status` with `body`.
    pub async fn answering(status: u16, body: &str) -> Receiver {
        Receiver::start(Vec::new(), Reply::status(status, body)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.inner.requests.lock().unwrap().len()
    }

    /// Waits until at least `n` requests were recorded (answered or not). Callers bound the
    /// wait with a hang guard.
    pub async fn received(&self, n: usize) {
        let mut recorded = self.inner.recorded.subscribe();
        // The sender lives in `self.inner`, so this cannot fail.
        let _ = recorded.wait_for(|count| *count >= n).await;
    }

    /// The only request received.
    pub fn single(&self) -> Recorded {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "{requests:?}");
        requests.into_iter().next().unwrap()
    }
}

/// A loopback port that refuses every connection for as long as this value lives: a socket
/// bound to it that never listens (connecting gets ECONNREFUSED). Nothing else can take the port
/// meanwhile, unlike a port picked, released and used later, which any process may bind in
/// between.
pub struct RefusingPort {
    socket: tokio::net::TcpSocket,
}

impl RefusingPort {
    pub fn bind() -> RefusingPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind 127.0.0.1:0");
        RefusingPort { socket }
    }

    pub fn port(&self) -> u16 {
        self.socket.local_addr().expect("a bound socket").port()
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port())
    }
}
