//! The OCI distribution protocol, as much of it as par needs: manifests
//! and blobs, pulled and pushed, with the registry's Basic or Bearer
//! challenge answered. The registry is untrusted: every answer is read
//! within a cap, every blob hashed here, redirects followed only within the
//! registry's own host, and one deadline bounds the whole exchange.

use std::io::{self, Read, Write};
use std::time::Instant;

use reqwest::StatusCode;
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE, WWW_AUTHENTICATE,
};

use crate::fs::HashingWriter;
use crate::registry::artifact::INDEX_MEDIA_TYPE;
use crate::registry::auth::Credentials;
use crate::registry::reference::{Reference, is_sha256_digest, sha256_digest};
use crate::types::registry::{RegistryConfig, RegistryError};

/// The most of an error answer or a token answer par reads.
const MAX_SMALL_ANSWER: u64 = 64 << 10;
/// Redirects followed within the registry's host.
const MAX_REDIRECTS: usize = 5;
/// How often a blob cut off mid-way is resumed from where it stopped (each
/// time only after more of it arrived, all within the deadline).
const MAX_RESUMES: u32 = 5;

/// A session with one repository of one registry.
pub(crate) struct Client {
    http: Http,
    base: String,
    reference: Reference,
    credentials: Option<Credentials>,
    authorization: Option<String>,
    push: bool,
    started: Instant,
    config: RegistryConfig,
}

impl Client {
    /// A session for `reference`, for pulling or (with `push`) pushing too.
    pub(crate) fn new(reference: &Reference, config: &RegistryConfig, push: bool) -> Result<Self, RegistryError> {
        install_crypto_provider();
        let insecure = config.insecure.contains(&reference.registry);
        let scheme = if insecure { "http" } else { "https" };
        let registry = reference.registry.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            let same_host = attempt.previous().first().is_some_and(|first| {
                first.scheme() == attempt.url().scheme()
                    && first.host_str() == attempt.url().host_str()
                    && first.port_or_known_default() == attempt.url().port_or_known_default()
            });
            if !same_host {
                let to = attempt.url().host_str().unwrap_or_default().to_owned();
                attempt.error(format!(
                    "a redirect to another host (`{to}`), which par does not follow"
                ))
            } else if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        });
        let http = Http::builder()
            .https_only(!insecure)
            .redirect(redirects)
            .connect_timeout(std::time::Duration::from_secs(15))
            .user_agent(concat!("par/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError::Unreachable {
                registry: registry.clone(),
                detail: format!("cannot make an HTTP client: {e}"),
            })?;
        Ok(Self {
            http,
            base: format!("{scheme}://{registry}/v2/{}", reference.repository),
            reference: reference.clone(),
            credentials: Credentials::find(&reference.registry, config.auth_file.as_deref())?,
            authorization: None,
            push,
            started: Instant::now(),
            config: config.clone(),
        })
    }

    /// Whether the registry holds the blob `digest`.
    pub(crate) fn has_blob(&mut self, digest: &str) -> Result<bool, RegistryError> {
        let url = format!("{}/blobs/{digest}", self.base);
        let response = self.send(&format!("blob {digest}"), |http| http.head(&url))?;
        match response.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(&format!("blob {digest}"), response)),
        }
    }

    /// Uploads `size` bytes of `body` as the blob `digest` (one monolithic
    /// PUT, which every registry takes).
    pub(crate) fn push_blob(&mut self, digest: &str, size: u64, body: std::fs::File) -> Result<(), RegistryError> {
        let what = format!("upload of blob {digest}");
        let start = format!("{}/blobs/uploads/", self.base);
        let response = self.send(&what, |http| http.post(&start).header(CONTENT_LENGTH, 0))?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.status_error(&what, response));
        }
        let location = self.location(&response, &what)?;
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        // The POST above answered any challenge, so the body is sent once.
        let request = self
            .http
            .put(&url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::blocking::Body::sized(body, size));
        let response = self.execute(&what, request)?;
        if response.status() != StatusCode::CREATED {
            return Err(self.status_error(&what, response));
        }
        Ok(())
    }

    /// Puts `manifest` (of `media_type`) at `tag`, or at its own digest
    /// without one; the digest par computed.
    pub(crate) fn push_manifest(
        &mut self,
        tag: Option<&str>,
        media_type: &str,
        manifest: Vec<u8>,
    ) -> Result<String, RegistryError> {
        let digest = sha256_digest(&manifest);
        let what = "manifest upload".to_owned();
        let url = format!("{}/manifests/{}", self.base, tag.unwrap_or(&digest));
        let response = self.send(&what, |http| {
            http.put(&url).header(CONTENT_TYPE, media_type).body(manifest.clone())
        })?;
        if response.status() != StatusCode::CREATED {
            return Err(self.status_error(&what, response));
        }
        Ok(digest)
    }

    /// Whether the registry answers the OCI 1.1 referrers API for the
    /// manifest `digest` (an image index, even an empty one); registries
    /// without it answer 404.
    pub(crate) fn has_referrers_api(&mut self, digest: &str) -> Result<bool, RegistryError> {
        let url = format!("{}/referrers/{digest}", self.base);
        let response = self.send("referrers", |http| http.get(&url).header(ACCEPT, INDEX_MEDIA_TYPE))?;
        let is_index = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with(INDEX_MEDIA_TYPE));
        Ok(response.status().is_success() && is_index)
    }

    /// The manifest the reference names, read within `max` bytes, with its
    /// digest computed here (and checked when the reference has one).
    pub(crate) fn pull_manifest(&mut self, accept: &str, max: u64) -> Result<(Vec<u8>, String), RegistryError> {
        let what = "manifest".to_owned();
        let url = format!("{}/manifests/{}", self.base, self.reference.manifest_reference());
        let response = self.send(&what, |http| http.get(&url).header(ACCEPT, accept))?;
        if !response.status().is_success() {
            return Err(self.status_error(&what, response));
        }
        let mut bytes = Vec::new();
        self.read_within(response, max + 1, &mut bytes, &what)?;
        if bytes.len() as u64 > max {
            return Err(self.manifest_error(format!("larger than {max} bytes")));
        }
        let digest = sha256_digest(&bytes);
        if let Some(pinned) = &self.reference.digest
            && *pinned != digest
        {
            return Err(self.manifest_error(format!("its digest is {digest}, not the {pinned} asked for")));
        }
        Ok((bytes, digest))
    }

    /// Writes the blob `digest` of `size` bytes into `out`, refusing one
    /// longer or shorter than `size` or with another digest (`member`
    /// names it in errors).
    pub(crate) fn pull_blob(
        &mut self,
        member: &str,
        digest: &str,
        size: u64,
        out: &mut dyn Write,
    ) -> Result<(), RegistryError> {
        let blob_error = |this: &Self, problem: String| RegistryError::blob(&this.reference, member, digest, problem);
        if !is_sha256_digest(digest) {
            return Err(blob_error(self, "not a sha256 digest".into()));
        }
        let what = format!("blob {member}");
        let url = format!("{}/blobs/{digest}", self.base);
        let mut hashing = HashingWriter::new(out);
        let mut resumed = 0;
        loop {
            let from = hashing.written();
            let response = self.send(&what, |http| match from {
                0 => http.get(&url),
                _ => http.get(&url).header(RANGE, format!("bytes={from}-")),
            })?;
            let status = response.status();
            if !status.is_success() {
                return Err(self.status_error(&what, response));
            }
            if from > 0 && !resumes_at(&response, from) {
                return Err(blob_error(
                    self,
                    format!("cut off after {from} bytes, and the registry cannot resume it (HTTP {status})"),
                ));
            }
            match self.read_within(response, size + 1 - from, &mut hashing, &what) {
                Err(RegistryError::Unreachable { detail, .. })
                    if resumed < MAX_RESUMES && hashing.written() > from && hashing.written() < size =>
                {
                    resumed += 1;
                    tracing::warn!(blob = member, received = hashing.written(), size, %detail, "Blob cut off: resuming");
                }
                read => break read?,
            }
        }
        if hashing.written() > size {
            return Err(blob_error(
                self,
                format!("longer than the {size} bytes the manifest says"),
            ));
        }
        if hashing.written() < size {
            return Err(blob_error(
                self,
                format!("{} bytes, not the {size} the manifest says", hashing.written()),
            ));
        }
        let found = format!("sha256:{}", hashing.sha256());
        if found != digest {
            return Err(blob_error(self, format!("its content has digest {found}")));
        }
        Ok(())
    }

    /// Sends the request `build` makes; on a challenge, answers it once and
    /// sends it again.
    fn send(&mut self, what: &str, build: impl Fn(&Http) -> RequestBuilder) -> Result<Response, RegistryError> {
        let response = self.execute(what, build(&self.http))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        self.authorization = Some(self.answer(&challenge)?);
        let response = self.execute(what, build(&self.http))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized("the credentials were refused".into()));
        }
        Ok(response)
    }

    /// Sends `request` with what authorizes this session, within the deadline.
    fn execute(&self, what: &str, request: RequestBuilder) -> Result<Response, RegistryError> {
        let remaining = self.remaining()?;
        let request = match &self.authorization {
            Some(value) => request.header(AUTHORIZATION, value),
            None => request,
        };
        request.timeout(remaining).send().map_err(|e| self.transport(what, &e))
    }

    /// The `Authorization` value that answers `challenge`.
    fn answer(&self, challenge: &str) -> Result<String, RegistryError> {
        let (scheme, params) = crate::registry::auth::parse_challenge(challenge)
            .ok_or_else(|| self.unauthorized(format!("an unreadable challenge `{}`", clip(challenge))))?;
        if scheme.eq_ignore_ascii_case("basic") {
            return self
                .credentials
                .as_ref()
                .map(Credentials::basic)
                .ok_or_else(|| self.unauthorized("it asks for a login and par has none for it".into()));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(self.unauthorized(format!("an authentication scheme par does not speak (`{scheme}`)")));
        }
        let realm = params
            .iter()
            .find(|(key, _)| key == "realm")
            .map(|(_, value)| value.clone())
            .ok_or_else(|| self.unauthorized("a Bearer challenge without a realm".into()))?;
        let realm_url = reqwest::Url::parse(&realm)
            .map_err(|_| self.unauthorized(format!("a realm that is not a URL (`{}`)", clip(&realm))))?;
        if realm_url.scheme() != "https"
            && !self
                .config
                .insecure
                .iter()
                .any(|host| realm_url.host_str().is_some_and(|h| host.split(':').next() == Some(h)))
        {
            return Err(self.unauthorized(format!("a token service over plain HTTP (`{}`)", clip(&realm))));
        }
        let actions = if self.push { "pull,push" } else { "pull" };
        let mut realm_url = realm_url;
        realm_url
            .query_pairs_mut()
            .append_pair("scope", &format!("repository:{}:{actions}", self.reference.repository));
        if let Some((_, service)) = params.iter().find(|(key, _)| key == "service") {
            realm_url.query_pairs_mut().append_pair("service", service);
        }
        let mut request = self.http.get(realm_url);
        if let Some(credentials) = &self.credentials {
            request = request.header(AUTHORIZATION, credentials.basic());
        }
        let response = request
            .timeout(self.remaining()?)
            .send()
            .map_err(|e| self.transport("token request", &e))?;
        if !response.status().is_success() {
            return Err(self.unauthorized(format!(
                "the token service answered HTTP {}",
                response.status().as_u16()
            )));
        }
        let mut body = Vec::new();
        self.read_within(response, MAX_SMALL_ANSWER, &mut body, "token request")?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let token: Token =
            serde_json::from_slice(&body).map_err(|e| self.unauthorized(format!("an unreadable token answer: {e}")))?;
        token
            .token
            .or(token.access_token)
            .filter(|token| !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()))
            .map(|token| format!("Bearer {token}"))
            .ok_or_else(|| self.unauthorized("a token answer without a token".into()))
    }

    /// Copies at most `limit` bytes of `response` into `out`.
    fn read_within(
        &self,
        response: Response,
        limit: u64,
        out: &mut dyn Write,
        what: &str,
    ) -> Result<(), RegistryError> {
        let mut body = response.take(limit);
        let mut buffer = vec![0u8; 256 << 10];
        loop {
            let read = body.read(&mut buffer);
            self.remaining()?;
            match read {
                Ok(0) => return Ok(()),
                Ok(n) => out
                    .write_all(&buffer[..n])
                    .map_err(|e| self.unreachable(format!("{what}: cannot write: {e}")))?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.unreachable(format!("{what}: {e}"))),
            }
        }
    }

    /// The upload URL a `Location` header gives, absolute, on the registry's host.
    fn location(&self, response: &Response, what: &str) -> Result<String, RegistryError> {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| self.unreachable(format!("{what}: no upload location")))?;
        let url = response
            .url()
            .join(location)
            .map_err(|_| self.unreachable(format!("{what}: an upload location that is not a URL")))?;
        if url.host_str() != response.url().host_str()
            || url.port_or_known_default() != response.url().port_or_known_default()
            || url.scheme() != response.url().scheme()
        {
            return Err(self.unreachable(format!(
                "{what}: an upload location on another host, which par does not follow"
            )));
        }
        Ok(url.to_string())
    }

    fn remaining(&self) -> Result<std::time::Duration, RegistryError> {
        self.config
            .deadline
            .checked_sub(self.started.elapsed())
            .filter(|left| !left.is_zero())
            .ok_or_else(|| RegistryError::Deadline {
                reference: self.reference.to_string(),
                seconds: self.config.deadline.as_secs(),
            })
    }

    fn status_error(&self, what: &str, response: Response) -> RegistryError {
        let status = response.status().as_u16();
        if status == 401 || status == 403 {
            return self.unauthorized(format!("HTTP {status} for the {what}"));
        }
        let mut body = Vec::new();
        let _ = response.take(MAX_SMALL_ANSWER).read_to_end(&mut body);
        RegistryError::Status {
            reference: self.reference.to_string(),
            what: what.to_owned(),
            status,
            detail: clip(&String::from_utf8_lossy(&body)),
        }
    }

    fn manifest_error(&self, problem: String) -> RegistryError {
        RegistryError::Manifest {
            reference: self.reference.to_string(),
            problem,
        }
    }

    fn unauthorized(&self, detail: String) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.reference.registry.clone(),
            repository: self.reference.repository.clone(),
            detail,
        }
    }

    fn unreachable(&self, detail: String) -> RegistryError {
        RegistryError::Unreachable {
            registry: self.reference.registry.clone(),
            detail,
        }
    }

    fn transport(&self, what: &str, error: &reqwest::Error) -> RegistryError {
        if error.is_timeout() {
            return RegistryError::Deadline {
                reference: self.reference.to_string(),
                seconds: self.config.deadline.as_secs(),
            };
        }
        let mut detail = format!("{what}: {error}");
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            detail.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        self.unreachable(detail)
    }
}

/// Makes ring rustls's process-wide provider, unless an embedder installed
/// one: reqwest was built without a provider of its own.
#[allow(
    deprecated,
    reason = "ring's provider lacks only post-quantum key exchange, which needs aws-lc-rs and its C build"
)]
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether `response` is the rest of a blob from byte `from`: a 206 whose
/// `Content-Range` starts there.
fn resumes_at(response: &Response, from: u64) -> bool {
    response.status() == StatusCode::PARTIAL_CONTENT
        && response
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|value| value.to_str().ok())
            .and_then(|range| range.strip_prefix("bytes "))
            .and_then(|range| range.split_once('-'))
            .is_some_and(|(start, _)| start.trim().parse::<u64>().ok() == Some(from))
}

/// `text` on one line, at most 200 characters, for an error message.
fn clip(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead as _, BufReader};
    use std::net::TcpListener;

    use super::*;

    /// A blob server on 127.0.0.1 that sends the first half of `blob` and
    /// hangs up, then answers the next request as `second` says; the
    /// `Range` each request asked for, in order.
    fn cut_off_once(
        blob: &'static [u8],
        honours_range: bool,
    ) -> (String, std::thread::JoinHandle<Vec<Option<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let host = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let server = std::thread::spawn(move || {
            let mut ranges = Vec::new();
            for (i, stream) in listener.incoming().take(2).enumerate() {
                let mut stream = stream.expect("a connection");
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut range = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("range")
                    {
                        range = Some(value.trim().to_owned());
                    }
                }
                ranges.push(range.clone());
                let half = blob.len() / 2;
                let answer = match (i, honours_range) {
                    (0, _) => [format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", blob.len()).into_bytes(), blob[..half].to_vec()].concat(),
                    (_, true) => [
                        format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {half}-{}/{}\r\nContent-Length: {}\r\n\r\n",
                            blob.len() - 1,
                            blob.len(),
                            blob.len() - half
                        )
                        .into_bytes(),
                        blob[half..].to_vec(),
                    ]
                    .concat(),
                    (_, false) => [format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", blob.len()).into_bytes(), blob.to_vec()].concat(),
                };
                let _ = stream.write_all(&answer);
            }
            ranges
        });
        (host, server)
    }

    /// A client for `host` with no logins (an empty credentials file).
    fn client(host: &str) -> Client {
        let dir = tempfile::tempdir().expect("dir");
        let auth = dir.path().join("auth.json");
        std::fs::write(&auth, r#"{"auths": {}}"#).expect("auth");
        let reference = Reference::parse(&format!("{host}/agents/web:1")).expect("a reference");
        let config = RegistryConfig::default().insecure_registry(host).auth_file(auth);
        Client::new(&reference, &config, false).expect("a client")
    }

    #[test]
    fn a_blob_cut_off_resumes_where_it_stopped_or_is_refused() {
        const BLOB: &[u8] = b"0123456789abcdefghij";
        let digest = sha256_digest(BLOB);

        let (host, server) = cut_off_once(BLOB, true);
        let mut out = Vec::new();
        client(&host)
            .pull_blob("wheels/a-1-py3-none-any.whl", &digest, BLOB.len() as u64, &mut out)
            .expect("resumed");
        assert_eq!(out, BLOB);
        assert_eq!(server.join().expect("server"), [None, Some("bytes=10-".to_owned())]);

        let (host, server) = cut_off_once(BLOB, false);
        let error = client(&host)
            .pull_blob(
                "wheels/a-1-py3-none-any.whl",
                &digest,
                BLOB.len() as u64,
                &mut Vec::new(),
            )
            .expect_err("a registry that sends it all again");
        assert!(error.to_string().contains("cannot resume"), "{error}");
        server.join().expect("server");
    }
}
