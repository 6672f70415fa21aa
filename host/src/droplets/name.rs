//! The droplet-name rule: which names a droplet may have. One rule for
//! routing, publishing, the directory watcher and `droplet new`.

/// Whether `name` is a valid droplet name: `[a-z0-9][a-z0-9-]{0,62}`.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Names that the host's own top-level endpoints take.
pub const RESERVED_NAMES: [&str; 2] = ["health", "metrics"];

/// The naming rule, for messages.
pub const NAME_RULE: &str = "[a-z0-9][a-z0-9-]{0,62}, not `health` or `metrics`";

/// Whether a droplet may be called `name`: a valid name the host does not
/// reserve for itself.
pub fn is_droplet_name(name: &str) -> bool {
    is_valid_name(name) && !RESERVED_NAMES.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        assert!(is_valid_name("a"));
        assert!(is_valid_name("hello-2"));
        assert!(is_valid_name(&"a".repeat(63)));
        assert!(!is_valid_name(&"a".repeat(64)));
        assert!(!is_valid_name("_x"));
        assert!(!is_valid_name("a_b"));
        assert!(!is_valid_name(""));
    }

    proptest::proptest! {
        #[test]
        fn names_never_panic(text in ".{0,100}") {
            let _ = is_droplet_name(&text);
        }
    }
}
