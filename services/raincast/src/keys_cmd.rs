//! `raincast keys create|list|revoke [--store …]`: API keys in the state
//! store (only their hash is stored; see `raincast_store::keys`).

use crate::cli::{process_env, runtime, ConfigArgs};
use anyhow::Result;
use chrono::Utc;
use clap::{Args, Subcommand};
use raincast_ingest::connect::Connector;
use raincast_ingest::Overrides;
use raincast_store::keys;
use serde_json::json;

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key and print it once, alone on the last line (only its hash is stored).
    Create(CreateArgs),
    /// One JSON line per key: id, name, created_at, revoked_at (never the key).
    List(ListArgs),
    /// Revoke a key by its id (or its name, when unique); it is refused from
    /// then on (within `[api] key_cache_s` on running servers).
    Revoke(RevokeArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Who or what the key is for (1 to 64 characters).
    #[arg(long, value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub cfg: ConfigArgs,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub cfg: ConfigArgs,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// The key's id (from `raincast keys list`) or its name.
    #[arg(value_name = "ID|NAME")]
    pub which: String,
    #[command(flatten)]
    pub cfg: ConfigArgs,
}

fn record_json(k: &keys::ApiKeyRecord) -> serde_json::Value {
    json!({
        "id": k.id,
        "name": k.name,
        "created_at": k.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "revoked_at": k.revoked_at.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
    })
}

pub fn run(args: KeysArgs) -> Result<()> {
    let env = process_env();
    let cfg_args = match &args.command {
        KeysCommand::Create(a) => &a.cfg,
        KeysCommand::List(a) => &a.cfg,
        KeysCommand::Revoke(a) => &a.cfg,
    };
    let cfg = cfg_args.load(&env, Overrides::default())?;
    runtime()?.block_on(async {
        let conn = Connector::new(&cfg, &env);
        // Only `create` may start a store; listing or revoking reads one.
        let stores = match &args.command {
            KeysCommand::Create(_) => conn.stores().await?,
            _ => conn.existing_stores().await?,
        };
        let state = stores.state.as_ref();
        match &args.command {
            KeysCommand::Create(a) => {
                let (key, rec) = keys::create(state, &a.name, Utc::now()).await?;
                tracing::info!(key_id = %rec.id, name = %rec.name, "API key created");
                eprintln!(
                    "Created key {} ({}). It is shown once, on the next line; only its hash is stored.",
                    rec.id, rec.name
                );
                println!("{key}");
            }
            KeysCommand::List(_) => {
                for k in keys::list(state).await? {
                    println!("{}", record_json(&k));
                }
            }
            KeysCommand::Revoke(a) => {
                let k = keys::revoke(state, &a.which, Utc::now()).await?;
                tracing::info!(key_id = %k.id, name = %k.name, "API key revoked");
                println!("{}", record_json(&k));
            }
        }
        Ok(())
    })
}
