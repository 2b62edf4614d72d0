//! The scripted model server's OpenAI Responses route (`/v1/responses`), as Codex calls it.

use serde_json::{Value, json};
use station_testkit::model_server::{Api, Fault, Script, ScriptedModel, Step};

use crate::support::frames;

const HELLO: &str = "print('Hello World')\n";

fn script() -> Script {
    Script::new()
        .on(
            "hello.py",
            vec![
                Step::write("hello.py", HELLO).with_text_before("I'll create hello.py."),
                Step::bash("python3 hello.py"),
                Step::text("Created hello.py."),
            ],
        )
        .on(
            "slow",
            vec![Step::slow_text(
                "a b c",
                std::time::Duration::from_millis(5),
            )],
        )
}

/// The tools `codex exec` offers with a known model (subset).
fn codex_tools() -> Value {
    json!([
        {"type": "function", "name": "exec_command", "strict": false,
         "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}, "workdir": {"type": "string"}}, "required": ["cmd"]}},
        {"type": "function", "name": "write_stdin",
         "parameters": {"type": "object", "properties": {"chars": {"type": "string"}, "session_id": {"type": "number"}}}},
        {"type": "custom", "name": "apply_patch", "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch"}},
        {"type": "web_search", "external_web_access": false}
    ])
}

/// A body shaped like Codex's: base instructions, environment context, the prompt, history.
fn codex_body(prompt: &str, history: &[Value], stream: bool) -> Value {
    let mut input = vec![
        json!({"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex, a coding agent."}]}),
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>\n  <cwd>/work/ws</cwd>\n  <shell>bash</shell>\n</environment_context>"}]}),
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]}),
    ];
    input.extend(history.iter().cloned());
    json!({"model": "gpt-5.5", "stream": stream, "input": input, "tools": codex_tools(),
           "tool_choice": "auto", "parallel_tool_calls": true, "store": false,
           "reasoning": {"effort": "medium"}, "include": ["reasoning.encrypted_content"]})
}

async fn post(model: &ScriptedModel, body: &Value) -> reqwest::Response {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/responses", model.openai_base_url()))
        .header("authorization", "Bearer not-a-real-key")
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_streamed_write_is_an_apply_patch_custom_call_with_numbered_events() {
    let model = ScriptedModel::start(script()).await.unwrap();
    let response = post(&model, &codex_body("create hello.py please", &[], true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let frames = frames(&response.text().await.unwrap());
    let kinds: Vec<&str> = frames.iter().map(|f| f.event.as_deref().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (n, frame) in frames.iter().enumerate() {
        let data = frame.json();
        assert_eq!(data["type"], frame.event.as_deref().unwrap());
        assert_eq!(data["sequence_number"], n as u64);
    }
    let text: String = frames
        .iter()
        .filter(|f| f.event.as_deref() == Some("response.output_text.delta"))
        .map(|f| f.json()["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "I'll create hello.py.");
    let call = frames[14].json()["item"].clone();
    let patch =
        "*** Begin Patch\n*** Add File: /work/ws/hello.py\n+print('Hello World')\n*** End Patch\n";
    assert_eq!(
        call,
        json!({"type": "custom_tool_call", "id": "ctc_scripted000001", "call_id": "call_scripted000001",
               "name": "apply_patch", "input": patch, "status": "completed"})
    );
    let deltas: String = frames[10..13]
        .iter()
        .map(|f| f.json()["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deltas, patch);
    let completed = frames.last().unwrap().json();
    let recorded = &model.requests()[0];
    let usage = recorded.reply.usage.unwrap();
    assert_eq!(
        completed["response"]["usage"]["input_tokens"],
        usage.input_tokens
    );
    assert_eq!(
        completed["response"]["usage"]["output_tokens"],
        usage.output_tokens
    );
    assert_eq!(
        completed["response"]["usage"]["input_tokens_details"]["cached_tokens"],
        0
    );
    assert_eq!(completed["response"]["output"][1], call);
    assert_eq!(recorded.api, Api::Responses);
    assert_eq!(recorded.prompt.as_deref(), Some("create hello.py please"));
    assert_eq!(recorded.turn, Some(0));
    assert_eq!(
        recorded.offered_tools,
        ["exec_command", "write_stdin", "apply_patch"]
    );
    assert!(recorded.header("authorization").is_none());
}

#[tokio::test]
async fn turns_count_calls_and_bash_becomes_exec_command_not_write_stdin() {
    let model = ScriptedModel::start(script()).await.unwrap();
    // Text before a call and the call are one turn.
    let history = [
        json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "I'll create hello.py."}]}),
        json!({"type": "custom_tool_call", "name": "apply_patch", "input": "*** Begin Patch", "call_id": "call_1"}),
        json!({"type": "custom_tool_call_output", "call_id": "call_1", "output": "Success. Updated the following files:\nA hello.py"}),
    ];
    let response = post(
        &model,
        &codex_body("create hello.py please", &history, true),
    )
    .await;
    let frames = frames(&response.text().await.unwrap());
    let call = frames
        .iter()
        .rev()
        .find(|f| f.event.as_deref() == Some("response.output_item.done"))
        .unwrap()
        .json()["item"]
        .clone();
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["name"], "exec_command");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"cmd": "python3 hello.py"}));
    assert_eq!(model.requests()[0].turn, Some(1));
    assert!(
        model.requests()[0]
            .conversation_text()
            .contains("A hello.py")
    );

    // Turn 2, not streamed: the final text as a `response` object.
    let mut longer = history.to_vec();
    longer.push(json!({"type": "function_call", "name": "exec_command", "arguments": "{\"cmd\":\"python3 hello.py\"}", "call_id": "call_2"}));
    longer.push(
        json!({"type": "function_call_output", "call_id": "call_2", "output": "Hello World"}),
    );
    let reply: Value = post(
        &model,
        &codex_body("create hello.py please", &longer, false),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(model.requests()[1].turn, Some(2));
    assert_eq!(reply["object"], "response");
    assert_eq!(reply["status"], "completed");
    assert_eq!(
        reply["output"][0]["content"][0]["text"],
        "Created hello.py."
    );
    assert_eq!(
        reply["usage"]["output_tokens"],
        model.requests()[1].reply.usage.unwrap().output_tokens
    );
}

#[tokio::test]
async fn edits_are_update_patches_widened_to_whole_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fb.py");
    std::fs::write(&file, "x = 1\nprint('Hello World')\n").unwrap();
    let model = ScriptedModel::start(Script::new().on(
        "fix",
        vec![Step::edit(file.to_str().unwrap(), "Hello", "Bye")],
    ))
    .await
    .unwrap();
    let reply: Value = post(&model, &codex_body("fix it", &[], false))
        .await
        .json()
        .await
        .unwrap();
    let call = &reply["output"][0];
    assert_eq!(call["type"], "custom_tool_call");
    assert_eq!(
        call["input"],
        format!(
            "*** Begin Patch\n*** Update File: {}\n@@\n-print('Hello World')\n+print('Bye World')\n*** End Patch\n",
            file.display()
        )
    );
}

#[tokio::test]
async fn faults_use_the_openai_error_shape_and_stream_cuts() {
    let model = ScriptedModel::start(script()).await.unwrap();
    model.set_fault(Some(Fault::Status(400)));
    let response = post(&model, &codex_body("create hello.py", &[], true)).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");

    model.set_fault(Some(Fault::DropMidStream));
    let response = post(&model, &codex_body("create hello.py", &[], true)).await;
    assert!(response.text().await.is_err(), "the body is cut off");

    model.set_fault(None);
    let response = post(&model, &json!({"model": "gpt-5.5", "input": 7})).await;
    assert_eq!(response.status(), 400);
    let response = reqwest::get(format!("{}/responses", model.openai_base_url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let slow = post(&model, &codex_body("slow please", &[], true)).await;
    let text: String = frames(&slow.text().await.unwrap())
        .iter()
        .filter(|f| f.event.as_deref() == Some("response.output_text.delta"))
        .map(|f| f.json()["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "a b c");
}
