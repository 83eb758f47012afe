//! Keystone v3: a [`Session`] authenticates once, reuses its token for the whole run and gets a
//! new one shortly before it expires (or when a service answers 401); it finds service endpoints in
//! the token's catalog by type, region and interface.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{AuthMethod, CloudConfig, DomainRef, Named, Scope, UserRef};
use crate::error::Error;
use crate::secret::Secret;
use crate::time::parse_utc;

/// Re-authenticate when the token has less than this left.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(120);

/// Timeout of API calls (not of uploads and downloads, which take as long as they take).
pub const API_TIMEOUT: Duration = Duration::from_secs(120);

/// A download that receives nothing for this long fails, as does an upload whose server takes
/// no data for this long (the whole transfer has no time limit).
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

use crate::body::MAX_ERROR_BODY;
pub use crate::body::MAX_JSON_BODY;

/// A token is kept at most this long, whatever `expires_at` says (a far-future or absurd date
/// means "valid for a long time", never an overflow).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// An authenticated connection to one cloud.
pub struct Session {
    cloud: CloudConfig,
    http: Client,
    stall_timeout: Duration,
    token: Mutex<Option<Token>>,
    refresh_margin: Duration,
    auth_count: AtomicU64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("cloud", &self.cloud.name)
            .field("auth_url", &self.cloud.auth_url)
            .finish_non_exhaustive()
    }
}

/// A token and what came with it.
#[derive(Clone, Debug)]
pub struct Token {
    pub secret: Secret,
    /// When this process should stop using it (Keystone's lifetime, measured on our clock).
    pub valid_until: Instant,
    pub project_id: Option<String>,
    pub user_id: String,
    catalog: Vec<CatalogEntry>,
}

#[derive(Clone, Debug, Deserialize)]
struct CatalogEntry {
    #[serde(rename = "type")]
    service_type: String,
    #[serde(default)]
    endpoints: Vec<Endpoint>,
}

#[derive(Clone, Debug, Deserialize)]
struct Endpoint {
    interface: String,
    #[serde(default)]
    region_id: Option<String>,
    #[serde(default)]
    region: Option<String>,
    url: String,
}

impl Session {
    /// A session for `cloud`; nothing is sent until the first request needs a token.
    pub fn new(cloud: CloudConfig) -> Result<Self, Error> {
        let http = client(&cloud, DEFAULT_STALL_TIMEOUT)?;
        Ok(Session {
            cloud,
            http,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            token: Mutex::new(None),
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            auth_count: AtomicU64::new(0),
        })
    }

    /// Changes how long a transfer may make no progress before it fails.
    pub fn with_stall_timeout(mut self, stall: Duration) -> Result<Self, Error> {
        self.http = client(&self.cloud, stall)?;
        self.stall_timeout = stall;
        Ok(self)
    }

    /// Changes how long before expiry a token is replaced.
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    pub fn cloud(&self) -> &CloudConfig {
        &self.cloud
    }

    pub fn http(&self) -> &Client {
        &self.http
    }

    /// How long a download may receive nothing before it fails.
    pub fn stall_timeout(&self) -> Duration {
        self.stall_timeout
    }

    /// How many times this session has asked Keystone for a token.
    pub fn auth_count(&self) -> u64 {
        self.auth_count.load(Ordering::Relaxed)
    }

    /// A token valid for at least the refresh margin: the current one, or a new one.
    pub fn token(&self) -> Result<Token, Error> {
        let mut slot = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = slot.as_ref()
            && t.valid_until > Instant::now() + self.refresh_margin
        {
            return Ok(t.clone());
        }
        let fresh = self.authenticate()?;
        *slot = Some(fresh.clone());
        Ok(fresh)
    }

    /// Forgets the token, e.g. after a service answered 401 to it.
    pub fn invalidate(&self) {
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The URL of the `service_type` endpoint for the configured region and interface.
    pub fn endpoint(&self, service_type: &str) -> Result<String, Error> {
        if service_type == "image"
            && let Some(url) = &self.cloud.image_endpoint_override
        {
            return Ok(url.trim_end_matches('/').to_owned());
        }
        let token = self.token()?;
        select_endpoint(
            &token.catalog,
            service_type,
            self.cloud.interface.as_str(),
            self.cloud.region_name.as_deref(),
        )
    }

    /// Asks Keystone for a token; a 5xx or a broken connection is retried twice (issuing a token
    /// changes nothing a retry could duplicate).
    fn authenticate(&self) -> Result<Token, Error> {
        let mut attempt = 0;
        loop {
            match self.authenticate_once() {
                Err(Error::Http { status, .. }) if status >= 500 && attempt < 2 => {}
                Err(Error::Transport { .. }) if attempt < 2 => {}
                other => return other,
            }
            attempt += 1;
            std::thread::sleep(Duration::from_millis(500 << attempt));
        }
    }

    fn authenticate_once(&self) -> Result<Token, Error> {
        self.auth_count.fetch_add(1, Ordering::Relaxed);
        let url = format!("{}/auth/tokens", self.cloud.auth_url);
        let started = Instant::now();
        let resp = self
            .http
            .post(&url)
            .timeout(API_TIMEOUT)
            .json(&auth_body(&self.cloud.auth))
            .send()
            .map_err(|source| transport_error("POST", &url, source))?;
        let status = resp.status();
        if status.as_u16() == 401 || status.as_u16() == 403 {
            return Err(Error::AuthFailed {
                cloud: self.cloud.name.clone(),
                auth_url: self.cloud.auth_url.clone(),
                status: status.as_u16(),
                message: error_message(resp),
            });
        }
        if !status.is_success() {
            return Err(Error::Http {
                method: "POST",
                url,
                status: status.as_u16(),
                message: error_message(resp),
            });
        }
        let protocol = |message: &str| Error::Protocol {
            method: "POST",
            url: url.clone(),
            message: message.to_owned(),
        };
        let secret = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(Secret::new)
            .ok_or_else(|| protocol("no `X-Subject-Token` header"))?;
        let body = parse_token_body(&read_body("POST", &url, resp, MAX_JSON_BODY)?)
            .map_err(|e| protocol(&e))?;
        Ok(Token {
            secret,
            valid_until: started.checked_add(body.lifetime).unwrap_or(started),
            project_id: body.project_id,
            user_id: body.user_id,
            catalog: body.catalog,
        })
    }
}

/// What a token response's body says (the token itself comes in a header).
#[derive(Debug)]
pub(crate) struct TokenBody {
    lifetime: Duration,
    project_id: Option<String>,
    user_id: String,
    catalog: Vec<CatalogEntry>,
}

/// Reads a `POST /v3/auth/tokens` response body: its lifetime, project, user and catalog.
pub(crate) fn parse_token_body(body: &[u8]) -> Result<TokenBody, String> {
    let body: Value =
        serde_json::from_slice(body).map_err(|_| "the body is not JSON".to_owned())?;
    let t = &body["token"];
    let lifetime = match (
        t["issued_at"].as_str().and_then(parse_utc),
        t["expires_at"].as_str().and_then(parse_utc),
    ) {
        (Some(i), Some(e)) if e > i => token_lifetime(i, e),
        _ => return Err("the token has no usable `issued_at` / `expires_at`".to_owned()),
    };
    let catalog = match t.get("catalog") {
        Some(c) => serde_json::from_value(c.clone()).map_err(|e| format!("bad catalog: {e}"))?,
        None => Vec::new(),
    };
    Ok(TokenBody {
        lifetime,
        project_id: t["project"]["id"].as_str().map(str::to_owned),
        user_id: t["user"]["id"].as_str().unwrap_or_default().to_owned(),
        catalog,
    })
}

/// How long to use a token issued at `issued` that expires at `expires` (seconds since the
/// epoch, `expires > issued`): Keystone's lifetime, at most [`MAX_TOKEN_LIFETIME`].
fn token_lifetime(issued: i64, expires: i64) -> Duration {
    let secs = u64::try_from(expires.saturating_sub(issued)).unwrap_or(0);
    Duration::from_secs(secs).min(MAX_TOKEN_LIFETIME)
}

/// An HTTP client for `cloud`: its TLS settings, redirects only within one host and never from
/// https to http, and `TCP_USER_TIMEOUT` = `stall`: data sent (an upload) that the server does
/// not take for that long (unacknowledged, or held back by a zero window) fails the connection.
fn client(cloud: &CloudConfig, stall: Duration) -> Result<Client, Error> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .tcp_user_timeout(stall)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let refusal = match attempt.previous().last() {
                _ if attempt.previous().len() > 10 => Some("more than 10 redirects".to_owned()),
                Some(from) => redirect_refusal(from, attempt.url()),
                None => None,
            };
            match refusal {
                Some(why) => {
                    let to = attempt.url().to_string();
                    attempt.error(RedirectRefused { to, why })
                }
                None => attempt.follow(),
            }
        }))
        .user_agent(concat!("kiln-glance/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &cloud.tls.cacert {
        let pem = std::fs::read(path).map_err(|source| Error::CaCert {
            path: path.clone(),
            source,
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| Error::CaCertInvalid {
                path: path.clone(),
                source,
            })?;
        builder = builder.tls_certs_merge(certs);
    }
    if cloud.tls.insecure {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    reqwest::blocking::ClientBuilder::from(builder)
        .timeout(None::<Duration>)
        .build()
        .map_err(|source| Error::Transport {
            method: "build",
            url: cloud.auth_url.clone(),
            source,
        })
}

/// A redirect the client refused (the error the redirect policy returns).
#[derive(Debug)]
struct RedirectRefused {
    to: String,
    why: String,
}

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "redirect to `{}` refused: {}", self.to, self.why)
    }
}

impl std::error::Error for RedirectRefused {}

/// Why a redirect from `from` to `to` is not followed, or `None` to follow it. The token header
/// (and, for a 307/308 of `POST /auth/tokens`, the password) would go along, so only redirects
/// within one scheme, host and port are followed (http to https on the same host too).
pub(crate) fn redirect_refusal(from: &reqwest::Url, to: &reqwest::Url) -> Option<String> {
    if from.scheme() == "https" && to.scheme() != "https" {
        return Some("it goes from https to http".to_owned());
    }
    let same_port = from.port_or_known_default() == to.port_or_known_default()
        || (from.scheme() == "http" && to.scheme() == "https");
    if from.host_str() != to.host_str() || !same_port {
        return Some(format!(
            "it leaves `{}` (the token would go along)",
            from.host_str().unwrap_or_default()
        ));
    }
    None
}

/// The error for a request that got no answer: a refused redirect is named as such.
pub(crate) fn transport_error(method: &'static str, url: &str, source: reqwest::Error) -> Error {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&source);
    while let Some(e) = cause {
        if let Some(r) = e.downcast_ref::<RedirectRefused>() {
            return Error::RedirectRefused {
                method,
                url: url.to_owned(),
                to: r.to.clone(),
                why: r.why.clone(),
            };
        }
        cause = e.source();
    }
    Error::Transport {
        method,
        url: url.to_owned(),
        source,
    }
}

/// The body of `resp`, at most `limit` bytes; a longer one is an error (read no further).
pub(crate) fn read_body(
    method: &'static str,
    url: &str,
    resp: reqwest::blocking::Response,
    limit: u64,
) -> Result<Vec<u8>, Error> {
    use std::io::Read as _;
    let too_large = || Error::BodyTooLarge {
        method,
        url: url.to_owned(),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    resp.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::Protocol {
            method,
            url: url.to_owned(),
            message: format!("reading the body failed: {e}"),
        })?;
    if buf.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(buf)
}

/// The body of `POST /v3/auth/tokens`.
fn auth_body(auth: &AuthMethod) -> Value {
    fn domain(d: &DomainRef) -> Value {
        match d {
            Named::Id(id) => json!({ "id": id }),
            Named::Name(name) => json!({ "name": name }),
        }
    }
    fn user(u: &UserRef) -> Value {
        match u {
            UserRef::Id(id) => json!({ "id": id }),
            UserRef::Name { name, domain: d } => json!({ "name": name, "domain": domain(d) }),
        }
    }
    match auth {
        AuthMethod::Password {
            user: u,
            password,
            scope,
        } => {
            let mut u = user(u);
            u["password"] = json!(password.expose());
            let mut body = json!({ "auth": { "identity": {
                "methods": ["password"], "password": { "user": u } } } });
            let scope = match scope {
                Scope::ProjectId(id) => Some(json!({ "project": { "id": id } })),
                Scope::Project { name, domain: d } => {
                    Some(json!({ "project": { "name": name, "domain": domain(d) } }))
                }
                Scope::Domain(d) => Some(json!({ "domain": domain(d) })),
                Scope::Unscoped => None,
            };
            if let Some(scope) = scope {
                body["auth"]["scope"] = scope;
            }
            body
        }
        AuthMethod::ApplicationCredential {
            credential,
            user: u,
            secret,
        } => {
            let mut cred = match credential {
                Named::Id(id) => json!({ "id": id }),
                Named::Name(name) => json!({ "name": name }),
            };
            cred["secret"] = json!(secret.expose());
            if let Some(u) = u {
                cred["user"] = user(u);
            }
            json!({ "auth": { "identity": {
                "methods": ["application_credential"], "application_credential": cred } } })
        }
    }
}

fn select_endpoint(
    catalog: &[CatalogEntry],
    service_type: &str,
    interface: &str,
    region: Option<&str>,
) -> Result<String, Error> {
    let endpoints = catalog
        .iter()
        .filter(|s| s.service_type == service_type)
        .flat_map(|s| &s.endpoints);
    let region_of = |e: &Endpoint| e.region_id.clone().or_else(|| e.region.clone());
    let found = endpoints.clone().find(|e| {
        e.interface == interface && region.is_none_or(|r| region_of(e).as_deref() == Some(r))
    });
    match found {
        Some(e) => Ok(e.url.trim_end_matches('/').to_owned()),
        None => {
            let mut available: Vec<String> = endpoints
                .map(|e| format!("`{}/{}`", region_of(e).unwrap_or_default(), e.interface))
                .collect();
            available.sort();
            available.dedup();
            Err(Error::NoEndpoint {
                service: service_type.to_owned(),
                interface: interface.to_owned(),
                region: region
                    .map(|r| format!(" in region `{r}`"))
                    .unwrap_or_default(),
                available: if available.is_empty() {
                    "none".to_owned()
                } else {
                    available.join(", ")
                },
            })
        }
    }
}

/// The most useful line of an OpenStack error body (`{"error": {"message"}}`, Glance's HTML-ish
/// text, or the raw text), cut to a sane length.
pub(crate) fn error_message(resp: reqwest::blocking::Response) -> String {
    // Only the start of an error body is read: it is shown cut to 400 characters anyway.
    let body = crate::body::read_prefix(resp, MAX_ERROR_BODY);
    error_text(&String::from_utf8_lossy(&body))
}

/// [`error_message`] of a body's text.
pub(crate) fn error_text(text: &str) -> String {
    let text = text.to_owned();
    let from_json = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
        v["error"]["message"]
            .as_str()
            .or_else(|| v["message"].as_str())
            .or_else(|| v["title"].as_str())
            .map(str::to_owned)
    });
    let msg = from_json.unwrap_or_else(|| {
        // Glance's HTML error pages put the detail after the last `<br /><br />`.
        let text = text.rsplit("<br /><br />").next().unwrap_or(&text);
        let stripped: String = {
            let mut out = String::new();
            let mut in_tag = false;
            for c in text.chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => {
                        in_tag = false;
                        out.push(' ');
                    }
                    c if !in_tag => out.push(c),
                    _ => {}
                }
            }
            out
        };
        stripped.split_whitespace().collect::<Vec<_>>().join(" ")
    });
    let mut msg = msg.trim().to_owned();
    if msg.len() > 400 {
        let cut = (0..=400)
            .rev()
            .find(|i| msg.is_char_boundary(*i))
            .unwrap_or(0);
        msg.truncate(cut);
        msg.push('…');
    }
    if msg.is_empty() {
        "no details".to_owned()
    } else {
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Vec<CatalogEntry> {
        serde_json::from_value(json!([
            { "type": "identity", "endpoints": [
                { "interface": "public", "region_id": "RegionOne", "url": "http://k/v3" } ] },
            { "type": "image", "endpoints": [
                { "interface": "public", "region_id": "RegionOne", "url": "http://one:9292/" },
                { "interface": "internal", "region_id": "RegionOne", "url": "http://one-int:9292" },
                { "interface": "public", "region_id": "RegionTwo", "url": "http://two:9292" } ] }
        ]))
        .unwrap()
    }

    #[test]
    fn endpoint_is_chosen_by_region_and_interface() {
        let c = catalog();
        assert_eq!(
            select_endpoint(&c, "image", "public", Some("RegionOne")).unwrap(),
            "http://one:9292"
        );
        assert_eq!(
            select_endpoint(&c, "image", "internal", Some("RegionOne")).unwrap(),
            "http://one-int:9292"
        );
        assert_eq!(
            select_endpoint(&c, "image", "public", Some("RegionTwo")).unwrap(),
            "http://two:9292"
        );
        // No region configured: the first endpoint of that interface.
        assert_eq!(
            select_endpoint(&c, "image", "public", None).unwrap(),
            "http://one:9292"
        );
    }

    // The token header follows a redirect, so only same-origin ones (and http to https on the
    // same host) are followed; https to http never is.
    #[test]
    fn redirects_stay_on_one_host_and_never_downgrade() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        let refused = |a: &str, b: &str| redirect_refusal(&u(a), &u(b));
        assert_eq!(refused("https://k/v3", "https://k/v3/"), None);
        assert_eq!(
            refused("http://k:5000/v3", "http://k:5000/identity/v3"),
            None
        );
        assert_eq!(refused("http://k/v3", "https://k/v3"), None);
        assert_eq!(
            refused("https://k/v3", "http://k/v3").as_deref(),
            Some("it goes from https to http")
        );
        assert!(refused("https://k/v3", "https://evil/v3").is_some());
        assert!(refused("http://k:5000/v3", "http://k:5001/v3").is_some());
    }

    // The error must say what the catalog does have, or users can't fix their region_name.
    #[test]
    fn missing_endpoint_lists_what_exists() {
        let err = select_endpoint(&catalog(), "image", "admin", Some("RegionTwo")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no `image` endpoint with interface `admin` in region `RegionTwo` in the catalog \
             (it has: `RegionOne/internal`, `RegionOne/public`, `RegionTwo/public`)"
        );
    }

    #[test]
    fn application_credential_body_carries_no_scope() {
        let body = auth_body(&AuthMethod::ApplicationCredential {
            credential: Named::Id("abc".into()),
            user: None,
            secret: Secret::new("s3"),
        });
        assert_eq!(
            body,
            json!({ "auth": { "identity": { "methods": ["application_credential"],
                "application_credential": { "id": "abc", "secret": "s3" } } } })
        );
    }

    #[test]
    fn password_body_scopes_to_the_project_by_name() {
        let body = auth_body(&AuthMethod::Password {
            user: UserRef::Name {
                name: "u".into(),
                domain: Named::Name("Default".into()),
            },
            password: Secret::new("pw"),
            scope: Scope::Project {
                name: "p".into(),
                domain: Named::Id("default".into()),
            },
        });
        assert_eq!(
            body["auth"]["identity"]["password"]["user"],
            json!({ "name": "u", "domain": { "name": "Default" }, "password": "pw" })
        );
        assert_eq!(
            body["auth"]["scope"],
            json!({ "project": { "name": "p", "domain": { "id": "default" } } })
        );
    }
}
