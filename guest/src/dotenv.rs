//! The package's `.env` file: `KEY=VALUE` lines, parsed as untrusted text.
//!
//! Accepted: blank lines and `#` comments, an optional `export ` before the
//! key, unquoted values (cut at ` #`, trimmed), `'single'` quoted values
//! (taken as written) and `"double"` quoted values with the escapes `\n`,
//! `\t`, `\r`, `\\`, `\"` and `\$`. Nothing is expanded (`${VAR}` stays as
//! written) and a value never spans lines. A key a package may not set
//! (par-rules' `env` module), a NUL, a value or a file over its limit, or a
//! line that is none of the above refuses the whole file, naming the line.

use par_rules::env::{MAX_ENV_VARS, MAX_VALUE_BYTES, package_refusal};

/// One variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// Its name.
    pub key: String,
    /// Its value, unquoted and unescaped.
    pub value: String,
}

/// Why the file is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError {
    /// 1-based line (0: the file as a whole).
    pub line: u32,
    /// The variable at fault, when the line names one.
    pub key: Option<String>,
    /// Why.
    pub reason: String,
}

impl EnvFileError {
    fn at(line: usize, key: Option<&str>, reason: impl Into<String>) -> Self {
        Self {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            key: key.map(str::to_owned),
            reason: reason.into(),
        }
    }
}

/// Parses a whole `.env` file. A later line setting the same key wins.
pub fn parse(bytes: &[u8]) -> Result<Vec<EnvVar>, EnvFileError> {
    let text = std::str::from_utf8(bytes).map_err(|_| EnvFileError::at(0, None, "not UTF-8"))?;
    let mut vars: Vec<EnvVar> = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let number = index + 1;
        let line = line.strip_suffix('\r').unwrap_or(line).trim_start_matches([' ', '\t']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export")
            .filter(|rest| rest.starts_with([' ', '\t']))
            .map_or(line, |rest| rest.trim_start_matches([' ', '\t']));
        let Some((key, raw)) = line.split_once('=') else {
            return Err(EnvFileError::at(number, None, "expected KEY=VALUE"));
        };
        let key = key.trim_end_matches([' ', '\t']);
        if let Some(refusal) = package_refusal(key) {
            let named = key.len() <= par_rules::env::MAX_NAME_BYTES && !key.chars().any(char::is_control);
            return Err(EnvFileError::at(number, named.then_some(key), refusal.reason()));
        }
        let value =
            value(raw.trim_start_matches([' ', '\t'])).map_err(|why| EnvFileError::at(number, Some(key), why))?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(EnvFileError::at(
                number,
                Some(key),
                format!("value over {MAX_VALUE_BYTES} bytes"),
            ));
        }
        if value.contains('\0') {
            return Err(EnvFileError::at(number, Some(key), "NUL in the value"));
        }
        vars.retain(|var| var.key != key);
        if vars.len() >= MAX_ENV_VARS {
            return Err(EnvFileError::at(
                number,
                Some(key),
                format!("more than {MAX_ENV_VARS} variables"),
            ));
        }
        vars.push(EnvVar {
            key: key.to_owned(),
            value,
        });
    }
    Ok(vars)
}

/// A value as written after `=`: quoted or not.
fn value(raw: &str) -> Result<String, &'static str> {
    let (value, rest) = if let Some(body) = raw.strip_prefix('\'') {
        let end = body.find('\'').ok_or("unterminated single quote")?;
        (body[..end].to_owned(), &body[end + 1..])
    } else if let Some(body) = raw.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated double quote"),
                Some((at, '"')) => break at,
                Some((_, '\\')) => match chars.next().map(|(_, c)| c) {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some('r') => value.push('\r'),
                    Some(c @ ('\\' | '"' | '$')) => value.push(c),
                    Some(_) => return Err("unknown escape (use \\n, \\t, \\r, \\\\, \\\", \\$)"),
                    None => return Err("unterminated double quote"),
                },
                Some((_, c)) => value.push(c),
            }
        };
        (value, &body[end + 1..])
    } else {
        let cut = raw
            .char_indices()
            .find(|&(at, c)| c == '#' && raw[..at].ends_with([' ', '\t']))
            .map_or(raw.len(), |(at, _)| at);
        return Ok(raw[..cut].trim_end_matches([' ', '\t']).to_owned());
    };
    let rest = rest.trim_start_matches([' ', '\t']);
    if rest.is_empty() || rest.starts_with('#') {
        Ok(value)
    } else {
        Err("text after the closing quote")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> Vec<(String, String)> {
        parse(text.as_bytes())
            .unwrap_or_else(|e| panic!("{e:?}"))
            .into_iter()
            .map(|var| (var.key, var.value))
            .collect()
    }

    fn refused(text: &str) -> (u32, Option<String>) {
        let error = parse(text.as_bytes()).expect_err("refused");
        (error.line, error.key)
    }

    #[test]
    fn what_pak_writes_and_what_dotenv_files_hold_is_read() {
        let text = "# Copy to .env\nOPENAI_API_KEY=sk-placeholder\n\nexport MODEL = \"gpt-4o\"  # the default\nEMPTY=\nSPACED = a b c   # comment\nHASH=a#b\nESC=\"line\\nnext \\\"q\\\" \\$HOME\"\r\nLITERAL='${HOME} \\n'\n";
        let expected = [
            ("OPENAI_API_KEY", "sk-placeholder"),
            ("MODEL", "gpt-4o"),
            ("EMPTY", ""),
            ("SPACED", "a b c"),
            ("HASH", "a#b"),
            ("ESC", "line\nnext \"q\" $HOME"),
            ("LITERAL", "${HOME} \\n"),
        ];
        let expected: Vec<(String, String)> = expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(vars(text), expected);
    }

    #[test]
    fn a_later_line_wins() {
        assert_eq!(
            vars("A=1\nB=2\nA=3\n"),
            vec![("B".into(), "2".into()), ("A".into(), "3".into())]
        );
    }

    #[test]
    fn keys_that_load_code_or_say_where_things_are_refuse_the_file() {
        assert_eq!(refused("OK=1\nLD_PRELOAD=/tmp/x.so\n"), (2, Some("LD_PRELOAD".into())));
        assert_eq!(refused("export PYTHONPATH=/evil\n"), (1, Some("PYTHONPATH".into())));
        assert_eq!(refused("PATH=/evil\n"), (1, Some("PATH".into())));
        assert_eq!(refused("LISTEN_FDS=9\n"), (1, Some("LISTEN_FDS".into())));
        assert_eq!(refused("1BAD=x\n"), (1, Some("1BAD".into())));
        assert_eq!(refused("A\u{1b}[2J=x\n"), (1, None));
    }

    #[test]
    fn malformed_lines_refuse_the_file() {
        for (text, line) in [
            ("A=1\nno equals here\n", 2),
            ("A=\"open\n", 1),
            ("A='open\n", 1),
            ("A=\"x\" trailing\n", 1),
            ("A=\"bad \\q escape\"\n", 1),
            ("A=\"nul \u{0} inside\"\n", 1),
        ] {
            assert_eq!(parse(text.as_bytes()).expect_err(text).line, line, "{text:?}");
        }
        assert_eq!(parse(b"A=\xff\n").expect_err("not UTF-8").line, 0);
    }

    #[test]
    fn limits_hold() {
        let many: String = (0..=MAX_ENV_VARS).map(|i| format!("V{i}=x\n")).collect();
        assert_eq!(
            parse(many.as_bytes()).expect_err("too many").line,
            MAX_ENV_VARS as u32 + 1
        );
        let long = format!("A={}\n", "x".repeat(MAX_VALUE_BYTES + 1));
        assert_eq!(parse(long.as_bytes()).expect_err("too long").key.as_deref(), Some("A"));
    }
}
