//! Reading `FIELDSYNC_LOG`. tracing's own parser takes almost any word as a target name
//! (`verbose` means "everything from a crate called verbose"), so a typo would silently log
//! nothing; here every directive must end in a level.

use tracing_subscriber::EnvFilter;

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// What automerge logs unless a directive names it. automerge 0.12 opens INFO spans
/// (`#[instrument]`) whose arguments are Debug-formatted whenever the span is enabled, among
/// them `load_changes`'s whole change graph: with automerge at INFO, every stored chunk a
/// document loaded formatted its history, and that was some 80% of the server's CPU in the
/// first sync after a restart (issue 19; docs/BENCHMARKS.md, "Cold load").
pub const AUTOMERGE_DEFAULT: &str = "automerge=warn";

/// The filter for `value`: comma-separated directives, each a level (`debug`) or
/// `target=level` (`fieldsync_server::upstream=debug`), with [`AUTOMERGE_DEFAULT`] added
/// unless a directive names automerge.
pub fn filter(value: &str) -> Result<EnvFilter, String> {
    let names_automerge = value
        .split(',')
        .any(|d| d.trim().to_ascii_lowercase().starts_with("automerge"));
    if names_automerge {
        filter_as_given(value)
    } else {
        filter_as_given(&format!("{value},{AUTOMERGE_DEFAULT}"))
    }
}

/// [`filter`] without [`AUTOMERGE_DEFAULT`]: the server before issue 19, for the load
/// figures' baseline only.
pub fn filter_as_given(value: &str) -> Result<EnvFilter, String> {
    let directives: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    for &directive in &directives {
        let level = directive
            .rsplit_once('=')
            .map_or(directive, |(_, level)| level);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{directive:?} does not end in a level; use one of {} alone or as \
                 target=level, comma-separated",
                LEVELS.join(", ")
            ));
        }
    }
    EnvFilter::try_new(directives.join(",")).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::filter;

    #[test]
    fn levels_and_target_directives_are_read() {
        for good in [
            "info",
            "DEBUG",
            "warn,fieldsync_server::upstream=debug",
            "fieldsync_server=trace, tower=off",
        ] {
            assert!(filter(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn automerge_logs_at_warn_unless_a_directive_names_it() {
        let shown = |value: &str| filter(value).map(|f| f.to_string()).unwrap_or_default();
        assert!(
            shown("info").contains("automerge=warn"),
            "{}",
            shown("info")
        );
        assert!(shown("debug,automerge=info").contains("automerge=info"));
        assert!(!shown("debug,automerge=info").contains("automerge=warn"));
    }

    #[test]
    fn a_word_that_is_not_a_level_is_an_error_naming_it() {
        for bad in ["verbose", "info,loud", "fieldsync_server=chatty", "=="] {
            let err = filter(bad).err().unwrap_or_default();
            assert!(err.contains("level"), "{bad}: {err}");
        }
    }
}
