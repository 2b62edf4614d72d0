//! The policy's `ask` on a terminal: `stn code` and `stn agent run` put the question to the
//! person at the terminal, one at a time, with a deadline. Without a terminal (stdin or stderr
//! not a tty) nobody can answer, and every `ask` is a deny at once.

use std::io::{BufRead, IsTerminal};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use station_core::policy::{Action, NobodyToAsk, PermissionHandler};
use tokio::sync::mpsc;

use crate::output;

/// How long the person has to answer one question; no answer is a deny.
const ANSWER_DEADLINE: Duration = Duration::from_secs(120);

/// The handler for this process: the terminal prompt when stdin and stderr are terminals,
/// else nobody (deny at once).
pub(crate) fn permission_handler() -> Arc<dyn PermissionHandler> {
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        Arc::new(TerminalPrompt::default())
    } else {
        Arc::new(NobodyToAsk)
    }
}

/// Asks on stderr and reads the answer from stdin.
#[derive(Debug, Default)]
pub(crate) struct TerminalPrompt {
    /// One question at a time; holds the lines the person typed, read by a thread started on
    /// the first question (a blocking stdin read cannot be abandoned at a deadline).
    lines: tokio::sync::Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    started: Mutex<bool>,
}

impl TerminalPrompt {
    fn start_reader(&self) -> Option<mpsc::UnboundedReceiver<String>> {
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        if *started {
            return None;
        }
        *started = true;
        let (tx, rx) = mpsc::unbounded_channel();
        let spawned = std::thread::Builder::new()
            .name("stn-ask".into())
            .spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        spawned.ok().map(|_| rx)
    }
}

/// The question, on one line.
pub(crate) fn question(tool: &str, action: &Action, rule: &str) -> String {
    let target: String = action
        .target()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    format!("Allow {tool}: {target}? rule: {rule} [y/N] ")
}

/// `y` or `yes` (any case) allows; anything else denies.
pub(crate) fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[async_trait::async_trait]
impl PermissionHandler for TerminalPrompt {
    async fn ask(&self, tool: &str, action: &Action) -> bool {
        self.ask_about(tool, action, "ask").await
    }

    async fn ask_about(&self, tool: &str, action: &Action, rule: &str) -> bool {
        let mut lines = self.lines.lock().await;
        if lines.is_none() {
            *lines = self.start_reader();
        }
        let Some(rx) = lines.as_mut() else {
            return false;
        };
        // Lines typed while no question was open answer nothing.
        while rx.try_recv().is_ok() {}
        output::question(&question(tool, action, rule));
        let (allowed, said) = match tokio::time::timeout(ANSWER_DEADLINE, rx.recv()).await {
            Ok(Some(answer)) if is_yes(&answer) => (true, "allowed".to_string()),
            Ok(Some(_)) => (false, "denied".to_string()),
            Ok(None) => (false, "\nno terminal input left: denied".to_string()),
            Err(_) => (
                false,
                format!("\nno answer within {}s: denied", ANSWER_DEADLINE.as_secs()),
            ),
        };
        output::question_done(&said);
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_question_names_tool_target_and_rule_and_only_yes_allows() {
        let action = Action::Bash {
            command: "rm -rf data\n&& echo".into(),
        };
        assert_eq!(
            question("execute", &action, "unmatched"),
            "Allow execute: rm -rf data && echo? rule: unmatched [y/N] "
        );
        for yes in ["y", "Y", "yes", " YES \r"] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "n", "no", "yess", "sure"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }
}
