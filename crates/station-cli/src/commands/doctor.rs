//! `stn doctor`: is the configured backend usable, and if not, what to do.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use station_core::SessionIndex;
use station_core::config::LoadedConfig;

use crate::cli::DoctorArgs;
use crate::{backends, output};

pub(crate) async fn run(loaded: &LoadedConfig, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let kind = backends::selected(args.backend.as_deref(), loaded)?;
    let mut checks = Vec::new();
    let mut ok = true;
    checks.push(json!({
        "check": "config",
        "ok": true,
        "detail": loaded.path.as_ref().map(|p| format!("read {}", p.display())).unwrap_or_else(|| "no config file; using defaults".into()),
    }));
    checks.push(json!({
        "check": "backends",
        "ok": true,
        "detail": format!("compiled into this build: {}", backends::registry().names().join(", ")),
    }));
    let index_check = SessionIndex::default_dir()
        .and_then(SessionIndex::open)
        .and_then(|i| i.list().map(|l| (i.path(), l.len())));
    match index_check {
        Ok((path, n)) => checks.push(json!({"check": "session index", "ok": true, "detail": format!("{} ({n} sessions)", path.display())})),
        Err(e) => {
            ok = false;
            checks.push(json!({"check": "session index", "ok": false, "detail": e.to_string()}));
        }
    }
    let mut policy_gaps = Vec::new();
    let health = match backends::build(&kind, loaded).await {
        Ok(backend) => {
            policy_gaps = backend.policy_gaps();
            match tokio::time::timeout(Duration::from_secs(90), backend.health()).await {
                Ok(Ok(h)) => {
                    json!({"check": format!("backend {kind}"), "ok": h.ok, "version": h.version, "detail": h.detail})
                }
                Ok(Err(e)) => {
                    json!({"check": format!("backend {kind}"), "ok": false, "detail": e.to_string()})
                }
                Err(_) => {
                    json!({"check": format!("backend {kind}"), "ok": false, "detail": "no answer within 90s"})
                }
            }
        }
        Err(e) => json!({"check": format!("backend {kind}"), "ok": false, "detail": e.to_string()}),
    };
    ok &= health["ok"].as_bool().unwrap_or(false);
    checks.push(health);
    // A rule the agent cannot enforce is a warning, not a failure: the backend still works,
    // only the policy is weaker than configured there.
    for gap in &policy_gaps {
        checks.push(json!({"check": "policy", "ok": true, "warning": true, "detail": format!("not enforced: {gap}")}));
    }
    let git = &loaded.config.coding.git;
    checks.push(json!({
        "check": "git credentials",
        "ok": true,
        "detail": match (&loaded.git_token, &git.token_env) {
            (Some(_), Some(var)) => format!("token set (from ${var})"),
            (Some(_), None) => "token set (from coding.git.token)".into(),
            (None, Some(var)) => format!("${var} is not set: private repositories will fail"),
            (None, None) => "no token configured: only public repositories can be cloned".into(),
        },
    }));
    if args.json {
        output::json(
            &json!({"ok": ok, "backend": kind, "checks": checks, "policy_gaps": policy_gaps}),
        );
    } else {
        for c in &checks {
            let mark = if c["warning"].as_bool().unwrap_or(false) {
                "warn"
            } else if c["ok"].as_bool().unwrap_or(false) {
                "ok  "
            } else {
                "FAIL"
            };
            let version = c["version"]
                .as_str()
                .map(|v| format!(" (version {v})"))
                .unwrap_or_default();
            output::line(&format!(
                "[{mark}] {}{version}: {}",
                c["check"].as_str().unwrap_or(""),
                c["detail"].as_str().unwrap_or("")
            ));
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
