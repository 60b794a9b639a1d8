//! The knowledge-base files compiled into the binary, in load order.

macro_rules! kb_files {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/config/kb/", $path)))),*]
    };
}

/// Every built-in file: causes first, then rules from general to specific, then translations.
const FILES: &[(&str, &str)] = kb_files![
    "causes.toml",
    "rfc5321.toml",
    "rfc3463.toml",
    "seeds.toml",
    "patterns/mta.toml",
    "patterns/google.toml",
    "patterns/microsoft.toml",
    "patterns/yahoo-aol.toml",
    "patterns/apple.toml",
    "patterns/rbl.toml",
    "patterns/auth.toml",
    "patterns/greylisting.toml",
    "patterns/tls.toml",
    "patterns/providers.toml",
    "patterns/stage.toml",
    "lang/de.toml",
    "lang/fr.toml",
    "lang/es.toml",
];

pub fn sources() -> Vec<(String, String)> {
    FILES.iter().map(|(n, t)| (format!("builtin:{n}"), t.to_string())).collect()
}
