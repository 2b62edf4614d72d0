//! The scripted model server's Gemini API, with bodies shaped like the Gemini CLI's.

use std::time::Duration;

use serde_json::{Value, json};
use station_testkit::model_server::{Api, Fault, Script, ScriptedModel, Step};

use crate::support::frames;

const SESSION_CONTEXT: &str = "<session_context>\nThis is the Gemini CLI.\nMy operating system is: linux\n- **Workspace Directories:**\n  - /work/gm\n- **Directory Structure:**\n\n/work/gm/\n</session_context>";

fn declaration(name: &str, props: &[&str], required: &[&str]) -> Value {
    let properties: serde_json::Map<String, Value> = props
        .iter()
        .map(|p| {
            (
                (*p).to_owned(),
                json!({"type": "string", "description": "d"}),
            )
        })
        .collect();
    json!({"name": name, "description": "d", "parametersJsonSchema":
           {"type": "object", "properties": properties, "required": required}})
}

/// The tools the Gemini CLI offers (subset).
fn gemini_tools() -> Value {
    json!([{"functionDeclarations": [
        declaration("list_directory", &["dir_path"], &["dir_path"]),
        declaration("read_file", &["file_path", "start_line", "end_line"], &["file_path"]),
        declaration("replace", &["file_path", "instruction", "old_string", "new_string"],
                    &["file_path", "instruction", "old_string", "new_string"]),
        declaration("write_file", &["file_path", "content"], &["file_path", "content"]),
        declaration("run_shell_command", &["command", "description", "dir_path"], &["command"]),
    ]}])
}

/// A main-loop body: the session context and the prompt in the first user content, then
/// `history`.
fn gemini_body(prompt: &str, history: &[Value]) -> Value {
    let mut contents = vec![json!({"role": "user", "parts": [
        {"text": SESSION_CONTEXT}, {"text": prompt}
    ]})];
    contents.extend_from_slice(history);
    json!({"contents": contents,
           "systemInstruction": {"parts": [{"text": "You are Gemini CLI."}]},
           "tools": gemini_tools(),
           "generationConfig": {"temperature": 1, "topP": 0.95}})
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn call(model: &ScriptedModel, method: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!(
            "{}/v1beta/models/gemini-3.8-flash:{method}",
            model.base_url()
        ))
        .header("x-goog-api-key", "not-a-real-key")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The chunks of a streamed reply, parsed.
async fn stream(model: &ScriptedModel, body: &Value) -> Vec<Value> {
    let response = call(model, "streamGenerateContent?alt=sse", body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap().replace("\r\n", "\n");
    frames(&text).iter().map(|f| f.json()).collect()
}

fn parts_of(chunks: &[Value]) -> Vec<Value> {
    chunks
        .iter()
        .flat_map(|c| {
            c["candidates"][0]["content"]["parts"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect()
}

fn text_of(chunks: &[Value]) -> String {
    parts_of(chunks)
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect()
}

fn function_call(chunks: &[Value]) -> Value {
    parts_of(chunks)
        .into_iter()
        .find_map(|p| p.get("functionCall").cloned())
        .unwrap_or(Value::Null)
}

/// The model's turn and the CLI's tool result, as the CLI sends them back.
fn answered(call: &Value, output: &str) -> [Value; 2] {
    let name = call["name"].clone();
    [
        json!({"role": "model", "parts": [{"functionCall": {"id": "c1", "name": name, "args": call["args"]},
                                          "thoughtSignature": "skip_thought_signature_validator"}]}),
        json!({"role": "user", "parts": [{"functionResponse": {"id": "c1", "name": name,
                                                              "response": {"output": output}}}]}),
    ]
}

#[tokio::test]
async fn gemini_stream_sends_text_in_pieces_then_the_call_whole_with_usage_last() {
    let script = Script::new().on(
        "gm_hello.py",
        vec![
            Step::write("gm_hello.py", "print(\"Hello Gemini\")\n")
                .with_text_before("I'll create gm_hello.py now."),
            Step::text("Created gm_hello.py, which prints Hello Gemini."),
        ],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    let body = gemini_body("create gm_hello.py that prints Hello Gemini", &[]);
    let chunks = stream(&model, &body).await;
    assert!(
        chunks.len() >= 3,
        "text in pieces, then the call: {chunks:#?}"
    );
    for chunk in &chunks[..chunks.len() - 1] {
        assert!(chunk.get("usageMetadata").is_none(), "{chunk}");
        assert!(
            chunk["candidates"][0].get("finishReason").is_none(),
            "{chunk}"
        );
    }
    let last = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["modelVersion"], "gemini-3.8-flash");
    let usage = &last["usageMetadata"];
    assert!(usage["promptTokenCount"].as_u64().unwrap() > 0, "{usage}");
    assert_eq!(
        usage["totalTokenCount"].as_u64().unwrap(),
        usage["promptTokenCount"].as_u64().unwrap()
            + usage["candidatesTokenCount"].as_u64().unwrap()
    );
    assert_eq!(text_of(&chunks), "I'll create gm_hello.py now.");
    let write = function_call(&chunks);
    assert_eq!(
        write,
        json!({"name": "write_file", "args": {"file_path": "/work/gm/gm_hello.py",
                                              "content": "print(\"Hello Gemini\")\n"}})
    );
    let parts = last["candidates"][0]["content"]["parts"]
        .as_array()
        .unwrap();
    assert!(
        parts[0].get("functionCall").is_some(),
        "the call is a chunk of its own"
    );

    let history = answered(&write, "Successfully created and wrote to new file");
    let chunks = stream(
        &model,
        &gemini_body("create gm_hello.py that prints Hello Gemini", &history),
    )
    .await;
    assert_eq!(
        text_of(&chunks),
        "Created gm_hello.py, which prints Hello Gemini."
    );
    assert_eq!(function_call(&chunks), Value::Null);

    let recorded = model.scripted_requests();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].api, Api::Gemini);
    assert_eq!(recorded[0].model.as_deref(), Some("gemini-3.8-flash"));
    assert_eq!(
        recorded[0].prompt.as_deref(),
        Some("create gm_hello.py that prints Hello Gemini"),
        "the session context is not the prompt"
    );
    assert_eq!((recorded[0].turn, recorded[1].turn), (Some(0), Some(1)));
    assert!(recorded[0].stream && recorded[0].offered("write_file"));
    assert!(
        !recorded[0].offered("write"),
        "aliases are not recorded as offered"
    );
    assert_eq!(
        recorded[0].reply.tool_call.as_ref().unwrap().name,
        "write_file"
    );
    assert!(
        recorded[1]
            .conversation_text()
            .contains("Successfully created")
    );
    assert!(
        recorded[0].header("x-goog-api-key").is_none(),
        "the API key is not recorded"
    );
}

#[tokio::test]
async fn gemini_four_turns_map_bash_and_edit_with_the_required_instruction() {
    let script = Script::new().on(
        "fizzbuzz",
        vec![
            Step::write("fb.py", "for i in range(1, 16): print(i)\n"),
            Step::bash("python3 fb.py"),
            Step::edit("fb.py", "range(1, 16)", "range(1, 31)"),
            Step::text("Implemented FizzBuzz."),
        ],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    let mut history = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..3 {
        let chunks = stream(
            &model,
            &gemini_body("implement fizzbuzz in fb.py", &history),
        )
        .await;
        let call = function_call(&chunks);
        history.extend(answered(&call, "ok"));
        calls.push(call);
    }
    assert_eq!(calls[1]["name"], "run_shell_command");
    assert_eq!(calls[1]["args"]["command"], "python3 fb.py");
    assert_eq!(calls[2]["name"], "replace");
    assert_eq!(
        calls[2]["args"],
        json!({"file_path": "/work/gm/fb.py", "old_string": "range(1, 16)",
               "new_string": "range(1, 31)", "instruction": "edit requested by the scripted scenario"})
    );
    let chunks = stream(
        &model,
        &gemini_body("implement fizzbuzz in fb.py", &history),
    )
    .await;
    assert_eq!(text_of(&chunks), "Implemented FizzBuzz.");
    let turns: Vec<Option<usize>> = model.scripted_requests().iter().map(|r| r.turn).collect();
    assert_eq!(turns, [Some(0), Some(1), Some(2), Some(3)]);
}

#[tokio::test]
async fn gemini_json_side_calls_count_tokens_and_models() {
    let script = Script::new().on("hello", vec![Step::write("a.py", "x")]);
    let model = ScriptedModel::start(script).await.unwrap();
    // The CLI's router: no tools, a JSON schema in Gemini's upper-case spelling, the prompt in
    // a content of its own after the session context.
    let router = json!({
        "contents": [{"role": "user", "parts": [{"text": SESSION_CONTEXT}]},
                     {"role": "user", "parts": [{"text": "hello there"}]}],
        "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": {
            "type": "OBJECT", "properties": {
                "complexity_reasoning": {"type": "STRING"}, "complexity_score": {"type": "INTEGER"}},
            "required": ["complexity_reasoning", "complexity_score"]}}
    });
    let response = call(&model, "generateContent", &router).await;
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.unwrap();
    let text = reply["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    let answer: Value = serde_json::from_str(text).unwrap();
    assert_eq!(answer["complexity_reasoning"], "hello there");
    assert!(
        answer["complexity_score"].as_u64().unwrap() >= 1,
        "{answer}"
    );
    assert!(reply["usageMetadata"]["promptTokenCount"].as_u64().unwrap() > 0);
    let recorded = model.requests();
    assert!(recorded[0].side_call && recorded[0].prompt.as_deref() == Some("hello there"));
    assert!(
        model.scripted_requests().is_empty(),
        "side calls do not advance the script"
    );

    let counted: Value = call(&model, "countTokens", &router)
        .await
        .json()
        .await
        .unwrap();
    assert!(counted["totalTokens"].as_u64().unwrap() > 0, "{counted}");
    let listed: Value = client()
        .get(format!("{}/v1beta/models", model.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        listed["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "models/gemini-3.8-flash")
    );
    let one: Value = client()
        .get(format!("{}/v1beta/models/gemini-x", model.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["name"], "models/gemini-x");

    // The first scripted turn still comes first.
    let chunks = stream(&model, &gemini_body("hello", &[])).await;
    assert_eq!(function_call(&chunks)["name"], "write_file");
}

#[tokio::test]
async fn gemini_faults_and_bad_requests_use_its_error_shape() {
    let model = ScriptedModel::start(Script::new()).await.unwrap();
    model.set_fault(Some(Fault::Status(400)));
    let response = call(
        &model,
        "streamGenerateContent?alt=sse",
        &gemini_body("hi", &[]),
    )
    .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], 400);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    model.set_fault(None);

    let response = call(&model, "generateContent", &json!({"contents": 3})).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("contents"),
        "{body}"
    );
    let response = call(&model, "embedContent", &json!({})).await;
    assert_eq!(response.status(), 404);

    let chunks = stream(&model, &gemini_body("anything", &[])).await;
    assert_eq!(text_of(&chunks), "Done.");
}

#[tokio::test]
async fn gemini_dropped_stream_cuts_off_after_a_partial_reply() {
    use futures_util::StreamExt;
    let model = ScriptedModel::start(Script::new()).await.unwrap();
    model.set_fault(Some(Fault::DropMidStream));
    let response = call(
        &model,
        "streamGenerateContent?alt=sse",
        &gemini_body("hi", &[]),
    )
    .await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut received = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("no hang")
        {
            Some(Ok(bytes)) => received.extend_from_slice(&bytes),
            Some(Err(_)) => break,
            None => panic!("the stream ended cleanly instead of dropping"),
        }
    }
    let received = String::from_utf8(received).unwrap();
    assert!(
        received.contains("Partial") && !received.contains("finishReason"),
        "{received}"
    );
}
