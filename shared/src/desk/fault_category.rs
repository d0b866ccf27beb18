//! The desk's list of fault categories (issue 14, point 3): R4 finds repeat repairs by "the
//! same problem" and R27 groups quality problems by it, so both compare better when people
//! pick a category from one list than when each types their own. Free text stays possible
//! (a new fault has no category yet) but is marked "not in the list".
//!
//! Names are compared the way R4 compares them (`desk::repeat_repairs`): without case and
//! without the spaces around them; [`key`] is that spelling, so one category cannot be in
//! the list twice.

/// The longest category name the desk may add, in characters.
pub const MAX_NAME_CHARS: usize = 60;

/// Why a name cannot be a category.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a fault category needs a name")]
    Empty,
    #[error("a fault category has at most {MAX_NAME_CHARS} characters, not {0}")]
    TooLong(usize),
    #[error("a fault category is one line of text, without control characters")]
    ControlCharacter,
}

/// The name as stored: trimmed, checked.
pub fn check_name(name: &str) -> Result<String, NameError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(NameError::TooLong(chars));
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    Ok(name.to_owned())
}

/// The spelling categories are compared by: trimmed, lower case.
pub fn key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Whether `category` (as typed on a job or request) is one of `listed` (the categories in
/// force). A blank category is nobody's choice: it is not "not in the list".
pub fn unlisted<'a>(category: &str, listed: impl IntoIterator<Item = &'a str>) -> bool {
    let wanted = key(category);
    !wanted.is_empty() && !listed.into_iter().any(|l| key(l) == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r4_names_compare_without_case_or_surrounding_spaces() {
        assert_eq!(key("  Compressor "), "compressor");
        assert_eq!(key("压缩机"), "压缩机");
        let list = ["Compressor", "压缩机", "Fan motor"];
        assert!(!unlisted(" compressor", list));
        assert!(!unlisted("FAN MOTOR", list));
        assert!(!unlisted("压缩机 ", list));
        assert!(unlisted("compressor noise", list));
        assert!(!unlisted("   ", list), "blank is no category at all");
    }

    #[test]
    fn names_are_one_short_line() {
        assert_eq!(check_name("  Start relay "), Ok("Start relay".to_owned()));
        assert_eq!(check_name(" "), Err(NameError::Empty));
        assert_eq!(
            check_name(&"风".repeat(60)).map(|n| n.chars().count()),
            Ok(60)
        );
        assert_eq!(check_name(&"风".repeat(61)), Err(NameError::TooLong(61)));
        assert_eq!(check_name("a\nb"), Err(NameError::ControlCharacter));
    }
}
