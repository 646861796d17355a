//! The ingest configuration loader: `Config::from_toml` (a TOML file's text)
//! and `Config::load` without a file, with an environment map and
//! command-line overrides taken from the input.
//!
//! Input: UTF-8; the TOML text, then optionally a line `%%` followed by
//! lines `NAME=value` (the environment; `RAINCAST_` is prefixed to names
//! without it) and `--flag=value` (source, store, radar, batch-size,
//! listen, create-tables). Bad values must give a `ConfigError` naming the
//! setting, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raincast_ingest::config::{Config, Overrides};
use std::collections::HashMap;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (toml, rest) = text.split_once("\n%%\n").unwrap_or((text, ""));
    let mut env = HashMap::new();
    let mut cli = Overrides::default();
    for line in rest.lines() {
        let (name, value) = line.split_once('=').unwrap_or((line, ""));
        let value = value.to_string();
        match name {
            "--source" => cli.source = Some(value),
            "--store" => cli.store = Some(value),
            "--radar" => cli.radar = Some(value),
            "--listen" => cli.listen = Some(value),
            "--batch-size" => cli.batch_size = value.parse().ok(),
            "--create-tables" => cli.create_tables = value.parse().ok(),
            n if n.starts_with("RAINCAST_") => {
                env.insert(n.to_string(), value);
            }
            n => {
                env.insert(format!("RAINCAST_{n}"), value);
            }
        }
    }
    if let Ok(config) = Config::from_toml(toml, &env, &cli) {
        let template = config.key_template.as_str();
        assert!(raincast_ingest::layout::KeyTemplate::parse(template).is_ok());
    }
    let _ = Config::load(None, &env, &cli);
});
