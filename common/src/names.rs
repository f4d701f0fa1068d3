//! NSQ's topic and channel name rule, shared by every component.

/// Longest topic or channel name nsqd accepts.
pub const MAX_NAME_LENGTH: usize = 64;

const EPHEMERAL_SUFFIX: &str = "#ephemeral";

/// True when `name` matches `^[.a-zA-Z0-9_-]+(#ephemeral)?$` and is 1 to 64 bytes long.
pub fn is_valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_NAME_LENGTH {
        return false;
    }
    let base = name.strip_suffix(EPHEMERAL_SUFFIX).unwrap_or(name);
    !base.is_empty()
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Topic names follow the common rule.
pub fn is_valid_topic_name(name: &str) -> bool {
    is_valid_name(name)
}

/// Channel names follow the common rule.
pub fn is_valid_channel_name(name: &str) -> bool {
    is_valid_name(name)
}

/// Ephemeral topics and channels never touch disk and vanish with their last user.
pub fn is_ephemeral(name: &str) -> bool {
    name.ends_with(EPHEMERAL_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_nsq_names_and_rejects_the_rest() {
        for ok in ["t", "a.b_c-d", "x#ephemeral", &"a".repeat(64)] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "#ephemeral",
            "a b",
            "a#b",
            "a/b",
            "é",
            "x#ephemeral#ephemeral",
            &"a".repeat(65),
            &format!("{}#ephemeral", "a".repeat(55)),
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
        assert!(is_ephemeral("c#ephemeral"));
        assert!(!is_ephemeral("c"));
    }
}
