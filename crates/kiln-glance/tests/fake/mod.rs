//! A tiny HTTP/1.1 server on 127.0.0.1 for protocol edge cases a real Keystone or Glance never
//! produces on demand (redirects, endless or stalled bodies, paging loops, 5xx after an insert).
//! Each connection serves one request and closes; the handler writes the raw answer, so it can
//! stall or stream as long as it likes. Everything the server received is recorded.

#![allow(dead_code, reason = "each test binary uses part of the helpers")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_glance::config::{AuthMethod, CloudConfig, Interface, Named, Scope, Tls, UserRef};
use kiln_glance::{Glance, Secret, Session};
use serde_json::{Value, json};

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Header names lowercased.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The value of query parameter `key` (no percent-decoding beyond `%20`-free test values).
    pub fn query(&self, key: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.replace("%3A", ":").replace("%2F", "/"))
    }
}

pub type Handler = dyn Fn(&Request, &mut TcpStream) + Send + Sync;

/// A running server; it lives as long as the test process (its threads are detached).
pub struct Server {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    pub fn start(handler: impl Fn(&Request, &mut TcpStream) + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let handler = handler.clone();
                let seen = seen.clone();
                std::thread::spawn(move || {
                    if let Some(req) = read_request(&mut stream) {
                        seen.lock().unwrap().push(req.clone());
                        handler(&req, &mut stream);
                    }
                });
            }
        });
        Server { port, requests }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn received(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

/// Writes a complete answer and closes.
pub fn respond(stream: &mut TcpStream, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

pub fn respond_json(stream: &mut TcpStream, status: u16, body: &Value) {
    respond(
        stream,
        status,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
}

pub const USER_ID: &str = "u-kiln";
pub const PROJECT_ID: &str = "p-kiln";
pub const TOKEN: &str = "tok-secret-123";
pub const PASSWORD: &str = "pw-secret-456";

/// A Keystone token answer whose catalog points the image service at `image_url`.
pub fn token_answer(stream: &mut TcpStream, image_url: &str, expires_at: &str) {
    let body = json!({ "token": {
        "issued_at": "2026-01-01T00:00:00Z",
        "expires_at": expires_at,
        "user": { "id": USER_ID },
        "project": { "id": PROJECT_ID },
        "catalog": [ { "type": "image", "endpoints": [
            { "interface": "public", "region_id": "RegionOne", "url": image_url } ] } ]
    }});
    respond(
        stream,
        201,
        &[
            ("Content-Type", "application/json"),
            ("X-Subject-Token", TOKEN),
        ],
        body.to_string().as_bytes(),
    );
}

/// A password cloud whose Keystone is at `keystone_url`.
pub fn cloud(keystone_url: &str) -> CloudConfig {
    CloudConfig {
        name: "fake".into(),
        auth_url: format!("{keystone_url}/v3"),
        auth: AuthMethod::Password {
            user: UserRef::Name {
                name: "kiln".into(),
                domain: Named::Id("default".into()),
            },
            password: Secret::new(PASSWORD),
            scope: Scope::ProjectId(PROJECT_ID.into()),
        },
        region_name: None,
        interface: Interface::Public,
        tls: Tls::default(),
        image_endpoint_override: None,
    }
}

/// One server that is both Keystone (`/v3/auth/tokens`, catalog pointing at itself) and, for
/// every other path, `glance`.
pub fn openstack(
    glance: impl Fn(&Request, &mut TcpStream) + Send + Sync + 'static,
) -> (Server, Arc<Session>) {
    openstack_with_stall(glance, None)
}

pub fn openstack_with_stall(
    glance: impl Fn(&Request, &mut TcpStream) + Send + Sync + 'static,
    stall: Option<Duration>,
) -> (Server, Arc<Session>) {
    let port = Arc::new(Mutex::new(0u16));
    let p = port.clone();
    let server = Server::start(move |req, stream| {
        if req.path() == "/v3/auth/tokens" {
            let image = format!("http://127.0.0.1:{}", *p.lock().unwrap());
            token_answer(stream, &image, "2099-01-01T00:00:00Z");
        } else {
            glance(req, stream);
        }
    });
    *port.lock().unwrap() = server.port;
    let mut session = Session::new(cloud(&server.url())).unwrap();
    if let Some(s) = stall {
        session = session.with_stall_timeout(s).unwrap();
    }
    (server, Arc::new(session))
}

pub fn glance(session: &Arc<Session>) -> Glance {
    Glance::connect(session.clone()).unwrap()
}

/// Runs `f` on a thread and fails the test if it takes longer than `limit` (a hang today).
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("still running after {limit:?}: it hangs"))
}
