//! `stn ui`: the sessions of every backend in the browser. Tasks started from the page run in
//! this process, on services built like `stn code` builds its one.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use station_core::config::LoadedConfig;
use station_core::{SessionIndex, SessionService};
use station_ui::{ServiceSource, UiOptions, UiServer};

use crate::cli::UiArgs;
use crate::commands::mcp::bearer_token;
use crate::{backends, output, signals};

/// The environment variable `stn ui` takes its bearer token from by default.
const TOKEN_ENV: &str = "STN_UI_TOKEN";

/// One service per backend name, built on first use from the config (`backends::build` +
/// `backends::service`, as `stn code` does).
#[derive(Debug)]
struct ConfiguredServices {
    loaded: LoadedConfig,
    default_backend: String,
    built: tokio::sync::Mutex<HashMap<String, SessionService>>,
}

#[async_trait::async_trait]
impl ServiceSource for ConfiguredServices {
    fn default_backend(&self) -> String {
        self.default_backend.clone()
    }

    async fn service(&self, backend: &str) -> station_core::Result<SessionService> {
        let mut built = self.built.lock().await;
        if let Some(service) = built.get(backend) {
            return Ok(service.clone());
        }
        let name = backends::selected(Some(backend), &self.loaded)?;
        let service = backends::service(
            backends::build(&name, &self.loaded).await?,
            &name,
            &self.loaded,
        )?;
        built.insert(backend.to_string(), service.clone());
        Ok(service)
    }

    async fn shutdown(&self) {
        let built: Vec<SessionService> = self.built.lock().await.values().cloned().collect();
        for service in built {
            if !service.wait_stopped(signals::STOP_GRACE).await {
                output::warn_line("some coding tasks started from the page did not stop in time");
            }
            service.backend().shutdown().await;
        }
    }
}

pub(crate) async fn run(loaded: LoadedConfig, args: UiArgs) -> anyhow::Result<ExitCode> {
    let default_backend = backends::selected(args.backend.as_deref(), &loaded)?;
    let (token, generated) = bearer_token(
        args.token_env.as_deref(),
        TOKEN_ENV,
        args.allow_remote,
        "UI",
    )?;
    let index = SessionIndex::open(SessionIndex::default_dir()?)?;
    let options = UiOptions {
        allow_remote: args.allow_remote,
        allowed_origins: args.allow_origin.clone(),
        token: token.clone(),
        busy_wait: loaded.config.coding.session_busy_wait(),
    };
    let services = Arc::new(ConfiguredServices {
        loaded,
        default_backend,
        built: tokio::sync::Mutex::new(HashMap::new()),
    });
    let bound = UiServer::new(index, services)
        .bind(args.listen, options)
        .await?;
    if let (Some(token), true) = (&token, generated) {
        // Printed once, unredacted, so that the operator can open it; never logged.
        eprintln!("open: {}#token={}", bound.url(), token.expose());
        output::progress(
            "stn ui: the page keeps that token for the tab; set STN_UI_TOKEN to keep one across restarts",
        );
    }
    output::progress(&format!("stn ui: serving on {}", bound.url()));
    let stop_requested = signals::stop_requested();
    let stop = Arc::new(std::sync::OnceLock::new());
    let seen = stop.clone();
    bound
        .run(async move {
            let _ = seen.set(stop_requested.await);
            // Tasks started from the page stop next; a second signal exits at once.
            signals::exit_on_second_signal();
        })
        .await?;
    let Some(stop) = stop.get().copied() else {
        return Ok(ExitCode::SUCCESS);
    };
    output::progress(&format!("stn ui: stopped ({})", stop.name()));
    Ok(ExitCode::from(stop.exit_code()))
}
