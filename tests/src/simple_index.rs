//! A package index served on 127.0.0.1 the way PyPI serves one: PEP 503
//! simple pages, each file linked with its `#sha256=`, over the files of
//! local directories. What an install, a lock and a bundle fetch by HTTP.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest as _, Sha256};

use crate::loopback::Loopback;

/// A running index; stopped when dropped.
#[derive(Debug)]
pub struct SimpleIndex {
    server: Loopback,
    requests: Arc<AtomicUsize>,
}

/// One file: where it is, and its SHA-256.
#[derive(Debug, Clone)]
struct Served {
    path: PathBuf,
    sha256: String,
}

impl SimpleIndex {
    /// Serves every wheel and sdist in `dirs`, by project, on a free port.
    pub fn serve(dirs: &[&Path]) -> Self {
        let mut projects: BTreeMap<String, BTreeMap<String, Served>> = BTreeMap::new();
        for dir in dirs {
            for entry in std::fs::read_dir(dir).expect("a directory to serve").flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(project) = project_of(&name) else { continue };
                let bytes = std::fs::read(entry.path()).expect("a file to serve");
                let sha256 = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
                projects.entry(project).or_default().insert(
                    name,
                    Served {
                        path: entry.path(),
                        sha256,
                    },
                );
            }
        }
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let server = Loopback::serve(move |stream, head| {
            counted.fetch_add(1, Ordering::SeqCst);
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            answer(stream, path, &projects);
        });
        Self { server, requests }
    }

    /// `http://127.0.0.1:PORT/simple`: the index URL to give an installer.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/simple", self.server.port())
    }

    /// How many requests it has answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// The PEP 503 name of the project a wheel or sdist file is of.
fn project_of(file: &str) -> Option<String> {
    let stem = [".whl", ".tar.gz", ".zip"]
        .iter()
        .find_map(|suffix| file.strip_suffix(suffix))?;
    let name = match file.ends_with(".whl") {
        true => stem.split('-').next()?,
        false => stem.rsplit_once('-')?.0,
    };
    let mut normal = String::new();
    for c in name.chars() {
        match c {
            '-' | '_' | '.' if normal.ends_with('-') => {}
            '-' | '_' | '.' => normal.push('-'),
            c => normal.push(c.to_ascii_lowercase()),
        }
    }
    Some(normal)
}

fn answer(mut stream: TcpStream, path: &str, projects: &BTreeMap<String, BTreeMap<String, Served>>) {
    let (status, kind, body) = match path.trim_end_matches('/').split('/').collect::<Vec<_>>()[..] {
        ["", "simple"] => {
            let links: String = projects
                .keys()
                .map(|p| format!("<a href=\"/simple/{p}/\">{p}</a>\n"))
                .collect();
            ("200 OK", "text/html", page(&links).into_bytes())
        }
        ["", "simple", project] => match projects.get(project) {
            Some(files) => {
                let links: String = files
                    .iter()
                    .map(|(name, file)| format!("<a href=\"/files/{name}#sha256={}\">{name}</a>\n", file.sha256))
                    .collect();
                ("200 OK", "text/html", page(&links).into_bytes())
            }
            None => ("404 Not Found", "text/plain", Vec::new()),
        },
        ["", "files", name] => match projects.values().find_map(|files| files.get(name)) {
            Some(file) => (
                "200 OK",
                "application/octet-stream",
                std::fs::read(&file.path).unwrap_or_default(),
            ),
            None => ("404 Not Found", "text/plain", Vec::new()),
        },
        _ => ("404 Not Found", "text/plain", Vec::new()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

fn page(links: &str) -> String {
    format!("<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")
}
