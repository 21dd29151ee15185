//! `par list`, `par remove` and `par gc`: their arguments, the sizes and
//! durations they take, and their human output (`--json` prints the
//! library's own structures).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use par::{Collection, GcOptions, Listing};

/// `par gc`'s options.
#[derive(Debug, clap::Args)]
pub(crate) struct GcArgs {
    /// Deployments kept per app: the most recently loaded (the current one
    /// is kept even at 0).
    #[arg(long, value_name = "N", default_value_t = GcOptions::default().keep)]
    keep: usize,
    /// Then remove the least recently used deployments (never an app's
    /// current one) until the root takes at most SIZE (`500M`, `20G`).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_bytes: Option<u64>,
    /// Only remove what was last loaded longer ago than this (`90m`, `12h`, `7d`, `2w`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    older_than: Option<Duration>,
    /// Report what would be removed and change nothing.
    #[arg(long)]
    dry_run: bool,
}

impl GcArgs {
    /// The library's options.
    pub(crate) fn options(&self) -> GcOptions {
        GcOptions {
            keep: self.keep,
            max_bytes: self.max_bytes,
            older_than: self.older_than,
            dry_run: self.dry_run,
        }
    }
}

/// Where loads leave room: a budget for the root and a floor of free space.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Disk")]
pub(crate) struct DiskArgs {
    /// After each load that wrote something, remove the least recently used
    /// deployments (never an app's current one, one a running agent uses,
    /// or the one just loaded) until the root takes at most SIZE.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_root_bytes: Option<u64>,
    /// Refuse to start a load (error kind `disk-full`) while the root's
    /// filesystem has less than SIZE free; nothing is written.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub min_free_bytes: Option<u64>,
}

impl DiskArgs {
    /// Sets the budget and the floor.
    pub(crate) fn apply(&self, config: &mut par::LoaderConfig) {
        config.max_root_bytes = self.max_root_bytes;
        config.min_free_bytes = self.min_free_bytes;
    }
}

/// `1234`, `64K`, `500M`, `20G`, `1T` (powers of 1024; `KiB`, `MB`, … also read so).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}`: expected a whole number with an optional unit (K, M, G, T)"))?;
    let shift = match unit.to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (K, M, G, T)")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// `45s`, `90m`, `12h`, `7d`, `2w` (a bare number is seconds).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}`: expected a whole number with a unit (s, m, h, d, w)"))?;
    let seconds = match &text[digits.len()..] {
        "" | "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        "w" => 7 * 24 * 60 * 60,
        unit => return Err(format!("`{text}`: unknown unit `{unit}` (s, m, h, d, w)")),
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long"))
}

/// `par list`, as a table.
pub(crate) fn listing_text(listing: &Listing) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut lines = vec![format!(
        "{} ({} in all)",
        listing.root.display(),
        size(listing.root_bytes)
    )];
    if listing.apps.is_empty() {
        lines.push("  no apps".into());
    }
    for app in &listing.apps {
        lines.push(app.app_id.clone());
        for d in &app.deployments {
            let mut notes = Vec::new();
            if d.current {
                notes.push("current".to_owned());
            }
            if !d.agents.is_empty() {
                let pids: Vec<String> = d.agents.iter().map(u32::to_string).collect();
                notes.push(format!("in use by pid {}", pids.join(", ")));
            }
            lines.push(format!(
                "  {:<12} {}  tree {:>9}  venv {:>9}  loaded {:>8}  {}",
                d.version,
                d.digest,
                size(d.tree_bytes),
                if d.venv.is_some() {
                    size(d.venv_bytes)
                } else {
                    "-".into()
                },
                ago(now, d.last_loaded),
                notes.join(", ")
            ));
        }
        for venv in &app.orphan_venvs {
            lines.push(format!("  unused venv {}", venv.display()));
        }
    }
    for env in &listing.build_environments {
        lines.push(format!(
            "build environment {} ({}, {} users)",
            env.path.display(),
            size(env.bytes),
            env.users.len()
        ));
    }
    lines.join("\n")
}

/// `par gc` and `par remove`, in words.
pub(crate) fn collection_text(collection: &Collection) -> String {
    let verb = if collection.dry_run { "Would remove" } else { "Removed" };
    let mut lines: Vec<String> = collection
        .removed
        .iter()
        .map(|r| {
            let kind = serde_json::to_value(r.kind).ok();
            let reason = serde_json::to_value(r.reason).ok();
            format!(
                "  {:<17} {:>9}  {}  ({})",
                kind.as_ref().and_then(|k| k.as_str()).unwrap_or("?"),
                size(r.bytes),
                r.path.display(),
                reason.as_ref().and_then(|k| k.as_str()).unwrap_or("?"),
            )
        })
        .collect();
    for pid in &collection.stopped_agents {
        lines.insert(0, format!("  stopped agent {pid}"));
    }
    for app in &collection.busy_apps {
        lines.push(format!("  passed over {app}: a load or agent start holds it"));
    }
    lines.insert(
        0,
        format!(
            "{verb} {} items: {} removed, {} freed; the root went from {} to {}",
            collection.removed.len(),
            size(collection.bytes_removed),
            size(collection.bytes_freed),
            size(collection.root_bytes_before),
            size(collection.root_bytes_after)
        ),
    );
    lines.join("\n")
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

fn ago(now: u64, then: u64) -> String {
    let seconds = now.saturating_sub(then);
    match seconds {
        0..60 => format!("{seconds}s ago"),
        60..3600 => format!("{}m ago", seconds / 60),
        3600..86400 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_as_people_write_them() {
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("64K"), Ok(64 * 1024));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1tb"), Ok(1 << 40));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86400)));
        assert!(parse_duration("3y").is_err());
    }
}
