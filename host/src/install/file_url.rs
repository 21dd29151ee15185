//! `file://` URLs, as pip and uv write them for local paths.

use std::io;
use std::path::Path;

/// A `file://` URL for an absolute path, percent-encoding what a URL path
/// may not hold, as pip and uv write it.
pub(crate) fn file_url(path: &Path) -> io::Result<String> {
    let path = path
        .to_str()
        .filter(|p| p.starts_with('/'))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the package path is not absolute UTF-8"))?;
    let mut url = String::from("file://");
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~@+!$&'()*,;=:".contains(&byte) {
            url.push(char::from(byte));
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(url)
}

/// The path a `file://` URL names, `%XX` escapes decoded.
pub(crate) fn path_of(url: &str) -> Result<String, String> {
    let path = url.strip_prefix("file://").ok_or("not a `file://` URL")?;
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = path.get(i + 1..i + 3).ok_or("a truncated `%` escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "a bad `%` escape")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a path that is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_what_a_path_may_not_hold() {
        assert_eq!(
            file_url(Path::new("/r/packages/app@1.0+b")).expect("url"),
            "file:///r/packages/app@1.0+b"
        );
        assert_eq!(file_url(Path::new("/a b/%")).expect("url"), "file:///a%20b/%25");
        assert!(file_url(Path::new("relative")).is_err());
    }

    #[test]
    fn paths_come_back_from_either_spelling() {
        for url in ["file:///r/trees/a@1.x", "file:///r/trees/a%401.x"] {
            assert_eq!(path_of(url).as_deref(), Ok("/r/trees/a@1.x"));
        }
        assert_eq!(
            path_of(&file_url(Path::new("/a b/%")).expect("url")).as_deref(),
            Ok("/a b/%")
        );
        assert!(path_of("https://x/y").is_err());
        assert!(path_of("file:///x%4").is_err());
    }
}
