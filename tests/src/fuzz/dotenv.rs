//! The guest's `.env` parser on arbitrary bytes. Whatever it accepts is
//! something the host would accept too (every key one a package may set, no
//! NUL, within the limits), and it reads the same back when each variable is
//! written out again in double quotes: what an agent gets is what the file
//! says, with no second reading.

use par_guest::dotenv::{EnvVar, parse};
use par_rules::env::{MAX_ENV_VARS, MAX_VALUE_BYTES, package_refusal};

/// One input.
pub(crate) fn run(data: &[u8]) {
    let Ok(vars) = parse(data) else {
        return;
    };
    assert!(vars.len() <= MAX_ENV_VARS, "{} variables", vars.len());
    for var in &vars {
        assert_eq!(package_refusal(&var.key), None, "key {:?} accepted", var.key);
        assert!(
            !var.value.contains('\0') && var.value.len() <= MAX_VALUE_BYTES,
            "value of {}",
            var.key
        );
        assert_eq!(
            vars.iter().filter(|other| other.key == var.key).count(),
            1,
            "{} twice",
            var.key
        );
    }
    let written: String = vars.iter().map(quoted).collect();
    assert_eq!(
        parse(written.as_bytes()).as_ref(),
        Ok(&vars),
        "written again as {written:?}"
    );
}

/// `KEY="value"` with the value escaped as the parser reads it.
fn quoted(var: &EnvVar) -> String {
    let mut line = format!("{}=\"", var.key);
    for c in var.value.chars() {
        match c {
            '\n' => line.push_str("\\n"),
            '\t' => line.push_str("\\t"),
            '\r' => line.push_str("\\r"),
            '\\' | '"' | '$' => {
                line.push('\\');
                line.push(c);
            }
            c => line.push(c),
        }
    }
    line.push_str("\"\n");
    line
}
