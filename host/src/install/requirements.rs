//! The host's policy for requirement lines.
//!
//! The guest hands over `requirements.txt` as unchecked logical lines; the
//! host decides here which ones reach the installer, which reads them again
//! from a file the host writes. A line is accepted in exactly two shapes:
//!
//! - **a requirement**, parsed by a real PEP 508 parser (uv's `uv-pep508`): a named
//!   requirement (`fastapi==0.110.0`, `x[extra] ; python_version > "3.8"`,
//!   `name @ URL`), or a local path inside the package (`./vendor/helper`),
//!   followed by nothing but `--hash=ALGORITHM:HEX` options;
//! - **one whole-line option** from a short allow-list: `--pre`,
//!   `--prefer-binary`, `--require-hashes`, and `--only-binary`/`--no-binary`
//!   with `:all:`, `:none:` or project names. When the host configuration
//!   allows it, also `--index-url`, `--extra-index-url`, `--find-links`,
//!   `--trusted-host` and `--no-index`.
//!
//! Everything else is refused: any other option, short options (`-i`, `-e`,
//! `-r`…), a second option on a line, direct URLs unless the configuration
//! allows them, paths that are absolute or climb out of the package, `file:`
//! URLs, `${NAME}` references (pip and uv expand them from the installer's
//! environment), control characters, and anything that would make pip or uv
//! read the written line differently (a backslash, a comment, outer spaces).
//!
//! The rule is the invariant, not a model of either installer's option
//! parser: pip and uv only ever read an option where a space-separated word
//! starts with `-`, and in an accepted line the only such words are the one
//! allowed option or `--hash`.

use std::convert::Infallible;
use std::fmt;
use std::path::{Component, Path};
use std::str::FromStr;

use uv_cache_key::{CacheKey, CacheKeyHasher};
use uv_normalize::PackageName;
use uv_pep508::uv_pep440::VersionSpecifiers;
use uv_pep508::{
    MarkerTree, Pep508Error, Pep508Url, Requirement, UnnamedRequirement, UnnamedRequirementUrl, VersionOrUrl,
};

use crate::types::config::RequirementPolicy;

/// Why a requirement line is refused: the text the load error carries after
/// naming the file, the line number and the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A control character, or whitespace other than a plain space.
    #[error("control characters and whitespace other than plain spaces are not allowed")]
    Characters,
    /// `${NAME}`, which pip and uv expand from the installer's environment.
    #[error("environment variable references (`${{…}}`) are not allowed")]
    EnvironmentReference,
    /// `file:` URLs name files anywhere on the host.
    #[error("`file:` URLs name files on the host; use a relative path inside the package")]
    FileUrl,
    /// A backslash, a comment or outer spaces: pip and uv would read the
    /// written line as something else (joined with the next line, cut short).
    #[error("backslashes, comments and outer spaces are not allowed in a requirement line")]
    Unstable,
    /// `-r`/`-c` and their long forms: the guest inlines includes.
    #[error("includes must be resolved inside the package before they reach the host")]
    Include,
    /// `-i`, `-f`, `-e` and every other short option.
    #[error("short options are not allowed (`{0}`)")]
    ShortOption(String),
    /// `--editable`: installs another project in place.
    #[error("editable requirements are not allowed; list the path as a plain requirement")]
    Editable,
    /// A long option that is not on the allow-list.
    #[error("option `{0}` is not allowed")]
    UnknownOption(String),
    /// An index, find-links or trusted-host option the configuration forbids.
    #[error("`{0}` would change where packages come from; the host configuration does not allow it")]
    IndexOption(String),
    /// A whole-line option followed by anything else.
    #[error("one option per line: `{extra}` follows `{option}`")]
    SecondOption {
        /// The line's option.
        option: String,
        /// The first word after it (and its value).
        extra: String,
    },
    /// An option that takes a value without one.
    #[error("`{0}` needs a value")]
    MissingValue(String),
    /// A flag given a value.
    #[error("`{0}` takes no value")]
    UnexpectedValue(String),
    /// An option value that is not what the option takes.
    #[error("`{option}` takes {expected}, not `{value}`")]
    BadValue {
        /// The option.
        option: String,
        /// What it takes.
        expected: &'static str,
        /// What it was given.
        value: String,
    },
    /// After a requirement, a word starting with `-` other than `--hash`.
    #[error("only `--hash` may follow a requirement, not `{0}`")]
    AfterRequirement(String),
    /// A `--hash` that is not `ALGORITHM:HEX`.
    #[error("`--hash` takes ALGORITHM:HEX (sha256, sha384 or sha512), not `{0}`")]
    Hash(String),
    /// A direct URL the configuration forbids.
    #[error("direct URLs are not allowed by the host configuration")]
    DirectUrl,
    /// A local path that is absolute or climbs out of the package.
    #[error("local paths must stay inside the package")]
    Outside,
    /// A local path with characters pip and uv could cut differently.
    #[error("a local path may hold only letters, digits and `._-+/`, not `{0}`")]
    PathCharacters(String),
    /// A build requirement that is not a plain named requirement.
    #[error("a shared build environment takes only named requirements: no paths, URLs or options")]
    BuildRequirement,
    /// Not a requirement by PEP 508 (or pip's local-path form).
    #[error("not a requirement: {0}")]
    Syntax(String),
}

/// The flags a package may set on a line of their own.
const SAFE_FLAGS: &[&str] = &["--pre", "--prefer-binary", "--require-hashes"];
/// The options taking a list of projects (`:all:`, `:none:` or names).
const FORMAT_OPTIONS: &[&str] = &["--only-binary", "--no-binary"];
/// Options that change where packages come from (only with the
/// configuration's consent), and whether each takes a value.
const INDEX_OPTIONS: &[(&str, bool)] = &[
    ("--index-url", true),
    ("--extra-index-url", true),
    ("--find-links", true),
    ("--trusted-host", true),
    ("--no-index", false),
];
/// Includes, in every long spelling pip and uv accept.
const INCLUDE_OPTIONS: &[&str] = &["--requirement", "--constraint"];
/// The digests pip accepts in `--hash`.
const HASH_ALGORITHMS: &[&str] = &["sha256", "sha384", "sha512"];

/// Checks one logical line of a requirements file.
pub fn check_line(line: &str, policy: RequirementPolicy) -> Result<(), Refusal> {
    accept(line, policy).map(drop)
}

/// Checks one requirement of a build backend (`[build-system] requires`)
/// before par installs it into a build environment shared by every package
/// naming the same requirements: a plain named requirement, never an option,
/// a hash, a path or a URL, whatever the policy allows.
pub fn check_build_requirement(requirement: &str) -> Result<(), Refusal> {
    match accept(requirement, RequirementPolicy::default())? {
        Accepted::Requirement {
            target: None,
            hashes: false,
        } => Ok(()),
        _ => Err(Refusal::BuildRequirement),
    }
}

/// What an accepted line is.
enum Accepted {
    /// One allowed option, alone on its line.
    Option,
    /// A requirement: where it points (`None` for a name with a version,
    /// if any), and whether `--hash` options follow it.
    Requirement { target: Option<Target>, hashes: bool },
}

fn accept(line: &str, policy: RequirementPolicy) -> Result<Accepted, Refusal> {
    check_text(line)?;
    if line.starts_with('-') {
        check_option_line(line, policy).map(|()| Accepted::Option)
    } else {
        check_requirement_line(line, policy)
    }
}

/// What is refused wherever it appears in a line.
fn check_text(line: &str) -> Result<(), Refusal> {
    if line.chars().any(|c| c.is_control() || (c.is_whitespace() && c != ' ')) {
        return Err(Refusal::Characters);
    }
    if line.contains("${") {
        return Err(Refusal::EnvironmentReference);
    }
    if line.to_ascii_lowercase().contains("file:") {
        return Err(Refusal::FileUrl);
    }
    // pip and uv join a line ending in `\` with the next and trim; pip drops
    // `#` and what follows when it starts the line or follows a space, uv's
    // parser also when a space (or the end) follows it.
    let comment = line.starts_with('#') || line.contains(" #") || line.contains("# ") || line.ends_with('#');
    if line.contains('\\') || comment || line.trim() != line || line.is_empty() {
        return Err(Refusal::Unstable);
    }
    Ok(())
}

/// A line of its own holding exactly one allowed long option, with its value
/// after `=` or one space.
fn check_option_line(line: &str, policy: RequirementPolicy) -> Result<(), Refusal> {
    let (first, rest) = line.split_once(' ').map_or((line, None), |(f, r)| (f, Some(r)));
    let (name, inline) = first.split_once('=').map_or((first, None), |(n, v)| (n, Some(v)));
    if !name.starts_with("--") {
        let short: String = name.chars().take(2).collect();
        return Err(match short.as_str() {
            "-r" | "-c" => Refusal::Include,
            _ => Refusal::ShortOption(short),
        });
    }
    let takes_value = if SAFE_FLAGS.contains(&name) {
        false
    } else if FORMAT_OPTIONS.contains(&name) {
        true
    } else if let Some(&(_, takes_value)) = INDEX_OPTIONS.iter().find(|(known, _)| *known == name) {
        if !policy.allow_index_options {
            return Err(Refusal::IndexOption(name.to_owned()));
        }
        takes_value
    } else if INCLUDE_OPTIONS.iter().any(|include| is_abbreviation(name, include)) {
        return Err(Refusal::Include);
    } else if is_abbreviation(name, "--editable") {
        return Err(Refusal::Editable);
    } else {
        return Err(Refusal::UnknownOption(name.to_owned()));
    };
    let (value, extra) = match (takes_value, inline, rest) {
        (false, Some(_), _) => return Err(Refusal::UnexpectedValue(name.to_owned())),
        (false, None, extra) => ("", extra),
        (true, Some(value), extra) => (value, extra),
        (true, None, Some(rest)) => rest.split_once(' ').map_or((rest, None), |(v, e)| (v, Some(e))),
        (true, None, None) => return Err(Refusal::MissingValue(name.to_owned())),
    };
    if let Some(extra) = extra {
        return Err(Refusal::SecondOption {
            option: name.to_owned(),
            extra: extra.to_owned(),
        });
    }
    if takes_value && (value.is_empty() || value.starts_with('-')) {
        return Err(Refusal::MissingValue(name.to_owned()));
    }
    if value.contains(['\'', '"']) {
        return Err(Refusal::BadValue {
            option: name.to_owned(),
            expected: "a value without quotes",
            value: value.to_owned(),
        });
    }
    if FORMAT_OPTIONS.contains(&name) && !is_format_control(value) {
        return Err(Refusal::BadValue {
            option: name.to_owned(),
            expected: ":all:, :none: or project names separated by commas",
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// optparse takes any unambiguous prefix of a long option (`--requir` for
/// `--requirement`); refusing every prefix of at least `--r` is safe, since
/// none of them is on the allow-list.
fn is_abbreviation(name: &str, option: &str) -> bool {
    name.len() > 3 && option.starts_with(name)
}

/// `:all:`, `:none:` or project names separated by commas.
fn is_format_control(value: &str) -> bool {
    value == ":all:" || value == ":none:" || value.split(',').all(|name| PackageName::from_str(name).is_ok())
}

/// A requirement, then only `--hash` options. The requirement ends where pip
/// ends it, at the first space-separated word starting with `-`.
fn check_requirement_line(line: &str, policy: RequirementPolicy) -> Result<Accepted, Refusal> {
    let (requirement, options) = match line.find(" -") {
        Some(at) => (&line[..at], &line[at + 1..]),
        None => (line, ""),
    };
    check_hashes(options)?;
    let hashes = !options.is_empty();
    let requirement = requirement.trim_end();
    // shlex, which pip applies to options, would unquote `"-i"` into one.
    if let Some(word) = requirement.split(['\'', '"']).find(|word| word.starts_with('-')) {
        return Err(Refusal::AfterRequirement(word.to_owned()));
    }
    // pip installs a requirement holding a `/` as a path whenever such a
    // directory exists, even one that parses as a name (`x===../../..` beside
    // a directory called `x===..`): no reading of it may climb out.
    if requirement.starts_with('/') || requirement.split('/').any(|segment| segment == "..") {
        return Err(Refusal::Outside);
    }
    let target = match parse_named(requirement) {
        Ok(parsed) => match parsed.version_or_url {
            Some(VersionOrUrl::Url(target)) => target,
            _ => return Ok(Accepted::Requirement { target: None, hashes }),
        },
        // pip's rule for a requirement that is a path, not a name.
        Err(named) if requirement.contains('/') || requirement.starts_with('.') || is_archive(requirement) => {
            parse_unnamed(requirement).map_err(|_| named)?
        }
        Err(named) => return Err(named),
    };
    match &target {
        Target::Url if !policy.allow_direct_urls => return Err(Refusal::DirectUrl),
        Target::Url => {}
        Target::Path(path) => check_local_path(path)?,
    }
    Ok(Accepted::Requirement {
        target: Some(target),
        hashes,
    })
}

/// After a requirement: `--hash=ALGORITHM:HEX` or `--hash ALGORITHM:HEX`, any number.
fn check_hashes(options: &str) -> Result<(), Refusal> {
    let mut words = options.split(' ').filter(|word| !word.is_empty());
    while let Some(word) = words.next() {
        let digest = match word.strip_prefix("--hash") {
            Some("") => words.next().unwrap_or(""),
            Some(inline) if inline.starts_with('=') => &inline[1..],
            _ => return Err(Refusal::AfterRequirement(word.to_owned())),
        };
        let well_formed = digest.split_once(':').is_some_and(|(algorithm, hex)| {
            HASH_ALGORITHMS.contains(&algorithm) && !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !well_formed {
            return Err(Refusal::Hash(digest.to_owned()));
        }
    }
    Ok(())
}

/// What an accepted requirement line asks for: what a lock given for the
/// load must hold ([`crate::install::pylock::Lock::satisfies`]).
#[derive(Debug, Clone)]
pub(crate) enum Asked {
    /// An option on a line of its own: no distribution.
    Nothing,
    /// A named requirement.
    Named {
        /// Normalised.
        name: PackageName,
        /// `>=2,<3`, when it gives versions.
        specifiers: Option<VersionSpecifiers>,
        /// `name @ URL` or `name @ ./path`: a direct reference, not an index version.
        direct: bool,
        /// When it applies.
        marker: MarkerTree,
    },
    /// A local path, as written (`./vendor/helper`).
    Path(String),
}

/// What the line (one [`check_line`] accepted) asks for; `None` when it does not parse.
pub(crate) fn asked(line: &str) -> Option<Asked> {
    if line.starts_with('-') {
        return Some(Asked::Nothing);
    }
    let requirement = line.find(" -").map_or(line, |at| &line[..at]).trim_end();
    match parse_named(requirement) {
        Ok(parsed) => {
            let (specifiers, direct) = match parsed.version_or_url {
                Some(VersionOrUrl::VersionSpecifier(specifiers)) => (Some(specifiers), false),
                Some(VersionOrUrl::Url(_)) => (None, true),
                None => (None, false),
            };
            Some(Asked::Named {
                name: parsed.name,
                specifiers,
                direct,
                marker: parsed.marker,
            })
        }
        Err(_) => match parse_unnamed(requirement).ok()? {
            Target::Path(path) => Some(Asked::Path(path)),
            Target::Url => None,
        },
    }
}

/// Whether `text` is one PEP 508 requirement with a name, and nothing else
/// (no option, no bare path or URL): what a `Requires-Dist` may hold.
pub(crate) fn is_named_requirement(text: &str) -> bool {
    !text.starts_with('-') && !text.contains(" -") && parse_named(text).is_ok()
}

/// pip treats a lone name ending like an archive as a file.
fn is_archive(requirement: &str) -> bool {
    let lower = requirement.to_ascii_lowercase();
    [".whl", ".tar.gz", ".zip", ".tgz", ".tar.bz2", ".tar"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

fn parse_named(requirement: &str) -> Result<Requirement<Target>, Refusal> {
    guarded(|| Requirement::<Target>::from_str(requirement).map_err(syntax))
}

fn parse_unnamed(requirement: &str) -> Result<Target, Refusal> {
    guarded(|| {
        let mut ignore_warnings = |_, _| {};
        // The working directory is never used: `Target` keeps paths as written.
        UnnamedRequirement::<Target>::parse(requirement, "/", &mut ignore_warnings)
            .map(|parsed| parsed.url)
            .map_err(syntax)
    })
}

/// Runs the parser so that a bug in it (an earlier parser panicked on
/// `t./x`) refuses the line instead of taking the loader down. Fuzzing
/// builds abort on the panic, so such a bug is still found.
fn guarded<T>(parse: impl FnOnce() -> Result<T, Refusal>) -> Result<T, Refusal> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse))
        .unwrap_or_else(|_| Err(Refusal::Syntax("the requirement parser failed on it".into())))
}

fn syntax(error: Pep508Error<Target>) -> Refusal {
    Refusal::Syntax(error.message.to_string())
}

/// A local path must be relative and stay inside the package (the installer
/// runs with the package as its working directory), and hold only characters
/// at which pip and uv cannot cut it differently (`;`, `[`, `@`, `:`, spaces).
fn check_local_path(path: &str) -> Result<(), Refusal> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '/');
    if path.is_empty() || !path.chars().all(plain) {
        return Err(Refusal::PathCharacters(path.to_owned()));
    }
    let inside = Path::new(path)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if inside { Ok(()) } else { Err(Refusal::Outside) }
}

/// Where a requirement points (`name @ …`, or a requirement that is a path),
/// kept as written: a URL with a scheme, or anything else as a local path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    /// A URL (`https://…`, `git+ssh://…`, `svn+ssh:host/x`).
    Url,
    /// A path, exactly as written.
    Path(String),
}

impl Target {
    fn classify(text: &str) -> Self {
        let scheme = text.split_once(':').is_some_and(|(scheme, _)| {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        if scheme { Self::Url } else { Self::Path(text.to_owned()) }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url => f.write_str("<url>"),
            Self::Path(path) => f.write_str(path),
        }
    }
}

impl Pep508Url for Target {
    type Err = Infallible;

    fn parse_url(url: &str, _working_dir: Option<&Path>) -> Result<Self, Self::Err> {
        Ok(Self::classify(url))
    }

    fn displayable_with_credentials(&self) -> impl fmt::Display {
        self
    }
}

impl CacheKey for Target {
    fn cache_key(&self, state: &mut CacheKeyHasher) {
        self.to_string().cache_key(state);
    }
}

impl UnnamedRequirementUrl for Target {
    fn parse_path(path: impl AsRef<Path>, _working_dir: impl AsRef<Path>) -> Result<Self, Self::Err> {
        Ok(Self::Path(path.as_ref().to_string_lossy().into_owned()))
    }

    fn parse_absolute_path(path: impl AsRef<Path>) -> Result<Self, Self::Err> {
        Ok(Self::Path(path.as_ref().to_string_lossy().into_owned()))
    }

    fn parse_unnamed_url(given: impl AsRef<str>) -> Result<Self, Self::Err> {
        Ok(Self::classify(given.as_ref()))
    }

    fn with_given(self, _given: impl AsRef<str>) -> Self {
        self
    }

    fn given(&self) -> Option<&str> {
        match self {
            Self::Url => None,
            Self::Path(path) => Some(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(line: &str) -> Refusal {
        check_line(line, RequirementPolicy::default()).expect_err(line)
    }

    #[test]
    fn a_requires_dist_value_is_one_named_requirement_and_nothing_else() {
        for named in [
            "packaging>=20",
            "idna; extra == 'x'",
            "a[b,c] (>=1.0,<2)",
            "x @ https://example.com/x-1.0-py3-none-any.whl",
        ] {
            assert!(is_named_requirement(named), "{named}");
        }
        for other in [
            "",
            "-r other.txt",
            "--index-url https://evil.example/simple",
            "packaging --index-url https://evil.example/simple",
            "./vendor/helper",
            "https://example.com/x-1.0-py3-none-any.whl",
            "not a requirement",
        ] {
            assert!(!is_named_requirement(other), "{other:?}");
        }
    }

    const OPEN: RequirementPolicy = RequirementPolicy {
        allow_index_options: true,
        allow_direct_urls: true,
    };

    #[test]
    fn ordinary_requirements_pass() {
        for line in [
            "requests",
            "fastapi==0.110.0",
            "pydantic[email]>=2,<3",
            "uvicorn ; python_version >= \"3.8\"",
            "uvicorn;python_version>='3.8'",
            "Django (>=4.2, <5)",
            "./vendor/helper",
            "vendor/helper",
            "./vendor/helper[cli,extra_2]",
            "./vendor/helper ; python_version >= '3.8'",
            "par-helper @ ./vendor/helper",
            "par-helper[cli, extra_2] @ ./vendor/helper ; python_version >= '3.8'",
            "vendor/helper-1.0-py3-none-any.whl",
            "helper-1.0.tar.gz",
            "httpx==0.27.0 --hash=sha256:abc123",
            "httpx==0.27.0 --hash sha256:ABC123 --hash=sha512:0f",
            "--pre",
            "--prefer-binary",
            "--require-hashes",
            "--only-binary :all:",
            "--only-binary=:none:",
            "--no-binary=numpy,scipy",
        ] {
            assert_eq!(check_line(line, RequirementPolicy::default()), Ok(()), "{line}");
        }
    }

    /// Found by a longer run of the requirements fuzz target (`--pre -pi://`)
    /// and confirmed by hand: with pip, each line reached a listener that
    /// stood for an attacker's index.
    #[test]
    fn an_allowed_option_carries_no_other_option_past_the_check() {
        for line in [
            "--pre -i http://127.0.0.1:9/simple",
            "--prefer-binary --index-url=http://127.0.0.1:9/simple",
            "--pre --extra-index-url http://127.0.0.1:9/simple",
            "--pre -f http://127.0.0.1:9/links",
            "--pre -pi://",
            "--only-binary :all: --index-url https://evil.example/simple",
            "--require-hashes --trusted-host evil.example",
            "--prefer-binary stray",
        ] {
            for policy in [RequirementPolicy::default(), OPEN] {
                let refusal = check_line(line, policy).expect_err(line);
                assert!(matches!(refusal, Refusal::SecondOption { .. }), "{line}: {refusal}");
            }
        }
    }

    #[test]
    fn options_other_than_the_allow_list_are_refused() {
        assert_eq!(
            refused("--index-url https://evil.example/simple"),
            Refusal::IndexOption("--index-url".into())
        );
        assert_eq!(
            refused("--extra-index-url=https://evil.example"),
            Refusal::IndexOption("--extra-index-url".into())
        );
        assert_eq!(
            refused("--find-links ./wheels"),
            Refusal::IndexOption("--find-links".into())
        );
        assert_eq!(
            refused("--trusted-host evil.example"),
            Refusal::IndexOption("--trusted-host".into())
        );
        assert_eq!(refused("--no-index"), Refusal::IndexOption("--no-index".into()));
        for short in [
            "-i https://evil.example",
            "-ihttps://evil.example",
            "-f ./wheels",
            "-e ./vendor/x",
            "-pi://",
        ] {
            assert!(matches!(refused(short), Refusal::ShortOption(_)), "{short}");
        }
        for include in [
            "-r other.txt",
            "-rother.txt",
            "-c c.txt",
            "--requirement x",
            "--requir=x",
            "--constraint=x",
        ] {
            assert_eq!(refused(include), Refusal::Include, "{include}");
        }
        assert_eq!(refused("--editable ./vendor/x"), Refusal::Editable);
        assert_eq!(refused("--edit=./vendor/x"), Refusal::Editable);
        assert_eq!(
            refused("--index https://evil.example"),
            Refusal::UnknownOption("--index".into())
        );
        assert_eq!(
            refused("--global-option=--evil"),
            Refusal::UnknownOption("--global-option".into())
        );
        assert_eq!(refused("--pre=yes"), Refusal::UnexpectedValue("--pre".into()));
        assert_eq!(refused("--only-binary"), Refusal::MissingValue("--only-binary".into()));
        assert_eq!(
            refused("--only-binary -i"),
            Refusal::MissingValue("--only-binary".into())
        );
        assert!(matches!(refused("--no-binary=x://y"), Refusal::BadValue { .. }));
        assert!(matches!(refused("--only-binary ':all:'"), Refusal::BadValue { .. }));
    }

    #[test]
    fn only_hashes_may_follow_a_requirement() {
        assert_eq!(refused("requests -f wheels"), Refusal::AfterRequirement("-f".into()));
        assert_eq!(
            refused("requests --index-url=x"),
            Refusal::AfterRequirement("--index-url=x".into())
        );
        assert_eq!(
            refused("requests ; python_version > '3' -i evil/simple"),
            Refusal::AfterRequirement("-i".into())
        );
        assert_eq!(
            refused("requests --install-option=x"),
            Refusal::AfterRequirement("--install-option=x".into())
        );
        assert_eq!(
            refused("httpx --hash=sha256:abc --hash md5:abc"),
            Refusal::Hash("md5:abc".into())
        );
        assert_eq!(refused("httpx --hash"), Refusal::Hash(String::new()));
        let urls_only = RequirementPolicy {
            allow_index_options: false,
            allow_direct_urls: true,
        };
        assert_eq!(
            check_line(
                "pkg @ https://mirror.example/pkg.whl -i https://evil.example",
                urls_only
            ),
            Err(Refusal::AfterRequirement("-i".into()))
        );
    }

    #[test]
    fn urls_and_paths_out_of_the_package_are_refused() {
        assert_eq!(refused("evil @ https://evil.example/evil.whl"), Refusal::DirectUrl);
        assert_eq!(refused("git+https://evil.example/repo.git"), Refusal::DirectUrl);
        assert_eq!(refused("https://evil.example/evil.whl"), Refusal::DirectUrl);
        assert_eq!(refused("x @ svn+ssh:host/repo"), Refusal::DirectUrl);
        assert_eq!(refused("../outside"), Refusal::Outside);
        assert_eq!(refused("/etc/passwd"), Refusal::Outside);
        assert_eq!(refused("sneaky @ /home/someone/project"), Refusal::Outside);
        assert_eq!(
            refused("sneaky @ ../../outside ; python_version > '3'"),
            Refusal::Outside
        );
        assert_eq!(refused("./a/../../outside"), Refusal::Outside);
        // Earlier fuzz findings: extras, a scheme or a marker hid a path.
        assert_eq!(refused("a[x]/../../outside"), Refusal::Outside);
        assert!(matches!(
            refused("fbzr+ile:.@./x"),
            Refusal::PathCharacters(_) | Refusal::Syntax(_)
        ));
        assert!(matches!(refused("..;python_version>'3'"), Refusal::PathCharacters(_)));
        assert!(matches!(refused("./x;python_version>'3'"), Refusal::PathCharacters(_)));
        assert_eq!(refused("-e file:../outside"), Refusal::FileUrl);
        assert_eq!(refused("sneaky @ FILE:../outside"), Refusal::FileUrl);
        assert_eq!(
            refused("pkg @ https://evil.example/?${PIP_INDEX_URL}"),
            Refusal::EnvironmentReference
        );
        assert_eq!(refused("/s'@x"), Refusal::Outside);
        assert!(matches!(refused("requests>=="), Refusal::Syntax(_)));
        // Found by the requirements fuzz target: pep508_rs 0.9 panicked on
        // a name or an extra ending in `.` before another character
        // (`t./x` is a path inside the package, and accepted as one).
        assert!(matches!(refused("t.>=1"), Refusal::Syntax(_)));
        assert!(matches!(refused("x[a.]>=1"), Refusal::Syntax(_)));
        assert!(matches!(refused("./x[a.]"), Refusal::Syntax(_)));
        // pip reads these as paths when a directory `x===..` (or
        // `name @ https:`) exists in the package.
        assert_eq!(refused("x===../../.."), Refusal::Outside);
        assert_eq!(check_line("name @ https://x/../../..", OPEN), Err(Refusal::Outside));
        assert_eq!(refused("x ; extra == '-i'"), Refusal::AfterRequirement("-i".into()));
    }

    #[test]
    fn lines_the_installer_would_read_differently_are_refused() {
        assert_eq!(refused("requests \\"), Refusal::Unstable);
        assert_eq!(refused("requests # -i x"), Refusal::Unstable);
        // Found by the requirements fuzz target: uv's parser ends a URL at
        // `#` and a space, and drops the rest as a comment.
        assert_eq!(refused("x @ ./a#  y @ https://evil.example"), Refusal::Unstable);
        assert_eq!(refused("x @ ./a#"), Refusal::Unstable);
        assert_eq!(refused(" requests"), Refusal::Unstable);
        assert_eq!(refused(""), Refusal::Unstable);
        assert_eq!(refused("requests\t-i x"), Refusal::Characters);
        assert_eq!(refused("requests\u{2003}-i x"), Refusal::Characters);
        assert_eq!(refused("requests\n-i x"), Refusal::Characters);
    }

    #[test]
    fn configuration_can_allow_indexes_and_urls() {
        assert_eq!(check_line("--index-url https://mirror.example/simple", OPEN), Ok(()));
        assert_eq!(check_line("--find-links=./wheels", OPEN), Ok(()));
        assert_eq!(check_line("--no-index", OPEN), Ok(()));
        assert_eq!(check_line("pkg @ https://mirror.example/pkg.whl", OPEN), Ok(()));
        assert_eq!(check_line("git+https://mirror.example/repo.git", OPEN), Ok(()));
        assert!(check_line("-i https://mirror.example/simple", OPEN).is_err());
        assert!(check_line("../outside", OPEN).is_err());
        assert!(check_line("pkg @ file:///etc/x", OPEN).is_err());
        assert!(check_line("--find-links file:///home/someone/wheels", OPEN).is_err());
    }

    #[test]
    fn build_requirements_are_plain_named_requirements() {
        for ok in ["setuptools>=40.8.0", "hatchling", "x[extra]; python_version < '4'"] {
            assert_eq!(check_build_requirement(ok), Ok(()), "{ok}");
        }
        for refused in [
            "./backend",
            "backend @ https://example.com/b.whl",
            "backend @ ./b",
            "-r other.txt",
            "--pre",
            "setuptools -i https://evil.example",
            "setuptools --hash=sha256:00",
            "git+https://example.com/b",
            "C:\\b",
            "setuptools\n-r x",
            "",
        ] {
            assert!(check_build_requirement(refused).is_err(), "{refused}");
        }
    }
}
