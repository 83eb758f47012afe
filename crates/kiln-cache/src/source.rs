//! Where a `_base` entry comes from, and the source id its Nova name is derived from.
//!
//! | source | source id | `_base` name |
//! |---|---|---|
//! | Glance image | the image id, as is | `sha1(image id)`: exactly Nova's name |
//! | http(s) URL | the canonical URL (see [`canonical_url`]) | `sha1(canonical url)` |
//! | local file (or `file:` URL) | `sha256:<hex of its content>` | `sha1("sha256:<hex>")` |
//!
//! See `docs/decisions/cache-source-ids.md` for why.

use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::str::FromStr;

use sha1::{Digest, Sha1};
use url::Url;

use crate::error::CacheError;
use crate::hash::Algo;

/// Opens the byte stream of a source that kiln-cache cannot fetch itself (a Glance image download).
pub type OpenFn = Box<dyn FnOnce() -> std::io::Result<Box<dyn Read + Send>> + Send>;

/// A source to fetch into `_base`.
pub enum Source {
    /// An `http`, `https` or `file` URL.
    Url(String),
    /// A local file.
    Path(PathBuf),
    /// A Glance image: named by its id, read through `open` (kiln-glance provides the download).
    Glance { image_id: String, open: OpenFn },
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Url(u) => f
                .debug_tuple("Url")
                .field(&Url::parse(u).map_or_else(|_| "<not a url>".to_owned(), |u| redact(&u)))
                .finish(),
            Source::Path(p) => f.debug_tuple("Path").field(p).finish(),
            Source::Glance { image_id, .. } => f
                .debug_struct("Glance")
                .field("image_id", image_id)
                .finish_non_exhaustive(),
        }
    }
}

/// The string a `_base` name is the SHA-1 of.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SourceId {
    Glance(String),
    Url(String),
    /// `sha256:<hex>` of a local file's content.
    Content(String),
}

impl SourceId {
    /// The id string.
    pub fn as_str(&self) -> &str {
        match self {
            SourceId::Glance(s) | SourceId::Url(s) | SourceId::Content(s) => s,
        }
    }

    /// `glance`, `url` or `content`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceId::Glance(_) => "glance",
            SourceId::Url(_) => "url",
            SourceId::Content(_) => "content",
        }
    }

    /// The `_base` file name: lowercase hex SHA-1 of the id, as Nova's `get_cache_fname`.
    pub fn base_name(&self) -> String {
        base_name(self.as_str())
    }
}

/// `sha1(id)` in lowercase hex: Nova's `imagecache.get_cache_fname(image_id)`.
pub fn base_name(id: &str) -> String {
    hex::encode(Sha1::digest(id.as_bytes()))
}

/// The canonical form of an http(s) URL used as a source id: scheme and host lowercased, default port
/// dropped, percent-encoding normalised, user name and password removed (they must never reach a file
/// name or a record), fragment removed. Path and query are kept as they are: they select the content.
pub fn canonical_url(raw: &str) -> Result<Url, CacheError> {
    let mut url = Url::parse(raw.trim()).map_err(|source| CacheError::BadUrl {
        url: raw.to_owned(),
        source,
    })?;
    match url.scheme() {
        "http" | "https" | "file" => {}
        other => {
            return Err(CacheError::UnsupportedScheme {
                url: redact(&url),
                scheme: other.to_owned(),
            });
        }
    }
    url.set_fragment(None);
    Ok(url)
}

/// The URL without user name and password, for ids, records and messages.
pub fn redact(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// A declared checksum: `<algo>:<hex>`, or bare hex whose length says the algorithm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checksum {
    pub algo: Algo,
    pub hex: String,
}

impl FromStr for Checksum {
    type Err = CacheError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CacheError::BadChecksum(s.to_owned());
        let (algo, hex) = match s.split_once(':') {
            Some((a, h)) => (a.parse::<Algo>().map_err(|_| bad())?, h),
            None => {
                let algo = Algo::ALL
                    .into_iter()
                    .find(|a| a.hex_len() == s.len())
                    .ok_or_else(bad)?;
                (algo, s)
            }
        };
        if hex.len() != algo.hex_len() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Checksum {
            algo,
            hex: hex.to_ascii_lowercase(),
        })
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algo, self.hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_name_is_novas_sha1_of_the_id() {
        // Nova: hashlib.sha1(image_id.encode()).hexdigest()
        assert_eq!(base_name("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        let id = SourceId::Glance("abc".into());
        assert_eq!(id.base_name(), base_name("abc"));
    }

    #[test]
    fn equivalent_urls_share_one_canonical_form_without_credentials() {
        let a =
            canonical_url("HTTPS://User:Secret@Mirror.Example.ORG:443/iso/x.iso?v=1#frag").unwrap();
        let b = canonical_url("https://mirror.example.org/iso/x.iso?v=1").unwrap();
        assert_eq!(redact(&a), redact(&b));
        assert_eq!(redact(&a), "https://mirror.example.org/iso/x.iso?v=1");
        assert!(!redact(&a).contains("Secret"));
        // Different query → different content → different id.
        let c = canonical_url("https://mirror.example.org/iso/x.iso?v=2").unwrap();
        assert_ne!(redact(&a), redact(&c));
    }

    #[test]
    fn unsupported_schemes_are_refused() {
        let err = canonical_url("ftp://host/x.iso").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported url scheme `ftp` in `ftp://host/x.iso` (expected `http`, `https` or `file`)"
        );
    }

    #[test]
    fn checksums_parse_with_or_without_an_algorithm() {
        let md5 = "900150983cd24fb0d6963f7d28e17f72";
        assert_eq!(
            format!("md5:{md5}").parse::<Checksum>().unwrap(),
            Checksum {
                algo: Algo::Md5,
                hex: md5.into()
            }
        );
        assert_eq!(md5.to_uppercase().parse::<Checksum>().unwrap().hex, md5);
        assert!("sha256:abcd".parse::<Checksum>().is_err());
        assert!("crc:00".parse::<Checksum>().is_err());
    }
}
