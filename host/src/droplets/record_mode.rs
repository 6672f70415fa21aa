//! [`RecordMode`]: which droplet calls are recorded for replay — the
//! host's `--record` and a manifest's `record`. A leaf, like the
//! manifest that names it.

use std::fmt;
use std::str::FromStr;

/// Which calls are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordMode {
    /// None (a request that asks, with an admin token, still is).
    Off,
    /// Every call that failed: a 5xx, a trap, an overrun, an invalid
    /// response.
    #[default]
    Errors,
    /// One call in N, and every failed one.
    Sampled(u32),
    /// Every call.
    All,
}

impl FromStr for RecordMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "off" => Ok(RecordMode::Off),
            "errors" => Ok(RecordMode::Errors),
            "all" => Ok(RecordMode::All),
            _ => text
                .strip_prefix("sampled:")
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n >= 1)
                .map(RecordMode::Sampled)
                .ok_or_else(|| {
                    format!("`{text}` is not a record mode: off, errors, sampled:N (N ≥ 1) or all")
                }),
        }
    }
}

impl fmt::Display for RecordMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordMode::Off => f.write_str("off"),
            RecordMode::Errors => f.write_str("errors"),
            RecordMode::Sampled(n) => write!(f, "sampled:{n}"),
            RecordMode::All => f.write_str("all"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for RecordMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for RecordMode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print_alike() {
        for text in ["off", "errors", "sampled:10", "all"] {
            let mode: RecordMode = text.parse().expect(text);
            assert_eq!(mode.to_string(), text);
        }
        for bad in ["sampled:0", "sampled:x", "some", ""] {
            assert!(bad.parse::<RecordMode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_manifest_with_a_bad_mode_is_refused_naming_the_field() {
        use crate::droplets::manifest::Manifest;
        let err = Manifest::parse("record = \"sometimes\"\n", 256)
            .expect_err("not a mode")
            .to_string();
        assert!(err.contains("record") && err.contains("sampled:N"), "{err}");
        let manifest = Manifest::parse("record = \"sampled:10\"\n", 256).expect("a mode");
        assert_eq!(manifest.record, Some(RecordMode::Sampled(10)));
    }
}
