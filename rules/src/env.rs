//! Which environment variables a package may set for its agent: through
//! `agent.yaml`'s `environment` map or its `.env` file. A package may
//! configure its own code; it may not change how anything else in the
//! agent's process tree behaves: how the dynamic loader and the C library
//! load code, what a shell runs before the agent, how an interpreter or
//! runtime loads code, which certificates TLS trusts, where connections go,
//! which programs libraries start, where programs and files are, nor the
//! variables par itself hands the agent. [`RULES`] is the one list; the
//! table in docs/SECURITY.md is checked against it.

/// Why a variable is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvRefusal {
    /// Not a portable name: a letter or `_`, then letters, digits and `_`, at most 128.
    BadName,
    /// It changes how the dynamic loader or the C library loads code or
    /// reads its configuration (glibc's list of variables it drops for
    /// setuid programs, and the like).
    DynamicLoader,
    /// A shell reads it before running anything (and `sh -c` may stand
    /// between a program and the agent's children).
    Shell,
    /// It changes how an interpreter or runtime (Python, Perl, Ruby, Node,
    /// Java, Git, the installers) loads code or options.
    Interpreter,
    /// It changes which certificates or settings TLS uses, or where its keys go.
    Tls,
    /// It sends connections through a proxy, or past one.
    Proxy,
    /// It names a program that libraries start (a browser, a pager, an askpass).
    StartsProgram,
    /// It says where programs, home, configuration or temporary files are: the sandbox decides.
    Location,
    /// par sets it for the agent (`AGENT_PACKAGE_PATH`, `AGENT_APP_ID`, `LISTEN_FDS`, `PAR_PORT_…`).
    SetByPar,
}

impl EnvRefusal {
    /// Why, for an error message that names the variable.
    pub fn reason(self) -> &'static str {
        match self {
            EnvRefusal::BadName => "not a variable name (a letter or `_`, then letters, digits and `_`)",
            EnvRefusal::DynamicLoader => "it changes how the dynamic loader or the C library loads code",
            EnvRefusal::Shell => "a shell reads it before running anything",
            EnvRefusal::Interpreter => "it changes how an interpreter or runtime loads code",
            EnvRefusal::Tls => "it changes what TLS trusts or where its keys go",
            EnvRefusal::Proxy => "it sends connections through a proxy",
            EnvRefusal::StartsProgram => "it names a program that libraries start",
            EnvRefusal::Location => "the sandbox sets where programs, home, configuration and temporary files are",
            EnvRefusal::SetByPar => "par sets it for the agent",
        }
    }
}

/// How a rule matches a name (compared without case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// The whole name.
    Name(&'static str),
    /// Names that start with it.
    Prefix(&'static str),
    /// Names that end with it.
    Suffix(&'static str),
}

impl Pattern {
    /// Whether `upper` (a name in capitals) matches.
    fn matches(self, upper: &str) -> bool {
        match self {
            Pattern::Name(name) => upper == name,
            Pattern::Prefix(prefix) => upper.starts_with(prefix),
            Pattern::Suffix(suffix) => upper.ends_with(suffix),
        }
    }
}

use EnvRefusal::{DynamicLoader, Interpreter, Location, Proxy, SetByPar, Shell, StartsProgram, Tls};
use Pattern::{Name, Prefix, Suffix};

/// Every variable a package may not set, and why: the first rule that
/// matches decides. Names are compared without case (`http_proxy` is
/// `HTTP_PROXY`).
pub const RULES: &[(Pattern, EnvRefusal)] = &[
    // The dynamic loader and the C library: glibc's "unsecure" variables,
    // which it ignores in setuid programs for this reason, and their kin.
    (Prefix("LD_"), DynamicLoader),
    (Prefix("DYLD_"), DynamicLoader),
    (Prefix("MALLOC_"), DynamicLoader),
    (Name("GLIBC_TUNABLES"), DynamicLoader),
    (Name("GCONV_PATH"), DynamicLoader),
    (Name("GETCONF_DIR"), DynamicLoader),
    (Name("HOSTALIASES"), DynamicLoader),
    (Name("LOCALDOMAIN"), DynamicLoader),
    (Name("LOCPATH"), DynamicLoader),
    (Name("NIS_PATH"), DynamicLoader),
    (Name("NLSPATH"), DynamicLoader),
    (Name("RESOLV_HOST_CONF"), DynamicLoader),
    (Name("RES_OPTIONS"), DynamicLoader),
    (Name("TZDIR"), DynamicLoader),
    // Shells (bash, dash, zsh) before their first command.
    (Name("BASH_ENV"), Shell),
    (Name("ENV"), Shell),
    (Name("IFS"), Shell),
    (Name("SHELLOPTS"), Shell),
    (Name("BASHOPTS"), Shell),
    (Name("PS1"), Shell),
    (Name("PS2"), Shell),
    (Name("PS3"), Shell),
    (Name("PS4"), Shell),
    (Name("PROMPT_COMMAND"), Shell),
    (Name("CDPATH"), Shell),
    (Name("GLOBIGNORE"), Shell),
    (Name("EXECIGNORE"), Shell),
    (Name("FPATH"), Shell),
    (Name("ZDOTDIR"), Shell),
    (Name("INPUTRC"), Shell),
    (Prefix("BASH_"), Shell),
    // Interpreters and runtimes.
    (Prefix("PYTHON"), Interpreter),
    (Name("VIRTUAL_ENV"), Interpreter),
    (Prefix("CONDA_"), Interpreter),
    (Prefix("PIP_"), Interpreter),
    (Prefix("UV_"), Interpreter),
    (Prefix("PERL5"), Interpreter),
    (Prefix("PERL_"), Interpreter),
    (Name("PERLLIB"), Interpreter),
    (Name("PERLIO"), Interpreter),
    (Name("PERLDB_OPTS"), Interpreter),
    (Prefix("RUBY"), Interpreter),
    (Name("GEM_HOME"), Interpreter),
    (Name("GEM_PATH"), Interpreter),
    (Name("NODE_OPTIONS"), Interpreter),
    (Name("NODE_PATH"), Interpreter),
    (Name("NODE_REPL_EXTERNAL_MODULE"), Interpreter),
    (Name("JAVA_TOOL_OPTIONS"), Interpreter),
    (Name("_JAVA_OPTIONS"), Interpreter),
    (Name("JDK_JAVA_OPTIONS"), Interpreter),
    (Name("CLASSPATH"), Interpreter),
    (Prefix("LUA_"), Interpreter),
    (Name("TCLLIBPATH"), Interpreter),
    (Name("PHPRC"), Interpreter),
    (Name("PHP_INI_SCAN_DIR"), Interpreter),
    (Prefix("GIT_"), Interpreter),
    (Name("GIO_MODULE_DIR"), Interpreter),
    (Name("GTK_MODULES"), Interpreter),
    (Name("QT_PLUGIN_PATH"), Interpreter),
    // TLS: what it trusts, how, and where its secrets go.
    (Prefix("OPENSSL_"), Tls),
    (Prefix("GNUTLS_"), Tls),
    (Prefix("SSL_"), Tls),
    (Name("SSLKEYLOGFILE"), Tls),
    (Name("REQUESTS_CA_BUNDLE"), Tls),
    (Name("CURL_CA_BUNDLE"), Tls),
    (Name("AWS_CA_BUNDLE"), Tls),
    (Name("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"), Tls),
    (Name("NODE_EXTRA_CA_CERTS"), Tls),
    (Name("NODE_TLS_REJECT_UNAUTHORIZED"), Tls),
    // Proxies (`HTTP_PROXY`, `https_proxy`, `ALL_PROXY`, `NO_PROXY` …).
    (Suffix("_PROXY"), Proxy),
    (Name("SOCKS_SERVER"), Proxy),
    // Programs libraries start on their own (Python's `webbrowser`, `pydoc`, `git`, `ssh`).
    (Name("BROWSER"), StartsProgram),
    (Name("PAGER"), StartsProgram),
    (Name("MANPAGER"), StartsProgram),
    (Name("EDITOR"), StartsProgram),
    (Name("VISUAL"), StartsProgram),
    (Name("SSH_ASKPASS"), StartsProgram),
    (Name("SUDO_ASKPASS"), StartsProgram),
    // Where things are: the sandbox's to say.
    (Name("PATH"), Location),
    (Name("HOME"), Location),
    (Name("TMPDIR"), Location),
    (Name("TMP"), Location),
    (Name("TEMP"), Location),
    (Name("SHELL"), Location),
    (Name("PWD"), Location),
    (Name("OLDPWD"), Location),
    (Prefix("XDG_"), Location),
    (Name("TERMINFO"), Location),
    (Name("TERMINFO_DIRS"), Location),
    // par's own.
    (Prefix("LISTEN_"), SetByPar),
    (Prefix("PAR_"), SetByPar),
    (Name("AGENT_PACKAGE_PATH"), SetByPar),
    (Name("AGENT_APP_ID"), SetByPar),
];

/// Longest variable name accepted.
pub const MAX_NAME_BYTES: usize = 128;
/// Largest `.env` file read.
pub const MAX_ENV_FILE_BYTES: u64 = 64 * 1024;
/// Most variables a package's `.env` may set.
pub const MAX_ENV_VARS: usize = 256;
/// Longest value accepted.
pub const MAX_VALUE_BYTES: usize = 32 * 1024;

/// Why a package may not set `name`, or `None` when it may.
pub fn package_refusal(name: &str) -> Option<EnvRefusal> {
    let portable = name.len() <= MAX_NAME_BYTES
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !portable {
        return Some(EnvRefusal::BadName);
    }
    let upper = name.to_ascii_uppercase();
    RULES
        .iter()
        .find(|(pattern, _)| pattern.matches(&upper))
        .map(|&(_, refusal)| refusal)
}

/// Why the caller (the runtime, trusted) may not set `name`: only a bad
/// name, or one par sets itself.
pub fn caller_refusal(name: &str) -> Option<EnvRefusal> {
    let portable = !name.is_empty() && !name.contains(['=', '\0']) && name.len() <= MAX_NAME_BYTES;
    if !portable {
        return Some(EnvRefusal::BadName);
    }
    let upper = name.to_ascii_uppercase();
    RULES
        .iter()
        .any(|&(pattern, refusal)| refusal == SetByPar && pattern.matches(&upper))
        .then_some(SetByPar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_may_configure_its_own_code() {
        for name in [
            "LOG_LEVEL",
            "OPENAI_MODEL",
            "_private",
            "feature_x",
            "PY_DEBUG_LEVEL",
            "NODE_ENV",
            "DATABASE_URL",
            "PROXY_TIMEOUT",
            "LANG",
            "TZ",
        ] {
            assert_eq!(package_refusal(name), None, "{name}");
        }
    }

    #[test]
    fn a_package_may_not_change_how_anything_else_behaves() {
        let cases = [
            ("LD_PRELOAD", DynamicLoader),
            ("ld_library_path", DynamicLoader),
            ("GLIBC_TUNABLES", DynamicLoader),
            ("LOCPATH", DynamicLoader),
            ("PYTHONPATH", Interpreter),
            ("PYTHONSTARTUP", Interpreter),
            ("pythonhome", Interpreter),
            ("BASH_ENV", Shell),
            // The names a review of par tried in agent.yaml, eight of which got through.
            ("SHELLOPTS", Shell),
            ("PS4", Shell),
            ("BASHOPTS", Shell),
            ("OPENSSL_CONF", Tls),
            ("OPENSSL_MODULES", Tls),
            ("OPENSSL_ENGINES", Tls),
            ("SSL_CERT_FILE", Tls),
            ("SSL_CERT_DIR", Tls),
            ("JAVA_TOOL_OPTIONS", Interpreter),
            ("RUBYOPT", Interpreter),
            ("PERLLIB", Interpreter),
            ("HTTP_PROXY", Proxy),
            ("https_proxy", Proxy),
            ("NO_PROXY", Proxy),
            ("BROWSER", StartsProgram),
            ("PATH", Location),
            ("Home", Location),
            ("TMPDIR", Location),
            ("XDG_CONFIG_HOME", Location),
            ("LISTEN_FDS", SetByPar),
            ("PAR_PORT_HTTP", SetByPar),
            ("AGENT_PACKAGE_PATH", SetByPar),
            ("", EnvRefusal::BadName),
            ("1ABC", EnvRefusal::BadName),
            ("A=B", EnvRefusal::BadName),
            ("A B", EnvRefusal::BadName),
            ("A\u{0}", EnvRefusal::BadName),
            ("ÄPFEL", EnvRefusal::BadName),
            ("BASH_FUNC_x%%", EnvRefusal::BadName),
        ];
        for (name, refusal) in cases {
            assert_eq!(package_refusal(name), Some(refusal), "{name:?}");
        }
        assert_eq!(
            package_refusal(&"A".repeat(MAX_NAME_BYTES + 1)),
            Some(EnvRefusal::BadName)
        );
    }

    #[test]
    fn every_rule_refuses_what_it_names_in_any_case() {
        for &(pattern, refusal) in RULES {
            let names = match pattern {
                Pattern::Name(name) => vec![name.to_owned()],
                Pattern::Prefix(prefix) => vec![prefix.to_owned(), format!("{prefix}X1")],
                Pattern::Suffix(suffix) => vec![format!("A{suffix}")],
            };
            for name in names {
                assert_eq!(package_refusal(&name), Some(refusal), "{name}");
                assert_eq!(package_refusal(&name.to_ascii_lowercase()), Some(refusal), "{name}");
            }
        }
    }

    #[test]
    fn the_caller_may_set_anything_par_does_not_set_itself() {
        for name in ["PYTHONPATH", "LD_PRELOAD", "OPENAI_API_KEY", "PATH", "HTTPS_PROXY"] {
            assert_eq!(caller_refusal(name), None, "{name}");
        }
        for name in ["LISTEN_PID", "PAR_PORT_HTTP", "agent_package_path"] {
            assert_eq!(caller_refusal(name), Some(SetByPar), "{name}");
        }
        assert_eq!(caller_refusal("A=B"), Some(EnvRefusal::BadName));
    }

    /// The table docs/SECURITY.md carries: one row per refusal, its names.
    fn documented_table() -> String {
        use std::fmt::Write as _;
        let kinds = [
            DynamicLoader,
            Shell,
            Interpreter,
            Tls,
            Proxy,
            StartsProgram,
            Location,
            SetByPar,
        ];
        let mut table =
            String::from("| refused because | names (any case; `X*` a prefix, `*X` a suffix) |\n| --- | --- |\n");
        for kind in kinds {
            let names: Vec<String> = RULES
                .iter()
                .filter(|(_, refusal)| *refusal == kind)
                .map(|(pattern, _)| match pattern {
                    Pattern::Name(name) => format!("`{name}`"),
                    Pattern::Prefix(prefix) => format!("`{prefix}*`"),
                    Pattern::Suffix(suffix) => format!("`*{suffix}`"),
                })
                .collect();
            let _ = writeln!(table, "| {} | {} |", kind.reason(), names.join(" "));
        }
        table
    }

    #[test]
    fn the_security_document_lists_exactly_these_rules() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/SECURITY.md");
        let document = std::fs::read_to_string(&path).expect("docs/SECURITY.md");
        let table = documented_table();
        assert!(
            document.contains(&table),
            "docs/SECURITY.md must hold this table, as the rules say it:\n\n{table}"
        );
    }
}
