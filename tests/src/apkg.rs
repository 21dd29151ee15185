//! A small builder for APKG (zip) archives, including the malformed shapes
//! the zip crate's writer refuses to produce (patched in afterwards).

use std::io::{Cursor, Write};
use std::path::Path;

use zip::write::{ExtendedFileOptions, FileOptions, SimpleFileOptions};
use zip::{CompressionMethod, ZipWriter};

/// One entry to write.
#[derive(Debug, Clone)]
enum Entry {
    File {
        name: String,
        data: Vec<u8>,
        mode: u32,
        method: CompressionMethod,
    },
    Dir {
        name: String,
    },
    Symlink {
        name: String,
        target: String,
    },
    Special {
        name: String,
        mode: u32,
    },
    WithExtraField {
        name: String,
        data: Vec<u8>,
        header_id: u16,
        field: Vec<u8>,
    },
}

/// Byte-level edits applied after writing: (from, to), same length.
type Patch = (Vec<u8>, Vec<u8>);

/// An APKG under construction.
#[derive(Debug, Clone, Default)]
pub struct Apkg {
    entries: Vec<Entry>,
    patches: Vec<Patch>,
    encrypt_all: bool,
    raw: Option<Vec<u8>>,
}

/// The manifest of the standard test agent.
pub const AGENT_YAML: &str = "\
name: test-agent
version: 1.0.0
description: Agent used by the loader's tests.
entrypoint: app.main:agent
runtime: python3.11
";

/// `agent.yaml` as PAK 0.5.4 dumps it (`model_dump(exclude_none=True)`).
pub const PAK_AGENT_YAML: &str = "\
name: pak-agent
display_name: PAK Agent
description: An agent packaged by PAK
author: Test
license: MIT
metadata:
  version: 0.1.0
  tags: []
version: 0.1.0
entrypoint: src.main:handler
capabilities: []
runtime: python3.11
environment:
  GREETING: hello from agent.yaml
dependencies: []
permissions:
  required: [files.read]
  optional: [calendar.write]
data_access:
  oauth_providers: [google]
  user_data: [email, profile]
  external_apis: [https://api.example.com]
http_server: src.server:app
a2a:
  entry: a2a_server:app
  http_server: a2a_server:app
rest:
  entry: src.main:handler
";

impl Apkg {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// The valid agent the spec describes: `agent.yaml`, `setup.py`,
    /// `requirements.txt`, `core/`, `app/` and `ui/`, plus an executable script.
    pub fn valid_agent() -> Self {
        Self::new()
            .file("agent.yaml", AGENT_YAML)
            .file(
                "setup.py",
                "from setuptools import setup, find_packages\nsetup(name='test-agent', version='1.0.0', packages=find_packages())\n",
            )
            .file("requirements.txt", "# no external dependencies\n")
            .dir("core/")
            .file("core/__init__.py", "")
            .file("core/langchain_util.py", "def model_default():\n    return 'test-model'\n")
            .dir("app/")
            .file("app/__init__.py", "")
            .file("app/main.py", "from core.langchain_util import model_default\nagent = model_default()\n")
            .file("ui/index.html", "<!doctype html><p>ui</p>\n")
            .file_with_mode("bin/run.sh", "#!/bin/sh\necho run\n", 0o755)
    }

    /// The valid agent packaged with `pyproject.toml` (PEP 621 + PEP 660) instead of `setup.py`.
    pub fn pyproject_agent() -> Self {
        let mut apkg = Self::valid_agent().without("setup.py");
        apkg = apkg.file(
            "pyproject.toml",
            concat!(
                "[build-system]\nrequires = [\"setuptools>=64\"]\nbuild-backend = \"setuptools.build_meta\"\n\n",
                "[project]\nname = \"test-agent\"\nversion = \"1.0.0\"\n\n",
                "[tool.setuptools]\npackages = [\"core\", \"app\"]\n",
            ),
        );
        apkg
    }

    /// A package as PAK 0.5.4's `pixell build` writes one for a project with
    /// a `pyproject.toml` as `uv init` makes it (no `[build-system]`): `agent.yaml` re-dumped with PAK's defaults and
    /// `http_server`, `a2a`, `permissions` and `data_access`; the project's
    /// `pyproject.toml` in place of `requirements.txt`, beside the `setup.py`
    /// PAK generates (`install_requires=[]`); `deploy.json`; `.env`;
    /// `.pixell/package.json`; the a2a entry file flattened to the root. Its
    /// ASGI app needs no dependency, so it loads offline.
    pub fn pak_agent() -> Self {
        Self::new()
            .file("agent.yaml", PAK_AGENT_YAML)
            .file(
                "pyproject.toml",
                concat!(
                    "[project]\nname = \"pak-agent\"\nversion = \"0.1.0\"\n",
                    "description = \"An agent packaged by PAK\"\nrequires-python = \">=3.9\"\ndependencies = []\n",
                ),
            )
            .file(
                "setup.py",
                concat!(
                    "from setuptools import setup\n\nsetup(\n    name=\"pak-agent\",\n    version=\"0.1.0\",\n",
                    "    description=\"An agent packaged by PAK\",\n    packages=['src'],\n",
                    "    package_dir={\"\": \".\"},\n    install_requires=[],\n    python_requires=\">=3.9\",\n",
                    "    include_package_data=True,\n)\n",
                ),
            )
            .file(
                "deploy.json",
                concat!(
                    "{\"expose\": [\"rest\", \"a2a\"], \"ports\": {\"rest\": 8080, \"a2a\": 50051}, ",
                    "\"multiplex\": true, \"environment\": {\"GREETING\": \"${GREETING:-hello}\", \"RETRIES\": \"3\"}}",
                ),
            )
            .file(".env", "API_TOKEN=from-dotenv\n")
            .file(
                ".pixell/package.json",
                "{\"format_version\": \"1.0\", \"created_by\": \"pixell-kit\", \"manifest\": {\"name\": \"pak-agent\"}}",
            )
            .dir("src/")
            .file("src/__init__.py", "")
            .file("src/main.py", "def handler(request):\n    return {'echo': request}\n")
            .file(
                "src/server.py",
                concat!(
                    "import os\n\n",
                    "async def app(scope, receive, send):\n",
                    "    \"\"\"A bare ASGI app: the greeting its environment names.\"\"\"\n",
                    "    body = os.environ.get('GREETING', '').encode()\n",
                    "    await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'text/plain')]})\n",
                    "    await send({'type': 'http.response.body', 'body': body})\n",
                ),
            )
            .file("a2a_server.py", "from src.server import app\n")
    }

    /// An old package: the valid agent without any build file.
    pub fn old_agent() -> Self {
        Self::valid_agent().without("setup.py")
    }

    /// Drops the entry with this name.
    pub fn without(mut self, name: &str) -> Self {
        self.entries
            .retain(|e| !matches!(e, Entry::File { name: n, .. } if n == name));
        self
    }

    /// Replaces (or adds) a file.
    pub fn replace(self, name: &str, data: impl AsRef<[u8]>) -> Self {
        self.without(name).file(name, data)
    }

    /// The valid agent with a different `agent.yaml`.
    pub fn agent_with_manifest(yaml: &str) -> Self {
        let mut apkg = Self::valid_agent();
        apkg.entries
            .retain(|e| !matches!(e, Entry::File { name, .. } if name == "agent.yaml"));
        apkg.file("agent.yaml", yaml)
    }

    /// These exact bytes, for archives shaped by hand ([`crate::zip_bytes`]).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        let mut apkg = Self::new();
        apkg.raw = Some(bytes);
        apkg
    }

    /// The archive written by a streaming writer (the zip crate's, as Go's
    /// and Java's do): every entry's CRC-32 and sizes follow its data in a
    /// data descriptor. Only plain files are kept.
    pub fn streamed(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut writer = ZipWriter::new_stream(&mut bytes);
        for entry in &self.entries {
            if let Entry::File {
                name,
                data,
                mode,
                method,
            } = entry
            {
                writer
                    .start_file(name.as_str(), options(*mode, *method))
                    .expect("start file");
                writer.write_all(data).expect("write file");
            }
        }
        writer.finish().expect("finish zip");
        bytes
    }

    /// Bytes that are not a zip archive at all.
    pub fn not_a_zip() -> Self {
        let mut apkg = Self::new();
        apkg.raw = Some(b"this is not a zip archive, just some text pretending to be one\n".to_vec());
        apkg
    }

    /// Adds a regular file (mode 0644, deflated).
    pub fn file(self, name: &str, data: impl AsRef<[u8]>) -> Self {
        self.file_with_mode(name, data, 0o644)
    }

    /// Adds a regular file with the given permission bits.
    pub fn file_with_mode(mut self, name: &str, data: impl AsRef<[u8]>, mode: u32) -> Self {
        self.entries.push(Entry::File {
            name: name.into(),
            data: data.as_ref().to_vec(),
            mode,
            method: CompressionMethod::Deflated,
        });
        self
    }

    /// Adds a file stored with a specific compression method.
    pub fn file_with_method(mut self, name: &str, data: impl AsRef<[u8]>, method: CompressionMethod) -> Self {
        self.entries.push(Entry::File {
            name: name.into(),
            data: data.as_ref().to_vec(),
            mode: 0o644,
            method,
        });
        self
    }

    /// Adds a directory entry (name should end with `/`).
    pub fn dir(mut self, name: &str) -> Self {
        self.entries.push(Entry::Dir { name: name.into() });
        self
    }

    /// Adds a symbolic link entry.
    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        self.entries.push(Entry::Symlink {
            name: name.into(),
            target: target.into(),
        });
        self
    }

    /// Adds an entry whose Unix mode carries the given file type bits (FIFO, device …).
    pub fn special(mut self, name: &str, mode: u32) -> Self {
        self.entries.push(Entry::Special {
            name: name.into(),
            mode,
        });
        self
    }

    /// Adds a file carrying an extra field (for example PKWARE's Unix field with a link target).
    pub fn file_with_extra_field(mut self, name: &str, data: &[u8], header_id: u16, field: &[u8]) -> Self {
        self.entries.push(Entry::WithExtraField {
            name: name.into(),
            data: data.to_vec(),
            header_id,
            field: field.to_vec(),
        });
        self
    }

    /// Replaces `from` by `to` (same length) in the written bytes: how names the
    /// zip writer would refuse (NUL, invalid UTF-8, duplicates) get into an archive.
    pub fn patch(mut self, from: &[u8], to: &[u8]) -> Self {
        assert_eq!(from.len(), to.len(), "a patch must keep the length");
        self.patches.push((from.to_vec(), to.to_vec()));
        self
    }

    /// Sets the "encrypted" flag on every entry.
    pub fn encrypted(mut self) -> Self {
        self.encrypt_all = true;
        self
    }

    /// The archive's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
        for entry in &self.entries {
            write_entry(&mut writer, entry);
        }
        let mut bytes = writer.finish().expect("finish zip").into_inner();
        for (from, to) in &self.patches {
            replace_all(&mut bytes, from, to);
        }
        if self.encrypt_all {
            set_encrypted_flags(&mut bytes);
        }
        bytes
    }

    /// Writes the archive to `path`.
    pub fn write_to(&self, path: &Path) {
        let mut file = std::fs::File::create(path).expect("create apkg");
        file.write_all(&self.to_bytes()).expect("write apkg");
    }
}

fn options(mode: u32, method: CompressionMethod) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(method)
        .unix_permissions(mode)
}

fn write_entry(writer: &mut ZipWriter<Cursor<Vec<u8>>>, entry: &Entry) {
    match entry {
        Entry::File {
            name,
            data,
            mode,
            method,
        } => {
            writer
                .start_file(name.as_str(), options(*mode, *method))
                .expect("start file");
            writer.write_all(data).expect("write file");
        }
        Entry::Dir { name } => writer
            .add_directory(name.as_str(), options(0o755, CompressionMethod::Stored))
            .expect("add dir"),
        Entry::Symlink { name, target } => writer
            .add_symlink(
                name.as_str(),
                target.as_str(),
                options(0o777, CompressionMethod::Stored),
            )
            .expect("add symlink"),
        Entry::Special { name, mode } => {
            let opts = SimpleFileOptions::default()
                .compression_method(CompressionMethod::Stored)
                .external_attributes(mode << 16);
            writer.start_file(name.as_str(), opts).expect("start special");
        }
        Entry::WithExtraField {
            name,
            data,
            header_id,
            field,
        } => {
            let mut opts: FileOptions<'_, '_, ExtendedFileOptions> = FileOptions::default()
                .compression_method(CompressionMethod::Stored)
                .unix_permissions(0o644);
            opts.add_extra_field(*header_id, field, false).expect("extra field");
            writer.start_file(name.as_str(), opts).expect("start file");
            writer.write_all(data).expect("write file");
        }
    }
}

fn replace_all(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    let mut i = 0;
    let mut found = false;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            found = true;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(found, "patch target {:?} not found", String::from_utf8_lossy(from));
}

/// Sets bit 0 of the general-purpose flags in every local and central header.
fn set_encrypted_flags(bytes: &mut [u8]) {
    for i in 0..bytes.len().saturating_sub(10) {
        if bytes[i..i + 4] == *b"PK\x03\x04" {
            bytes[i + 6] |= 1;
        } else if bytes[i..i + 4] == *b"PK\x01\x02" {
            bytes[i + 8] |= 1;
        }
    }
}
