//! `fake-acp-agent`: a scripted ACP agent on stdio for corner-case tests. The mode comes from
//! `FAKE_ACP_MODE`; see `station_testkit::fake_acp`.
#![allow(clippy::print_stdout, clippy::print_stderr)] // stdio is its protocol

use std::io::{BufRead, Write};

use serde_json::{Value, json};

struct Agent {
    mode: String,
    lines: std::io::Lines<std::io::StdinLock<'static>>,
    next_id: u64,
}

fn send(msg: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{msg}");
    let _ = out.flush();
}

fn update(session: &Value, update: Value) {
    send(&json!({"jsonrpc": "2.0", "method": "session/update",
                 "params": {"sessionId": session, "update": update}}));
}

fn chunk(text: &str) -> Value {
    json!({"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}})
}

impl Agent {
    /// Send a request to the client and read lines until its answer comes.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.answer_to(id)
    }

    fn answer_to(&mut self, id: u64) -> Value {
        while let Some(Ok(line)) = self.lines.next() {
            let msg: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if msg["id"].as_u64() == Some(id) && msg.get("method").is_none() {
                return msg;
            }
        }
        std::process::exit(0)
    }

    fn prompt(&mut self, id: &Value, session: &Value) {
        let end = |reason: &str| {
            send(
                &json!({"jsonrpc": "2.0", "id": id, "result": {"stopReason": reason,
                "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15}}}),
            );
        };
        match self.mode.as_str() {
            "crash" => {
                update(session, chunk("starting..."));
                eprintln!("fake agent: crashing on purpose");
                std::process::exit(3);
            }
            "hang" => {}
            "storm" => {
                let n: u64 = std::env::var("FAKE_ACP_STORM")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(500);
                let mut allowed = 0;
                for i in 0..n {
                    let answer = self.call(
                        "session/request_permission",
                        json!({
                        "sessionId": session,
                        "toolCall": {"toolCallId": format!("t{i}"), "title": "edit", "kind": "edit",
                                     "rawInput": {"filePath": format!("f{i}.txt")}},
                        "options": [{"optionId": "yes", "kind": "allow_once", "name": "Allow"},
                                    {"optionId": "no", "kind": "reject_once", "name": "Reject"}]}),
                    );
                    if answer["result"]["outcome"]["optionId"] == "yes" {
                        allowed += 1;
                    }
                }
                update(session, chunk(&format!("allowed {allowed} of {n}")));
                end("end_turn");
            }
            "permission" => {
                let tool_call = std::env::var("FAKE_ACP_TOOL_CALL")
                    .ok()
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                    .unwrap_or_else(|| {
                        json!({"toolCallId": "t1", "title": "rm -rf data", "kind": "execute",
                               "rawInput": {"command": "rm -rf data"}})
                    });
                let answer = self.call(
                    "session/request_permission",
                    json!({"sessionId": session, "toolCall": tool_call,
                        "options": [{"optionId": "always", "kind": "allow_always", "name": "Always"},
                                    {"optionId": "yes", "kind": "allow_once", "name": "Allow"},
                                    {"optionId": "no", "kind": "reject_once", "name": "Reject"}]}),
                );
                let outcome = &answer["result"]["outcome"];
                let text = match outcome["optionId"].as_str() {
                    Some(id) => format!("selected {id}"),
                    None => outcome["outcome"]
                        .as_str()
                        .unwrap_or("no answer")
                        .to_string(),
                };
                update(session, chunk(&text));
                end("end_turn");
            }
            "huge" => {
                update(session, chunk(&"x".repeat(10 * 1024 * 1024)));
                end("end_turn");
            }
            "unknown" => {
                update(
                    session,
                    json!({"sessionUpdate": "mystery_kind", "payload": [1, 2, 3]}),
                );
                update(session, chunk("after unknown"));
                end("end_turn");
            }
            "terminal" => {
                let created = self.call(
                    "terminal/create",
                    json!({"sessionId": session,
                    "command": "sh", "args": ["-c", "printf 0123456789"], "outputByteLimit": 4}),
                );
                let term = created["result"]["terminalId"].clone();
                let exit = self.call(
                    "terminal/wait_for_exit",
                    json!({"sessionId": session, "terminalId": term}),
                );
                let out = self.call(
                    "terminal/output",
                    json!({"sessionId": session, "terminalId": term}),
                );
                self.call(
                    "terminal/release",
                    json!({"sessionId": session, "terminalId": term}),
                );
                let r = &out["result"];
                update(
                    session,
                    chunk(&format!(
                        "exit {} output {} truncated {}",
                        exit["result"]["exitCode"],
                        r["output"].as_str().unwrap_or("?"),
                        r["truncated"]
                    )),
                );
                end("end_turn");
            }
            "write_outside" => {
                let path = std::env::var("FAKE_ACP_PATH").unwrap_or_default();
                let answer = self.call(
                    "fs/write_text_file",
                    json!({"sessionId": session, "path": path, "content": "pwned"}),
                );
                let text = match answer.get("error") {
                    Some(e) => format!("write refused: {}", e["message"].as_str().unwrap_or("")),
                    None => "write accepted".to_string(),
                };
                update(session, chunk(&text));
                end("end_turn");
            }
            _ => {
                update(session, chunk("fake answer"));
                end("end_turn");
            }
        }
    }
}

fn main() {
    let mode = std::env::var("FAKE_ACP_MODE").unwrap_or_else(|_| "ok".into());
    if mode == "garbage" {
        println!("Welcome to not-an-agent 1.0");
        println!("{{broken json");
    }
    let mut agent = Agent {
        mode,
        lines: std::io::stdin().lock().lines(),
        next_id: 0,
    };
    let mut sessions = 0;
    while let Some(Ok(line)) = agent.lines.next() {
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let id = msg["id"].clone();
        let params = &msg["params"];
        let result = match msg["method"].as_str().unwrap_or("") {
            "initialize" if agent.mode == "garbage" => continue,
            "initialize" => json!({"protocolVersion": 1,
                "agentCapabilities": {"loadSession": true, "sessionCapabilities": {"resume": {}, "list": {}}},
                "agentInfo": {"name": "fake-acp-agent", "version": "0.0.1"}, "authMethods": []}),
            "session/new" => {
                sessions += 1;
                json!({"sessionId": format!("fake-{sessions}"),
                       "configOptions": [{"id": "model", "type": "select", "currentValue": "fake-model"}]})
            }
            "session/resume" | "session/load" => json!({}),
            "session/set_config_option" if params["value"] == "no-such-model" => {
                send(
                    &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": "unknown model no-such-model"}}),
                );
                continue;
            }
            "session/set_config_option" => json!({"configOptions": []}),
            "session/list" => json!({"sessions": []}),
            "session/prompt" => {
                let session = params["sessionId"].clone();
                agent.prompt(&id, &session);
                continue;
            }
            "session/cancel" => continue,
            other => {
                send(
                    &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": format!("no {other}")}}),
                );
                continue;
            }
        };
        send(&json!({"jsonrpc": "2.0", "id": id, "result": result}));
    }
    // End of input: save state slowly, as real agents write their session files on exit.
    if let Ok(path) = std::env::var("FAKE_ACP_SAVE_ON_EXIT") {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let _ = std::fs::write(path, "saved");
    }
}
