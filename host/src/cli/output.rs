//! How a command prints its result: JSON with `--json`, else text for people.

use anyhow::Context as _;

/// Prints `value` as JSON with `--json`, else the text `human` makes.
pub(crate) fn print_result(
    json: bool,
    value: &impl serde::Serialize,
    human: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    let text = if json {
        serde_json::to_string(value).context("cannot render the result")?
    } else {
        human()
    };
    println!("{text}");
    Ok(())
}
