//! The Glance v2 calls kiln makes: create, get, list (paged), patch, delete, upload (streamed,
//! `Content-Length`) and download (streamed). Every call carries the session's token; an API call
//! answered 401 is retried once with a new token.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::{Body, RequestBuilder, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::Error;
use crate::keystone::{
    API_TIMEOUT, MAX_JSON_BODY, Session, error_message, read_body, transport_error,
};
use crate::stall::StallGuard;

/// Image attributes Glance owns; they cannot be used as custom property names.
pub const RESERVED_KEYS: &[&str] = &[
    "checksum",
    "container_format",
    "created_at",
    "direct_url",
    "disk_format",
    "file",
    "id",
    "locations",
    "min_disk",
    "min_ram",
    "name",
    "os_hash_algo",
    "os_hash_value",
    "os_hidden",
    "owner",
    "protected",
    "schema",
    "self",
    "size",
    "status",
    "stores",
    "tags",
    "updated_at",
    "virtual_size",
    "visibility",
];

/// The most pages of 100 images one listing reads.
pub const MAX_LIST_PAGES: usize = 1000;

/// Who can see an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    Private,
    Shared,
    Community,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
            Visibility::Shared => "shared",
            Visibility::Community => "community",
        }
    }
}

impl std::str::FromStr for Visibility {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "public" => Ok(Visibility::Public),
            "private" => Ok(Visibility::Private),
            "shared" => Ok(Visibility::Shared),
            "community" => Ok(Visibility::Community),
            _ => Err(format!(
                "visibility `{s}` is not one of `public`, `private`, `shared`, `community`"
            )),
        }
    }
}

/// What an image should look like in Glance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    pub name: String,
    pub disk_format: String,
    pub container_format: String,
    /// `None` leaves Glance's default (`shared`).
    pub visibility: Option<Visibility>,
    pub min_disk: Option<u64>,
    pub min_ram: Option<u64>,
    /// Set only once the data is verified, so a half-made image can always be deleted.
    pub protected: bool,
    /// Custom properties (Glance stores them as strings).
    pub properties: BTreeMap<String, String>,
    pub tags: BTreeSet<String>,
}

impl ImageSpec {
    pub fn new(name: impl Into<String>, disk_format: impl Into<String>) -> Self {
        ImageSpec {
            name: name.into(),
            disk_format: disk_format.into(),
            container_format: "bare".to_owned(),
            visibility: None,
            min_disk: None,
            min_ram: None,
            protected: false,
            properties: BTreeMap::new(),
            tags: BTreeSet::new(),
        }
    }

    /// Rejects property names Glance reserves or would refuse.
    pub fn validate(&self) -> Result<(), Error> {
        for key in self.properties.keys() {
            let reason = if RESERVED_KEYS.contains(&key.as_str()) {
                Some("it is an image attribute, not a custom property")
            } else if key.is_empty() || key.len() > 255 {
                Some("names must be 1 to 255 characters long")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(Error::InvalidProperty {
                    key: key.clone(),
                    reason: reason.to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// An image as Glance reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub status: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub virtual_size: Option<u64>,
    #[serde(default)]
    pub checksum: Option<String>,
    #[serde(default)]
    pub os_hash_algo: Option<String>,
    #[serde(default)]
    pub os_hash_value: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub disk_format: Option<String>,
    #[serde(default)]
    pub container_format: Option<String>,
    #[serde(default)]
    pub protected: bool,
    #[serde(default)]
    pub min_disk: Option<u64>,
    #[serde(default)]
    pub min_ram: Option<u64>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Everything else: custom properties plus a few links (`self`, `file`, `schema`).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Image {
    /// The custom properties (string values that are not Glance's own attributes).
    pub fn properties(&self) -> BTreeMap<String, String> {
        self.extra
            .iter()
            .filter(|(k, _)| !RESERVED_KEYS.contains(&k.as_str()))
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
            .collect()
    }
}

/// A task Glance ran for an image (an import).
#[derive(Clone, Debug, Deserialize)]
pub struct ImageTask {
    pub status: String,
    #[serde(default)]
    pub message: Option<String>,
}

/// A Glance v2 endpoint reached through a [`Session`].
#[derive(Clone, Debug)]
pub struct Glance {
    session: Arc<Session>,
    /// Ends in `/v2`.
    base: String,
}

impl Glance {
    /// Finds the image endpoint in the session's catalog (authenticating if needed).
    pub fn connect(session: Arc<Session>) -> Result<Self, Error> {
        let url = session.endpoint("image")?;
        let base = if url.ends_with("/v2") {
            url
        } else {
            format!("{url}/v2")
        };
        Ok(Glance { session, base })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The `/v2` root this client talks to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// An API call with the token, the API timeout and one retry after a 401 (or, for GET and
    /// DELETE, after a broken connection). A GET or PATCH answered 5xx is sent again up to three
    /// times (0.25 s, 0.5 s, 1 s apart): Glance on sqlite answers 500 "database is locked" when
    /// requests or its import tasks write at once, a GET changes nothing, and kiln's patches only
    /// `replace`/`add` absolute values, so sending one twice ends the same.
    fn call(
        &self,
        method: &'static str,
        path: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, Error> {
        let url = format!("{}{path}", self.base);
        let m = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
        let mut server_errors = 0;
        let mut attempt = 0;
        loop {
            let token = self.session.token()?;
            let req = self
                .session
                .http()
                .request(m.clone(), &url)
                .header("X-Auth-Token", token.secret.expose())
                .timeout(API_TIMEOUT);
            let resp = match build(req).send() {
                Ok(resp) => resp,
                // A pooled connection the server had just closed (it does after an error
                // answer): safe to resend a request that changes nothing or deletes.
                Err(_) if attempt == 0 && matches!(method, "GET" | "DELETE") => {
                    attempt += 1;
                    continue;
                }
                Err(source) => return Err(transport_error(method, &url, source)),
            };
            let status = resp.status().as_u16();
            if status == 401 && attempt == 0 {
                self.session.invalidate();
                attempt += 1;
                continue;
            }
            if status >= 500 && matches!(method, "GET" | "PATCH") && server_errors < 3 {
                std::thread::sleep(Duration::from_millis(250 << server_errors));
                server_errors += 1;
                continue;
            }
            if !resp.status().is_success() {
                return Err(Error::Http {
                    method,
                    url,
                    status,
                    message: error_message(resp),
                });
            }
            return Ok(resp);
        }
    }

    fn json<T: serde::de::DeserializeOwned>(
        method: &'static str,
        url: &str,
        resp: Response,
    ) -> Result<T, Error> {
        let body = read_body(method, url, resp, MAX_JSON_BODY)?;
        serde_json::from_slice(&body).map_err(|e| Error::Protocol {
            method,
            url: url.to_owned(),
            message: format!("cannot decode the body: {e}"),
        })
    }

    /// `POST /v2/images`: a `queued` image with `spec`'s attributes plus `extra` properties.
    /// `protected` is never set here (see [`ImageSpec::protected`]).
    pub fn create(
        &self,
        spec: &ImageSpec,
        extra: &BTreeMap<String, String>,
    ) -> Result<Image, Error> {
        spec.validate()?;
        let mut body = Map::new();
        for (k, v) in spec.properties.iter().chain(extra) {
            body.insert(k.clone(), json!(v));
        }
        body.insert("name".into(), json!(spec.name));
        body.insert("disk_format".into(), json!(spec.disk_format));
        body.insert("container_format".into(), json!(spec.container_format));
        body.insert("tags".into(), json!(spec.tags));
        if let Some(v) = spec.visibility {
            body.insert("visibility".into(), json!(v.as_str()));
        }
        if let Some(v) = spec.min_disk {
            body.insert("min_disk".into(), json!(v));
        }
        if let Some(v) = spec.min_ram {
            body.insert("min_ram".into(), json!(v));
        }
        let resp = self.call("POST", "/images", |r| r.json(&body))?;
        Self::json("POST", &format!("{}/images", self.base), resp)
    }

    /// `GET /v2/images/{id}`.
    pub fn get(&self, id: &str) -> Result<Image, Error> {
        let path = format!("/images/{id}");
        let resp = self.call("GET", &path, |r| r)?;
        Self::json("GET", &path, resp)
    }

    /// `GET /v2/images` with `filters` (e.g. `("os_hash_value", …)`, `("status", "queued")`),
    /// following `next` links until the last page.
    pub fn list(&self, filters: &[(&str, &str)]) -> Result<Vec<Image>, Error> {
        #[derive(Deserialize)]
        struct Page {
            images: Vec<Image>,
            #[serde(default)]
            next: Option<String>,
        }
        let mut out = Vec::new();
        let mut query: Vec<(String, String)> = filters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        query.push(("limit".into(), "100".into()));
        let url = format!("{}/images", self.base);
        let mut markers = BTreeSet::new();
        for _ in 0..MAX_LIST_PAGES {
            let resp = self.call("GET", "/images", |r| r.query(&query))?;
            let page: Page = Self::json("GET", &url, resp)?;
            let last = page.images.last().map(|i| i.id.clone());
            out.extend(page.images);
            match (page.next, last) {
                (Some(_), Some(marker)) => {
                    // A server that keeps answering with the same last image would page forever.
                    if !markers.insert(marker.clone()) {
                        return Err(Error::Protocol {
                            method: "GET",
                            url,
                            message: format!(
                                "the listing pages in a loop (image `{marker}` ends two pages)"
                            ),
                        });
                    }
                    query.retain(|(k, _)| k != "marker");
                    query.push(("marker".into(), marker));
                }
                _ => return Ok(out),
            }
        }
        Err(Error::Protocol {
            method: "GET",
            url,
            message: format!(
                "the listing has more than {MAX_LIST_PAGES} pages of 100 images; narrow it"
            ),
        })
    }

    /// `PATCH /v2/images/{id}` with JSON-patch `ops`.
    pub fn patch(&self, id: &str, ops: &[Value]) -> Result<Image, Error> {
        let path = format!("/images/{id}");
        let body = serde_json::to_vec(ops).unwrap_or_default();
        let resp = self.call("PATCH", &path, |r| {
            r.header(
                "Content-Type",
                "application/openstack-images-v2.1-json-patch",
            )
            .body(body.clone())
        })?;
        Self::json("PATCH", &path, resp)
    }

    /// `DELETE /v2/images/{id}`; an image that is already gone counts as deleted. A 5xx is retried
    /// for about 15 s: Glance on sqlite answers 500 ("database is locked") when the delete races
    /// with its own cleanup of an upload whose client went away, which is exactly when kiln deletes.
    pub fn delete(&self, id: &str) -> Result<(), Error> {
        let mut backoff = Duration::from_millis(500);
        for attempt in 0.. {
            match self.call("DELETE", &format!("/images/{id}"), |r| r) {
                Ok(_) | Err(Error::Http { status: 404, .. }) => return Ok(()),
                // A delete that failed half-way can leave the image `deleted` in Glance's database;
                // deleting it again is then a 400 (invalid status transition).
                Err(e @ Error::Http { status: 400, .. }) if attempt > 0 => {
                    return match self.get(id) {
                        Err(Error::Http { status: 404, .. }) => Ok(()),
                        Ok(image)
                            if matches!(image.status.as_str(), "deleted" | "pending_delete") =>
                        {
                            Ok(())
                        }
                        _ => Err(e),
                    };
                }
                Err(Error::Http { status, .. }) if status >= 500 && attempt < 5 => {
                    std::thread::sleep(backoff);
                    backoff *= 2;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns by its sixth attempt")
    }

    /// `PUT /v2/images/{id}/file` with `len` bytes from `body`, sent with `Content-Length` (no
    /// chunked encoding) and no timeout. Not retried: the body is consumed.
    pub fn upload(
        &self,
        id: &str,
        body: impl std::io::Read + Send + 'static,
        len: u64,
    ) -> Result<(), Error> {
        self.put_data(id, "file", body, len)
    }

    /// `PUT /v2/images/{id}/stage`: the first half of the interoperable import (`glance-direct`),
    /// sent like [`Glance::upload`]. The image goes to `uploading`; [`Glance::import`] finishes it.
    pub fn stage(
        &self,
        id: &str,
        body: impl std::io::Read + Send + 'static,
        len: u64,
    ) -> Result<(), Error> {
        self.put_data(id, "stage", body, len)
    }

    /// `POST /v2/images/{id}/import` with `{"method": {"name": method}}`: Glance answers 202 and
    /// imports in the background (`importing`, then `active`, or back to `uploading`/`queued` with
    /// `os_glance_failed_import` set).
    pub fn import(&self, id: &str, method: &str) -> Result<(), Error> {
        let body = json!({ "method": { "name": method } });
        self.call("POST", &format!("/images/{id}/import"), |r| r.json(&body))?;
        Ok(())
    }

    /// `GET /v2/info/import`: the import methods this Glance offers (`glance-direct`, …). A Glance
    /// without the import API (404) offers none.
    pub fn import_methods(&self) -> Result<Vec<String>, Error> {
        #[derive(Deserialize)]
        struct Info {
            #[serde(rename = "import-methods")]
            methods: Methods,
        }
        #[derive(Deserialize)]
        struct Methods {
            value: Vec<String>,
        }
        match self.call("GET", "/info/import", |r| r) {
            Ok(resp) => {
                let info: Info = Self::json("GET", "/info/import", resp)?;
                Ok(info.methods.value)
            }
            Err(Error::Http { status: 404, .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// `GET /v2/images/{id}/tasks`: the import tasks of an image, oldest first (a Glance before
    /// this call existed answers 404, which gives none).
    pub fn image_tasks(&self, id: &str) -> Result<Vec<ImageTask>, Error> {
        #[derive(Deserialize)]
        struct Tasks {
            tasks: Vec<ImageTask>,
        }
        let path = format!("/images/{id}/tasks");
        match self.call("GET", &path, |r| r) {
            Ok(resp) => Ok(Self::json::<Tasks>("GET", &path, resp)?.tasks),
            Err(Error::Http { status: 404, .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn put_data(
        &self,
        id: &str,
        what: &str,
        body: impl std::io::Read + Send + 'static,
        len: u64,
    ) -> Result<(), Error> {
        let url = format!("{}/images/{id}/{what}", self.base);
        let token = self.session.token()?;
        let resp = self
            .session
            .http()
            .put(&url)
            .header("X-Auth-Token", token.secret.expose())
            .header("Content-Type", "application/octet-stream")
            .body(Body::sized(body, len))
            .send()
            .map_err(|source| transport_error("PUT", &url, source))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(Error::Http {
                method: "PUT",
                url,
                status: resp.status().as_u16(),
                message: error_message(resp),
            })
        }
    }

    /// `GET /v2/images/{id}/file`: the data, to be read as a stream. The transfer has no time
    /// limit, but a read that waits longer than the session's stall timeout fails
    /// ([`crate::stall::StallGuard`]).
    pub fn download(&self, id: &str) -> Result<StallGuard, Error> {
        let url = format!("{}/images/{id}/file", self.base);
        let token = self.session.token()?;
        let resp = self
            .session
            .http()
            .get(&url)
            .header("X-Auth-Token", token.secret.expose())
            .send()
            .map_err(|source| transport_error("GET", &url, source))?;
        if resp.status().is_success() {
            Ok(StallGuard::new(resp, self.session.stall_timeout()))
        } else {
            Err(Error::Http {
                method: "GET",
                url,
                status: resp.status().as_u16(),
                message: error_message(resp),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_property_names_are_rejected() {
        let mut spec = ImageSpec::new("x", "qcow2");
        spec.properties.insert("os_type".into(), "linux".into());
        assert!(spec.validate().is_ok());
        spec.properties.insert("checksum".into(), "abc".into());
        assert_eq!(
            spec.validate().unwrap_err().to_string(),
            "invalid image property `checksum`: it is an image attribute, not a custom property"
        );
    }

    #[test]
    fn custom_properties_exclude_glance_attributes() {
        let image: Image = serde_json::from_value(json!({
            "id": "i", "status": "active", "os_type": "linux", "hw_disk_bus": "virtio",
            "self": "/v2/images/i", "os_hidden": false, "stores": "fs"
        }))
        .unwrap();
        assert_eq!(
            image.properties(),
            BTreeMap::from([
                ("hw_disk_bus".to_owned(), "virtio".to_owned()),
                ("os_type".to_owned(), "linux".to_owned())
            ])
        );
    }
}
