//! One task in flight on the server: prompt, follow the event stream, settle the outcome.

use super::*;

/// How a task's wait ended.
enum WaitEnd {
    Idle,
    Cancelled,
}

/// One task in flight.
pub(super) struct Execution<'a> {
    pub(super) client: &'a Client,
    pub(super) tuning: &'a HttpTuning,
    pub(super) session_id: String,
    pub(super) dir: Option<String>,
    pub(super) local_dir: Option<PathBuf>,
    pub(super) ctx: &'a ExecContext,
    pub(super) mapper: EventMapper,
    pub(super) known: Vec<String>,
    pub(super) idle_polls_without_work: u32,
    /// Status polls in a row that got no answer in time.
    pub(super) unanswered_polls: u32,
    /// The policy the server's permission requests are answered with.
    pub(super) policy: Policy,
    /// Permission requests already answered.
    pub(super) answered: HashSet<String>,
    /// Sessions the task's agent started (sub-agents): their requests are the task's too.
    pub(super) children: HashSet<String>,
}

impl Execution<'_> {
    fn dir(&self) -> Option<&str> {
        self.dir.as_deref()
    }

    async fn cancellable<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::select! {
            r = fut => r,
            _ = self.ctx.cancel.cancelled() => Err(Error::Cancelled),
        }
    }

    async fn messages(&self) -> Result<Vec<MessageWithParts>> {
        self.client
            .get_json(&["session", &self.session_id, "message"], self.dir(), &[])
            .await
    }

    /// The transcript of the running task's session. Once the prompt is sent the session
    /// exists; a server that does not know it is another server (restarted with other data, or
    /// a new process on the freed port): ours went away.
    async fn task_messages(&self) -> Result<Vec<MessageWithParts>> {
        match self.messages().await {
            Err(Error::NotFound { .. }) => Err(self.client.went_away(&format!(
                "the server answering there now does not know session {}: it was restarted or replaced",
                self.session_id
            ))),
            other => other,
        }
    }

    pub(super) async fn run(&mut self, prompt: Value) -> Result<Outcome> {
        // Two independent steps at once (one round trip instead of two): the transcript so
        // far (the outcome covers this task's messages only) and the event stream (subscribed
        // before the prompt so its first events are not missed). A local workspace's changes
        // are recorded by the runner (`Capabilities::local_workspace`).
        let (before, sub) = self
            .cancellable(async {
                let (before, sub) =
                    tokio::join!(self.messages(), self.client.subscribe(self.dir()));
                Ok((before, sub))
            })
            .await?;
        let (before, mut sub) = (before?, sub?);
        self.known = before.iter().map(|m| m.info.id.clone()).collect();
        self.mapper
            .ignore_messages(self.known.iter().map(String::as_str));
        let path = ["session", self.session_id.as_str(), "prompt_async"];
        let sent = self.client.post_unit(
            &path,
            self.dir(),
            Some(&prompt),
            Retry::Once,
            self.tuning.request_timeout,
        );
        let end = match self.cancellable(sent).await {
            Ok(()) => self.wait(&mut sub).await,
            // The prompt may have landed: abort it like any other cancel.
            Err(Error::Cancelled) => Ok(WaitEnd::Cancelled),
            Err(e @ Error::Timeout { .. }) => Err(e),
            // Refused: nothing runs.
            Err(e) => return Err(e),
        };
        match end {
            Ok(WaitEnd::Idle) => {
                // The transcript is the authority; late frames only matter while it is still
                // settling (after an abort the last parts follow the idle event).
                let mut new = outcome::new_messages(self.task_messages().await?, &self.known);
                if !transcript_settled(&new) {
                    self.drain(&mut sub, self.tuning.drain_max).await;
                    new = outcome::new_messages(self.task_messages().await?, &self.known);
                }
                self.mapper.reconcile(&new, &self.ctx.events);
                let mut result = outcome::build(&new, self.mapper.errors());
                result.files_changed = self.files_changed(&new).await;
                Ok(result)
            }
            Ok(WaitEnd::Cancelled) => {
                let reason = self.ctx.cancel.reason().unwrap_or(StopReason::Cancelled);
                let budget = self.tuning.stop_budget;
                match tokio::time::timeout(budget, self.stop(&mut sub, reason)).await {
                    Ok(outcome) => Ok(outcome),
                    Err(_) => Ok(Outcome::failed(reason, stop_message(false))),
                }
            }
            Err(e) => {
                // Leave nothing running behind a failed task (best effort: the server may be gone).
                let path = ["session", self.session_id.as_str(), "abort"];
                let abort = self.client.post_unit(
                    &path,
                    self.dir(),
                    None,
                    Retry::Once,
                    Duration::from_secs(2),
                );
                let _ = tokio::time::timeout(Duration::from_secs(3), abort).await;
                Err(e)
            }
        }
    }

    /// Follow the stream until the session is idle again or the task is cancelled.
    async fn wait(&mut self, sub: &mut Subscription) -> Result<WaitEnd> {
        let mut failed_connects = 0u32;
        let mut quiet_streams = 0u32;
        let mut frames_at_connect = self.mapper.frames_for_session();
        // Frames of other sessions keep the stream busy; silence is about this session.
        let mut last_own_frame = Instant::now();
        loop {
            let next = tokio::select! {
                biased;
                _ = self.ctx.cancel.cancelled() => return Ok(WaitEnd::Cancelled),
                next = tokio::time::timeout(self.tuning.stream_idle, sub.next()) => next,
            };
            match next {
                Ok(Some(Ok(data))) => {
                    self.answer_if_asked(&data).await?;
                    let own_before = self.mapper.frames_for_session();
                    if self.mapper.handle_data(&data, &self.ctx.events) == Progress::Idle {
                        return Ok(WaitEnd::Idle);
                    }
                    if self.mapper.frames_for_session() > own_before {
                        last_own_frame = Instant::now();
                    } else if last_own_frame.elapsed() >= self.tuning.stream_idle {
                        last_own_frame = Instant::now();
                        if self.is_done().await? {
                            return Ok(WaitEnd::Idle);
                        }
                    }
                }
                Ok(Some(Err(_)) | None) => {
                    // The stream ended or broke: re-open it (bounded), then ask for the status,
                    // since whatever happened meanwhile is not replayed.
                    if self.mapper.frames_for_session() > frames_at_connect {
                        quiet_streams = 0;
                    } else {
                        quiet_streams += 1;
                    }
                    let delay = self
                        .client
                        .backoff(quiet_streams.max(failed_connects).max(1));
                    tokio::select! {
                        _ = self.ctx.cancel.cancelled() => return Ok(WaitEnd::Cancelled),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    match self.client.subscribe(self.dir()).await {
                        Ok(fresh) => {
                            *sub = fresh;
                            failed_connects = 0;
                            frames_at_connect = self.mapper.frames_for_session();
                        }
                        Err(e @ Error::Auth { .. }) => return Err(e),
                        Err(e) => {
                            // Something answers but holds the stream back (a server that was
                            // just replaced): its status and transcript tell more.
                            if matches!(e, Error::Timeout { .. }) && self.is_done().await? {
                                return Ok(WaitEnd::Idle);
                            }
                            failed_connects += 1;
                            if failed_connects >= self.tuning.reconnect_attempts {
                                return Err(self.client.went_away(&format!(
                                    "its event stream ended and {failed_connects} reconnects failed: {}",
                                    transport_cause(&e)
                                )));
                            }
                            self.ctx.events.emit(EventKind::Notice {
                                message: format!("lost OpenCode's event stream; reconnecting (attempt {failed_connects})"),
                            });
                            continue;
                        }
                    }
                    // Requests asked while the stream was down are not replayed.
                    self.answer_pending().await?;
                    if self.is_done().await? {
                        return Ok(WaitEnd::Idle);
                    }
                }
                // Silence: the task may be running a long tool, be waiting for a permission
                // answer whose request was missed, or the stream may be dead.
                Err(_) => {
                    last_own_frame = Instant::now();
                    self.answer_pending().await?;
                    if self.is_done().await? {
                        return Ok(WaitEnd::Idle);
                    }
                }
            }
        }
    }

    /// Answer the frame `data` when it is a permission request of this task's session (or of
    /// a sub-agent's session, which it learns from `session.created`).
    async fn answer_if_asked(&mut self, data: &str) -> Result<()> {
        if !data.contains("permission.asked") && !data.contains("session.created") {
            return Ok(());
        }
        let Ok(event) = serde_json::from_str::<ServerEvent>(data) else {
            return Ok(());
        };
        if event.kind == "session.created" {
            let info = event.properties.get("info");
            let field = |k: &str| info.and_then(|i| i.get(k)).and_then(Value::as_str);
            if let (Some(id), Some(parent)) = (field("id"), field("parentID"))
                && self.is_ours(parent)
            {
                self.children.insert(id.to_string());
            }
            return Ok(());
        }
        match PermissionAsk::from_event(&event.kind, &event.properties) {
            Some(ask) => self.answer(ask).await,
            None => Ok(()),
        }
    }

    /// Whether `session_id` is the task's session or one of its sub-agents'.
    fn is_ours(&self, session_id: &str) -> bool {
        session_id == self.session_id || self.children.contains(session_id)
    }

    /// Answer the session's pending permission requests the stream did not show
    /// (`GET /permission`).
    async fn answer_pending(&mut self) -> Result<()> {
        let within = self.tuning.request_timeout.min(STATUS_POLL_TIMEOUT);
        let pending: Vec<Value> = match self
            .cancellable(
                self.client
                    .get_json_within(&["permission"], self.dir(), &[], within),
            )
            .await
        {
            Ok(p) => p,
            // The wait loop sees the cancel next.
            Err(Error::Cancelled) => return Ok(()),
            Err(e) => {
                tracing::debug!("cannot list pending permission requests: {e}");
                return Ok(());
            }
        };
        for props in pending {
            if let Some(ask) = PermissionAsk::from_event("permission.asked", &props) {
                self.answer(ask).await?;
            }
        }
        Ok(())
    }

    /// Decide one request with the policy and reply, once.
    async fn answer(&mut self, ask: PermissionAsk) -> Result<()> {
        if !self.is_ours(&ask.session_id) || !self.answered.insert(ask.id.clone()) {
            return Ok(());
        }
        let tool = ask
            .call_id
            .as_deref()
            .and_then(|c| self.mapper.tool_name(c))
            .unwrap_or(&ask.permission)
            .to_string();
        let reply =
            permission::answer(self.client, self.dir(), &ask, &tool, &self.policy, self.ctx);
        match self.cancellable(reply).await {
            // The wait loop sees the cancel next.
            Err(Error::Cancelled) => Ok(()),
            // Answered meanwhile (by another client) or gone with its session: nothing waits.
            Ok(()) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::backend(
                NAME,
                format!(
                    "could not answer OpenCode's permission request {} ({}): {e}",
                    ask.id, ask.permission
                ),
            )),
        }
    }

    /// Whether the task is over, by asking the server rather than the stream. A server that no
    /// longer answers (refused, reset, silent) has gone away: the task fails with that.
    async fn is_done(&mut self) -> Result<bool> {
        match self.ask_done().await {
            // A busy machine can delay one answer; a server silent for several polls is gone.
            Err(Error::Timeout { .. }) if self.unanswered_polls + 1 < UNANSWERED_POLLS_LIMIT => {
                self.unanswered_polls += 1;
                Ok(false)
            }
            Err(e @ (Error::Unavailable { .. } | Error::Timeout { .. })) => Err(self
                .client
                .went_away(&format!("it stopped answering: {}", transport_cause(&e)))),
            other => {
                self.unanswered_polls = 0;
                other
            }
        }
    }

    async fn ask_done(&mut self) -> Result<bool> {
        // A status poll is small: a server that cannot answer it quickly is not working for us.
        let within = self.tuning.request_timeout.min(STATUS_POLL_TIMEOUT);
        let status: HashMap<String, SessionStatus> = self
            .cancellable(self.client.get_json_within(
                &["session", "status"],
                self.dir(),
                &[],
                within,
            ))
            .await?;
        if status
            .get(&self.session_id)
            .is_some_and(SessionStatus::is_working)
        {
            return Ok(false);
        }
        if self.mapper.seen_work() {
            return Ok(true);
        }
        // Idle without any sign of work: either it finished while nobody listened, or it has
        // not started yet.
        let new = outcome::new_messages(self.cancellable(self.task_messages()).await?, &self.known);
        if new.iter().any(|m| m.info.is_assistant()) {
            return Ok(true);
        }
        self.idle_polls_without_work += 1;
        Ok(self.idle_polls_without_work >= 3)
    }

    /// Read late frames until the stream is quiet (or `max` passes).
    async fn drain(&mut self, sub: &mut Subscription, max: Duration) {
        let end = Instant::now() + max;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match tokio::time::timeout(self.tuning.drain_quiet.min(left), sub.next()).await {
                Ok(Some(Ok(data))) => {
                    self.mapper.handle_data(&data, &self.ctx.events);
                }
                _ => return,
            }
        }
    }

    /// Abort on the server, collect what the task did, and say why it stopped.
    async fn stop(&mut self, sub: &mut Subscription, reason: StopReason) -> Outcome {
        let abort = self
            .client
            .post_unit(
                &["session", &self.session_id, "abort"],
                self.dir(),
                None,
                Retry::Idempotent,
                Duration::from_secs(3),
            )
            .await;
        let aborted = match abort {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(session = %self.session_id, "could not abort the OpenCode session: {e}");
                false
            }
        };
        // The abort shows up as idle; late parts follow it.
        let until_idle = Instant::now() + Duration::from_secs(3);
        while aborted && !self.mapper.is_idle() {
            let left = until_idle.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, sub.next()).await {
                Ok(Some(Ok(data))) => {
                    self.mapper.handle_data(&data, &self.ctx.events);
                }
                _ => break,
            }
        }
        self.drain(sub, Duration::from_secs(1)).await;
        let mut result = match tokio::time::timeout(Duration::from_secs(3), self.messages()).await {
            Ok(Ok(all)) => {
                let new = outcome::new_messages(all, &self.known);
                self.mapper.reconcile(&new, &self.ctx.events);
                let mut result = outcome::build(&new, &[]);
                result.files_changed = self.files_changed(&new).await;
                result
            }
            _ => {
                let (usage, cost) = self.mapper.usage();
                Outcome {
                    usage,
                    cost_usd: Some(cost),
                    ..Outcome::new(false, reason)
                }
            }
        };
        result.success = false;
        result.stop_reason = reason;
        result.error = Some(stop_message(aborted));
        result
    }

    /// Files the task changed: the server's diff for this turn (for a local workspace the
    /// runner replaces it with the exact changes it recorded).
    async fn files_changed(&self, new: &[MessageWithParts]) -> Vec<FileChange> {
        if let Some(user_message) = new
            .iter()
            .find(|m| m.info.role == "user")
            .map(|m| m.info.id.as_str())
        {
            let diff = self
                .client
                .get_json_within::<Vec<FileDiff>>(
                    &["session", &self.session_id, "diff"],
                    self.dir(),
                    &[("messageID", user_message)],
                    Duration::from_secs(10),
                )
                .await;
            match diff {
                Ok(diff) if !diff.is_empty() => {
                    return outcome::files_from_diff(&diff, self.local_dir.as_deref());
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("no diff from the server: {e}"),
            }
        }
        Vec::new()
    }
}

/// Deadline of one status poll while a task runs.
const STATUS_POLL_TIMEOUT: Duration = Duration::from_secs(5);

/// Status polls in a row without an answer after which the server has gone away.
const UNANSWERED_POLLS_LIMIT: u32 = 3;

/// The short reason a request reached no server, for "went away (…)".
fn transport_cause(e: &Error) -> String {
    let text = e.to_string();
    let lower = text.to_lowercase();
    for (needle, cause) in [
        ("connection refused", "connection refused"),
        ("connection reset", "connection reset"),
        ("broken pipe", "connection broken"),
    ] {
        if lower.contains(needle) {
            return cause.to_string();
        }
    }
    match e {
        Error::Timeout { after, .. } => format!("no answer within {}s", after.as_secs_f32()),
        _ => text,
    }
}

/// The detail of a stopped task's error (the runner puts why it stopped in front).
fn stop_message(aborted: bool) -> String {
    if aborted {
        "OpenCode's session was aborted".to_string()
    } else {
        "aborting OpenCode's session failed; it may still be running".to_string()
    }
}

/// Whether the task's last assistant message is complete (finished, failed, or has an end time).
fn transcript_settled(new: &[crate::wire::MessageWithParts]) -> bool {
    new.iter()
        .rev()
        .find(|m| m.info.is_assistant())
        .is_some_and(|m| {
            m.info.finish.is_some()
                || m.info.error.is_some()
                || m.info.time.as_ref().is_some_and(|t| t.completed.is_some())
        })
}
