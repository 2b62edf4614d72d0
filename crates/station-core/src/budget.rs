//! What a task may spend, and the tally the runner keeps as its events stream: tokens and cost
//! from each finished model step, and the permission decisions for the audit trail. Passing a
//! cap stops the task with [`StopReason::BudgetExceeded`].

use std::sync::{Arc, Mutex};

use crate::event::{EventKind, Observer};
use crate::model::{Outcome, Session, StopReason, Usage};
use crate::policy::{BudgetConfig, PermissionRecord};
use crate::run::CancelSignal;

/// One cap and the setting it comes from (said when it stops a task).
#[derive(Debug, Clone, PartialEq)]
pub struct Cap<T> {
    /// The most the task may use.
    pub limit: T,
    /// Where it comes from, e.g. `coding.budget.max_tokens`.
    pub setting: String,
}

/// The caps of one task: the task's own, or what is left of its session's, whichever is lower.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskBudget {
    /// Tokens (input + output + reasoning).
    pub max_tokens: Option<Cap<u64>>,
    /// USD, reported or estimated.
    pub max_cost_usd: Option<Cap<f64>>,
}

impl TaskBudget {
    /// The caps for the next task of `session` under `config`.
    pub fn for_session(config: &BudgetConfig, session: &Session) -> TaskBudget {
        let tokens_left = config.session_max_tokens.map(|max| Cap {
            limit: max.saturating_sub(session.usage_total.total()),
            setting: format!(
                "coding.budget.session_max_tokens ({max}; the session has used {})",
                session.usage_total.total()
            ),
        });
        let cost_left = config.session_max_cost_usd.map(|max| Cap {
            limit: (max - session.cost_total_usd).max(0.0),
            setting: format!(
                "coding.budget.session_max_cost_usd ({max}; the session has cost {:.4})",
                session.cost_total_usd
            ),
        });
        let task_tokens = config.max_tokens.map(|limit| Cap {
            limit,
            setting: "coding.budget.max_tokens".into(),
        });
        let task_cost = config.max_cost_usd.map(|limit| Cap {
            limit,
            setting: "coding.budget.max_cost_usd".into(),
        });
        TaskBudget {
            max_tokens: lower(task_tokens, tokens_left, |a, b| a.limit <= b.limit),
            max_cost_usd: lower(task_cost, cost_left, |a, b| a.limit <= b.limit),
        }
    }

    /// Why no task may start at all (a session budget used up).
    pub fn used_up(&self) -> Option<String> {
        if let Some(cap) = self.max_tokens.as_ref().filter(|c| c.limit == 0) {
            return Some(format!("no tokens left under {}", cap.setting));
        }
        if let Some(cap) = self.max_cost_usd.as_ref().filter(|c| c.limit <= 0.0) {
            return Some(format!("no money left under {}", cap.setting));
        }
        None
    }
}

fn lower<T>(a: Option<T>, b: Option<T>, a_first: impl Fn(&T, &T) -> bool) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if a_first(&a, &b) { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// What a running task has spent and decided so far.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) usage: Usage,
    pub(crate) cost_usd: f64,
    pub(crate) permissions: Vec<PermissionRecord>,
    /// Why the task was stopped, once a cap was passed.
    pub(crate) exceeded: Option<String>,
}

impl Tally {
    /// Fold the tally into the task's outcome: the audit trail when the backend kept none,
    /// usage the backend could not report any more (stopped mid-step), why a cap stopped it.
    pub(crate) fn complete(&self, outcome: &mut Outcome) {
        if outcome.permissions.is_empty() {
            outcome.permissions.clone_from(&self.permissions);
        }
        if outcome.usage.total() < self.usage.total() {
            outcome.usage = self.usage;
        }
        if outcome.cost_usd.is_none() && self.cost_usd > 0.0 {
            outcome.cost_usd = Some(self.cost_usd);
        }
        if outcome.stop_reason == StopReason::BudgetExceeded
            && let Some(why) = &self.exceeded
        {
            outcome.error = Some(why.clone());
        }
    }
}

/// The observer that keeps `tally` and stops the task through `cancel` when it passes a cap.
pub(crate) fn observer(
    tally: Arc<Mutex<Tally>>,
    budget: TaskBudget,
    cancel: CancelSignal,
) -> Observer {
    Arc::new(move |kind: &EventKind| {
        let mut tally = tally.lock().unwrap_or_else(|e| e.into_inner());
        match kind {
            EventKind::Permission { record } => tally.permissions.push(record.clone()),
            EventKind::StepFinished { usage, cost_usd } => {
                tally.usage += *usage;
                tally.cost_usd += cost_usd.unwrap_or(0.0);
                if tally.exceeded.is_some() {
                    return;
                }
                let over_tokens = budget
                    .max_tokens
                    .as_ref()
                    .filter(|cap| tally.usage.total() > cap.limit)
                    .map(|cap| {
                        format!(
                            "budget exceeded: the task used {} tokens, over the cap of {} ({})",
                            tally.usage.total(),
                            cap.limit,
                            cap.setting
                        )
                    });
                let over_cost = budget
                    .max_cost_usd
                    .as_ref()
                    .filter(|cap| tally.cost_usd > cap.limit)
                    .map(|cap| {
                        format!(
                            "budget exceeded: the task cost {:.4} USD, over the cap of {} ({})",
                            tally.cost_usd, cap.limit, cap.setting
                        )
                    });
                if let Some(why) = over_tokens.or(over_cost) {
                    tracing::info!("{why}; stopping the task");
                    tally.exceeded = Some(why);
                    cancel.cancel_with(StopReason::BudgetExceeded);
                }
            }
            _ => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(tokens: u64, cost: Option<f64>) -> EventKind {
        EventKind::StepFinished {
            usage: Usage {
                input_tokens: tokens,
                ..Usage::default()
            },
            cost_usd: cost,
        }
    }

    #[test]
    fn passing_the_token_cap_stops_the_task_once_and_says_which_setting() {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let cancel = CancelSignal::new();
        let budget = TaskBudget {
            max_tokens: Some(Cap {
                limit: 1000,
                setting: "coding.budget.max_tokens".into(),
            }),
            max_cost_usd: None,
        };
        let observe = observer(tally.clone(), budget, cancel.clone());
        observe(&step(600, None));
        assert!(!cancel.is_cancelled());
        observe(&step(600, None));
        assert_eq!(cancel.reason(), Some(StopReason::BudgetExceeded));
        observe(&step(600, None));
        let tally = tally.lock().unwrap();
        assert_eq!(
            tally.usage.total(),
            1800,
            "usage after the stop still counts"
        );
        let why = tally.exceeded.as_deref().unwrap();
        assert!(
            why.contains("1200 tokens") && why.contains("coding.budget.max_tokens"),
            "{why}"
        );
    }

    #[test]
    fn the_lower_of_task_and_session_caps_applies() {
        let config = BudgetConfig {
            max_tokens: Some(5000),
            max_cost_usd: Some(1.0),
            session_max_tokens: Some(8000),
            session_max_cost_usd: Some(10.0),
        };
        let mut session = Session::new("x");
        session.usage_total.output_tokens = 6000;
        session.cost_total_usd = 2.5;
        let budget = TaskBudget::for_session(&config, &session);
        let tokens = budget.max_tokens.clone().unwrap();
        assert_eq!(tokens.limit, 2000);
        assert!(
            tokens
                .setting
                .starts_with("coding.budget.session_max_tokens"),
            "{}",
            tokens.setting
        );
        let cost = budget.max_cost_usd.clone().unwrap();
        assert_eq!(
            (cost.limit, cost.setting.as_str()),
            (1.0, "coding.budget.max_cost_usd")
        );
        assert_eq!(budget.used_up(), None);
        session.usage_total.output_tokens = 9000;
        let why = TaskBudget::for_session(&config, &session)
            .used_up()
            .unwrap();
        assert!(why.contains("session_max_tokens"), "{why}");
    }

    #[test]
    fn the_cost_cap_counts_reported_cost() {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let cancel = CancelSignal::new();
        let budget = TaskBudget {
            max_tokens: None,
            max_cost_usd: Some(Cap {
                limit: 0.5,
                setting: "coding.budget.max_cost_usd".into(),
            }),
        };
        let observe = observer(tally, budget, cancel.clone());
        observe(&step(1, Some(0.3)));
        observe(&step(1, None));
        assert!(!cancel.is_cancelled());
        observe(&step(1, Some(0.3)));
        assert_eq!(cancel.reason(), Some(StopReason::BudgetExceeded));
    }
}
