//! The scripted model server over real HTTP.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use station_testkit::model_server::{
    Api, Fault, Script, ScriptedModel, ServerOptions, Step, TokenUsage,
};

use crate::support::{anthropic_body, frames, openai_body};

const HELLO: &str = "print('Hello World')\n";

fn hello_script() -> Script {
    Script::new()
        .on(
            "hello.py",
            vec![
                Step::write("hello.py", HELLO).with_text_before("I'll create hello.py."),
                Step::text("Created hello.py."),
            ],
        )
        .on("run it", vec![Step::bash("python3 hello.py")])
        .on("fix", vec![Step::edit("hello.py", "Hello", "Bye")])
        .on(
            "open repo",
            vec![Step::tool(
                "coding_open",
                json!({"repo": "o/r", "extra": [1, 2]}),
            )],
        )
        .on("missing tool", vec![Step::tool("nope", json!({}))])
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn post(url: String, body: &Value) -> reqwest::Response {
    client()
        .post(url)
        .header("authorization", "Bearer not-a-real-key")
        .header("x-api-key", "also-not-real")
        .header("x-session-id", "ses_test")
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn openai(model: &ScriptedModel, body: &Value) -> reqwest::Response {
    post(
        format!("{}/chat/completions", model.openai_base_url()),
        body,
    )
    .await
}

async fn anthropic(model: &ScriptedModel, body: &Value) -> reqwest::Response {
    post(format!("{}/v1/messages?beta=true", model.base_url()), body).await
}

/// Concatenated OpenAI stream parts: (text, tool name, tool id, args JSON, finish, usage).
fn openai_parts(
    body: &str,
) -> (
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<Value>,
) {
    let frames = frames(body);
    assert_eq!(frames.last().unwrap().data, "[DONE]", "{body}");
    let first = frames[0].json();
    assert_eq!(
        first["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let (mut text, mut name, mut id, mut args, mut finish, mut usage) =
        (String::new(), None, None, String::new(), None, None);
    for frame in &frames[..frames.len() - 1] {
        let chunk = frame.json();
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "fake-model");
        if let Some(u) = chunk.get("usage") {
            assert_eq!(chunk["choices"], json!([]));
            usage = Some(u.clone());
            continue;
        }
        let choice = &chunk["choices"][0];
        if let Some(t) = choice["delta"]["content"].as_str() {
            text.push_str(t);
        }
        if let Some(call) = choice["delta"]["tool_calls"].get(0) {
            if let Some(n) = call["function"]["name"].as_str() {
                name = Some(n.to_owned());
                id = call["id"].as_str().map(str::to_owned);
            }
            args.push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = Some(f.to_owned());
        }
    }
    (text, name, id, args, finish, usage)
}

#[tokio::test]
async fn openai_stream_maps_write_and_then_finishes() {
    let model = ScriptedModel::start(hello_script()).await.unwrap();
    let response = openai(
        &model,
        &openai_body("create hello.py that prints Hello World", &[], true),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["request-id"], "req_scripted000001");
    let (text, name, id, args, finish, usage) = openai_parts(&response.text().await.unwrap());
    assert_eq!(text, "I'll create hello.py.");
    assert_eq!(name.as_deref(), Some("write"));
    assert_eq!(id.as_deref(), Some("call_scripted000001"));
    let args: Value = serde_json::from_str(&args).unwrap();
    assert_eq!(
        args,
        json!({"filePath": "/work/ws/hello.py", "content": HELLO})
    );
    assert_eq!(finish.as_deref(), Some("tool_calls"));

    let recorded = &model.requests()[0];
    assert_eq!(recorded.api, Api::OpenAi);
    assert_eq!(recorded.path, "/v1/chat/completions");
    assert_eq!(recorded.model.as_deref(), Some("fake-model"));
    assert_eq!(
        recorded.prompt.as_deref(),
        Some("create hello.py that prints Hello World")
    );
    assert_eq!(recorded.turn, Some(0));
    assert_eq!(recorded.offered_tools, ["write", "edit", "bash", "read"]);
    assert!(recorded.stream && !recorded.side_call);
    let reported = recorded.reply.usage.unwrap();
    let usage = usage.expect("a usage chunk, as include_usage was set");
    assert_eq!(usage["prompt_tokens"], reported.input_tokens);
    assert_eq!(usage["completion_tokens"], reported.output_tokens);
    assert_eq!(
        usage["total_tokens"],
        reported.input_tokens + reported.output_tokens
    );
    let expected_input = 1 + recorded.conversation_text().chars().count() as u64 / 4;
    assert_eq!(reported.input_tokens, expected_input);
    let tool = recorded.reply.tool_call.as_ref().unwrap();
    assert_eq!((tool.name.as_str(), &tool.arguments), ("write", &args));

    // Turn 1 (after the tool result) is non-streaming here: the scripted text.
    let history = [
        json!({"role": "assistant", "content": "I'll create hello.py.", "tool_calls": [{"id": "call_scripted000001", "type": "function", "function": {"name": "write", "arguments": args.to_string()}}]}),
        json!({"role": "tool", "tool_call_id": "call_scripted000001", "content": "Wrote file successfully."}),
    ];
    let reply: Value = openai(
        &model,
        &openai_body("create hello.py that prints Hello World", &history, false),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(reply["object"], "chat.completion");
    assert_eq!(
        reply["choices"][0]["message"],
        json!({"role": "assistant", "content": "Created hello.py."})
    );
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
    let usage = model.requests()[1].reply.usage.unwrap();
    assert_eq!(reply["usage"]["completion_tokens"], usage.output_tokens);
    assert!(
        model.requests()[1]
            .conversation_text()
            .contains("Wrote file successfully.")
    );

    // Turn 2: the steps ran out.
    let mut longer = history.to_vec();
    longer.push(json!({"role": "assistant", "content": "Created hello.py."}));
    longer.push(json!({"role": "user", "content": "thanks"}));
    let reply: Value = openai(&model, &openai_body("x", &longer, false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["choices"][0]["message"]["content"], "Done.");
}

#[tokio::test]
async fn openai_non_streaming_tool_call_carries_arguments_as_a_string() {
    let model = ScriptedModel::start(hello_script()).await.unwrap();
    let reply: Value = openai(&model, &openai_body("fix the greeting", &[], false))
        .await
        .json()
        .await
        .unwrap();
    let message = &reply["choices"][0]["message"];
    assert_eq!(message["content"], Value::Null);
    let call = &message["tool_calls"][0];
    assert_eq!(call["function"]["name"], "edit");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(
        args,
        json!({"filePath": "/work/ws/hello.py", "oldString": "Hello", "newString": "Bye"})
    );
    assert_eq!(reply["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn anthropic_stream_has_the_event_order_claude_accepts() {
    let model = ScriptedModel::start(hello_script()).await.unwrap();
    let response = anthropic(
        &model,
        &anthropic_body("create hello.py that prints Hello World", &[], true),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["request-id"], "req_scripted000001");
    let frames = frames(&response.text().await.unwrap());
    let events: Vec<&str> = frames.iter().map(|f| f.event.as_deref().unwrap()).collect();
    assert_eq!(
        events,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for frame in &frames {
        assert_eq!(frame.json()["type"], frame.event.as_deref().unwrap());
    }
    let recorded = &model.requests()[0];
    let usage = recorded.reply.usage.unwrap();
    let start = frames[0].json();
    assert_eq!(start["message"]["model"], "claude-opus-4-8");
    assert_eq!(
        start["message"]["usage"]["input_tokens"],
        usage.input_tokens
    );
    let text: String = frames[3..5]
        .iter()
        .map(|f| f.json()["delta"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "I'll create hello.py.");
    let tool_start = frames[6].json();
    assert_eq!(tool_start["index"], 1);
    assert_eq!(tool_start["content_block"]["name"], "Write");
    assert_eq!(tool_start["content_block"]["id"], "toolu_scripted000001");
    let input: String = frames[7..10]
        .iter()
        .map(|f| {
            f.json()["delta"]["partial_json"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let input: Value = serde_json::from_str(&input).unwrap();
    assert_eq!(
        input,
        json!({"file_path": "/work/cc/hello.py", "content": HELLO})
    );
    let delta = frames[11].json();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["output_tokens"], usage.output_tokens);
    assert_eq!(recorded.api, Api::Anthropic);
    assert_eq!(recorded.path, "/v1/messages");
    assert_eq!(
        recorded.prompt.as_deref(),
        Some("create hello.py that prints Hello World")
    );
    assert_eq!(
        recorded.offered_tools,
        ["Write", "Edit", "Bash", "coding_open"]
    );

    // Turn 1 with the tool result, non-streaming.
    let history = [
        json!({"role": "assistant", "content": [{"type": "text", "text": "I'll create hello.py."}, {"type": "tool_use", "id": "toolu_scripted000001", "name": "Write", "input": input}]}),
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_scripted000001", "content": "File created successfully"}]}),
    ];
    let reply: Value = anthropic(
        &model,
        &anthropic_body("create hello.py that prints Hello World", &history, false),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(reply["type"], "message");
    assert_eq!(
        reply["content"],
        json!([{"type": "text", "text": "Created hello.py."}])
    );
    assert_eq!(reply["stop_reason"], "end_turn");
    assert_eq!(model.requests()[1].turn, Some(1));
}

#[tokio::test]
async fn anthropic_tool_only_reply_pings_after_the_tool_block_and_bash_keeps_its_args() {
    let model = ScriptedModel::start(hello_script()).await.unwrap();
    let response = anthropic(&model, &anthropic_body("run it", &[], true)).await;
    let frames = frames(&response.text().await.unwrap());
    let events: Vec<&str> = frames.iter().map(|f| f.event.as_deref().unwrap()).collect();
    assert_eq!(
        &events[..3],
        ["message_start", "content_block_start", "ping"]
    );
    assert_eq!(frames[1].json()["index"], 0);
    let input = model.requests()[0]
        .reply
        .tool_call
        .clone()
        .unwrap()
        .arguments;
    assert_eq!(input, json!({"command": "python3 hello.py"}));
    // Non-streaming: the tool_use block holds the input as an object.
    let reply: Value = anthropic(&model, &anthropic_body("run it", &[], false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["content"][0]["type"], "tool_use");
    assert_eq!(reply["content"][0]["name"], "Bash");
    assert_eq!(
        reply["content"][0]["input"],
        json!({"command": "python3 hello.py"})
    );
    assert_eq!(reply["stop_reason"], "tool_use");
}

#[tokio::test]
async fn verbatim_tools_pass_through_and_missing_tools_are_explained() {
    let model = ScriptedModel::start(hello_script()).await.unwrap();
    let reply: Value = anthropic(&model, &anthropic_body("open repo please", &[], false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["content"][0]["name"], "coding_open");
    assert_eq!(
        reply["content"][0]["input"],
        json!({"repo": "o/r", "extra": [1, 2]})
    );
    let reply: Value = anthropic(&model, &anthropic_body("missing tool", &[], false))
        .await
        .json()
        .await
        .unwrap();
    let text = reply["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("`nope` is not offered") && text.contains("coding_open"),
        "{text}"
    );
}

#[tokio::test]
async fn side_calls_get_titles_or_schema_json_and_never_advance_the_script() {
    let model = ScriptedModel::start(hello_script()).await.unwrap();
    // OpenCode's title request: no tools.
    let mut title = openai_body("create hello.py that prints Hello World", &[], true);
    title.as_object_mut().unwrap().remove("tools");
    title["messages"].as_array_mut().unwrap().insert(0, json!({"role": "system", "content": "You are a title generator. You output ONLY a thread title."}));
    let (text, name, ..) = openai_parts(&openai(&model, &title).await.text().await.unwrap());
    assert_eq!(text, "create hello.py that prints Hello World");
    assert_eq!(name, None);
    // A JSON-mode side call (OpenAI).
    let mut json_mode = title.clone();
    json_mode["stream"] = json!(false);
    json_mode["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "t", "schema": {"type": "object", "properties": {"title": {"type": "string"}, "n": {"type": "integer"}}}}});
    let reply: Value = openai(&model, &json_mode).await.json().await.unwrap();
    let content: Value =
        serde_json::from_str(reply["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        content,
        json!({"title": "create hello.py that prints Hello World", "n": 0})
    );
    // Claude's side request: no tools, a JSON schema in output_config.format.
    let mut side = anthropic_body("create hello.py", &[], false);
    side.as_object_mut().unwrap().remove("tools");
    side["output_config"] = json!({"format": {"type": "json_schema", "schema": {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}}});
    let reply: Value = anthropic(&model, &side).await.json().await.unwrap();
    let content: Value =
        serde_json::from_str(reply["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(content, json!({"title": "create hello.py"}));

    assert!(model.requests().iter().all(|r| r.side_call));
    assert!(model.scripted_requests().is_empty());
    // The script still starts at step 0.
    let reply: Value = anthropic(&model, &anthropic_body("create hello.py", &[], false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["content"][1]["name"], "Write");
    assert_eq!(model.scripted_requests().len(), 1);
}

#[tokio::test]
async fn status_faults_use_each_apis_error_shape_and_can_be_cleared() {
    let model = ScriptedModel::start(hello_script()).await.unwrap();
    model.set_fault(Some(Fault::Status(500)));
    let response = openai(&model, &openai_body("create hello.py", &[], true)).await;
    assert_eq!(response.status(), 500);
    assert_eq!(response.headers()["x-should-retry"], "false");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "server_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("500"));

    model.set_fault(Some(Fault::Status(429)));
    let response = anthropic(&model, &anthropic_body("create hello.py", &[], true)).await;
    assert_eq!(response.status(), 429);
    let request_id = response.headers()["request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["request_id"], request_id);
    let recorded = model.requests();
    assert_eq!(recorded[1].reply.fault, Some(Fault::Status(429)));
    assert_eq!(recorded[1].reply.status, 429);

    model.set_fault(None);
    let response = anthropic(&model, &anthropic_body("create hello.py", &[], false)).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_fault_step_fails_only_its_turn() {
    let script = Script::new().on(
        "flaky",
        vec![Step::fault(Fault::Status(503)), Step::text("recovered")],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    assert_eq!(
        openai(&model, &openai_body("flaky", &[], false))
            .await
            .status(),
        503
    );
    let history = [
        json!({"role": "assistant", "content": "x"}),
        json!({"role": "tool", "tool_call_id": "c", "content": "y"}),
    ];
    let reply: Value = openai(&model, &openai_body("flaky", &history, false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["choices"][0]["message"]["content"], "recovered");
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_stall_sends_headers_then_nothing_until_the_client_leaves() {
    let model = ScriptedModel::start(hello_script()).await.unwrap();
    model.set_fault(Some(Fault::Stall));
    let response = anthropic(&model, &anthropic_body("create hello.py", &[], true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();
    let next = tokio::time::timeout(Duration::from_millis(300), body.next()).await;
    assert!(next.is_err(), "a stalled stream sends nothing: {next:?}");
    assert_eq!(model.open_streams(), 1);
    drop(body);
    wait_until("the stalled stream ends after the client left", || {
        model.open_streams() == 0
    })
    .await;
}

#[tokio::test]
async fn a_stall_ends_when_the_server_is_dropped() {
    let model = ScriptedModel::start(hello_script()).await.unwrap();
    model.set_fault(Some(Fault::Stall));
    let response = openai(&model, &openai_body("create hello.py", &[], false)).await;
    assert_eq!(response.status(), 200);
    let started = Instant::now();
    drop(model);
    let body = tokio::time::timeout(Duration::from_secs(5), response.bytes())
        .await
        .expect("the stall ends");
    assert!(
        body.is_err(),
        "the connection is dropped, not finished: {body:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_dropped_connection_cuts_the_stream_after_a_partial_reply() {
    let model = ScriptedModel::start(hello_script()).await.unwrap();
    model.set_fault(Some(Fault::DropMidStream));
    for api in [Api::OpenAi, Api::Anthropic] {
        let response = match api {
            Api::OpenAi | Api::Responses => {
                openai(&model, &openai_body("create hello.py", &[], true)).await
            }
            Api::Anthropic => {
                anthropic(&model, &anthropic_body("create hello.py", &[], true)).await
            }
            Api::Gemini => unreachable!("Gemini's drop is tested in gemini_api.rs"),
        };
        assert_eq!(response.status(), 200);
        let mut body = response.bytes_stream();
        let mut received = Vec::new();
        let error = loop {
            match tokio::time::timeout(Duration::from_secs(5), body.next())
                .await
                .expect("no hang")
            {
                Some(Ok(bytes)) => received.extend_from_slice(&bytes),
                Some(Err(error)) => break error,
                None => panic!("{api:?}: the stream ended cleanly instead of dropping"),
            }
        };
        let received = String::from_utf8(received).unwrap();
        assert!(received.contains("Partial"), "{api:?}: {received}");
        assert!(
            !received.contains("[DONE]") && !received.contains("message_stop"),
            "{received}"
        );
        assert!(
            error.is_body() || error.is_decode() || error.is_request(),
            "{error:?}"
        );
    }
    // Non-streaming: a truncated JSON body.
    let response = anthropic(&model, &anthropic_body("create hello.py", &[], false)).await;
    assert!(response.bytes().await.is_err());
}

#[tokio::test]
async fn malformed_sse_has_a_frame_that_is_not_json() {
    let model = ScriptedModel::start(hello_script()).await.unwrap();
    model.set_fault(Some(Fault::MalformedSse));
    let body = openai(&model, &openai_body("create hello.py", &[], true))
        .await
        .text()
        .await
        .unwrap();
    let openai_frames = frames(&body);
    assert!(
        openai_frames
            .iter()
            .any(|f| f.data != "[DONE]" && serde_json::from_str::<Value>(&f.data).is_err()),
        "{body}"
    );
    let body = anthropic(&model, &anthropic_body("create hello.py", &[], true))
        .await
        .text()
        .await
        .unwrap();
    let frames = frames(&body);
    assert!(
        serde_json::from_str::<Value>(&frames[0].data).is_err(),
        "{body}"
    );
    let response = anthropic(&model, &anthropic_body("create hello.py", &[], false)).await;
    assert_eq!(response.status(), 200);
    assert!(response.json::<Value>().await.is_err());
    assert_eq!(model.requests()[2].reply.fault, Some(Fault::MalformedSse));
}

#[tokio::test]
async fn delays_and_slow_streams_take_their_time() {
    let script = Script::new()
        .on(
            "wait",
            vec![Step::text("late").delayed(Duration::from_millis(300))],
        )
        .on(
            "slow",
            vec![Step::slow_text(
                "one two three four five",
                Duration::from_millis(60),
            )],
        );
    let model = ScriptedModel::start(script).await.unwrap();
    let started = Instant::now();
    let reply: Value = anthropic(&model, &anthropic_body("wait", &[], false))
        .await
        .json()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(reply["content"][0]["text"], "late");

    let response = openai(&model, &openai_body("slow", &[], true)).await;
    let mut body = response.bytes_stream();
    let mut received = Vec::new();
    let mut first_chunk_at = None;
    while let Some(chunk) = body.next().await {
        first_chunk_at.get_or_insert_with(Instant::now);
        received.extend_from_slice(&chunk.unwrap());
    }
    // The role chunk comes at once; the five words follow one pause each.
    let streaming = first_chunk_at.unwrap().elapsed();
    assert!(
        streaming >= Duration::from_millis(240),
        "words are paced: {streaming:?}"
    );
    let (text, ..) = openai_parts(&String::from_utf8(received).unwrap());
    assert_eq!(text, "one two three four five");
}

#[tokio::test]
async fn a_slow_stream_stops_when_the_client_leaves() {
    let script = Script::new().fallback(vec![Step::slow_text(
        "word ".repeat(200),
        Duration::from_millis(200),
    )]);
    let model = ScriptedModel::start(script).await.unwrap();
    let response = anthropic(&model, &anthropic_body("anything", &[], true)).await;
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("message_start"));
    assert_eq!(model.open_streams(), 1);
    drop(body);
    wait_until("the slow stream ends after the client left", || {
        model.open_streams() == 0
    })
    .await;
}

#[tokio::test]
async fn garbage_gets_json_errors_not_panics() {
    let model = ScriptedModel::start(hello_script()).await.unwrap();
    let client = client();
    let base = model.base_url();
    let cases: Vec<(reqwest::RequestBuilder, u16, Api)> = vec![
        (
            client
                .post(format!("{base}/v1/chat/completions"))
                .body("not json"),
            400,
            Api::OpenAi,
        ),
        (
            client.post(format!("{base}/v1/chat/completions")).body(""),
            400,
            Api::OpenAi,
        ),
        (
            client
                .post(format!("{base}/v1/chat/completions"))
                .json(&json!({"messages": "x"})),
            400,
            Api::OpenAi,
        ),
        (
            client
                .post(format!("{base}/v1/messages"))
                .body("{\"messages\": [1, 2"),
            400,
            Api::Anthropic,
        ),
        (
            client
                .post(format!("{base}/v1/messages"))
                .json(&json!([1, 2])),
            400,
            Api::Anthropic,
        ),
        (
            client
                .post(format!("{base}/v1/messages/count_tokens"))
                .json(&json!({})),
            400,
            Api::Anthropic,
        ),
        (
            client.get(format!("{base}/v1/messages")),
            405,
            Api::Anthropic,
        ),
        (client.get(format!("{base}/nowhere")), 404, Api::OpenAi),
        (
            client
                .get(format!("{base}/nowhere"))
                .header("anthropic-version", "2023-06-01"),
            404,
            Api::Anthropic,
        ),
    ];
    for (request, status, api) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status);
        let body: Value = response.json().await.unwrap();
        match api {
            Api::OpenAi | Api::Responses => {
                assert!(body["error"]["message"].is_string(), "{body}")
            }
            Api::Anthropic => assert_eq!(body["type"], "error", "{body}"),
            Api::Gemini => assert!(body["error"]["status"].is_string(), "{body}"),
        }
    }
    // Odd but valid JSON is answered.
    let odd = json!({"messages": [null, 1, {"role": "user", "content": {"weird": true}}], "tools": [{"function": 1}], "stream": "yes"});
    let response = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&odd)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = client
        .post(format!("{base}/v1/messages"))
        .json(&odd)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The server is still up.
    assert_eq!(
        openai(&model, &openai_body("create hello.py", &[], false))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn models_and_count_tokens_answer() {
    let model = ScriptedModel::start(Script::new()).await.unwrap();
    let client = client();
    let models: Value = client
        .get(format!("{}/models", model.openai_base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "fake-model");
    assert_eq!(models["object"], "list");
    let models: Value = client
        .get(format!("{}/v1/models", model.base_url()))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["type"], "model");
    // Bun's connectivity check (Claude sends `HEAD /` first).
    assert_eq!(
        client.head(model.base_url()).send().await.unwrap().status(),
        200
    );
    let body = anthropic_body("count me", &[], false);
    let counted: Value = client
        .post(format!(
            "{}/v1/messages/count_tokens?beta=true",
            model.base_url()
        ))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let recorded = model.requests().pop().unwrap();
    assert_eq!(
        counted,
        json!({"input_tokens": 1 + recorded.conversation_text().chars().count() as u64 / 4})
    );
    assert_eq!(recorded.turn, None);
    assert!(model.scripted_requests().is_empty());
}

#[tokio::test]
async fn requests_are_recorded_without_credentials_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.jsonl");
    let model = ScriptedModel::start_with(hello_script(), ServerOptions::new().request_log(&log))
        .await
        .unwrap();
    let waiter = model.wait_for_requests(2, Duration::from_secs(10));
    let requests = async {
        openai(&model, &openai_body("create hello.py", &[], true))
            .await
            .text()
            .await
            .unwrap();
        anthropic(&model, &anthropic_body("create hello.py", &[], false))
            .await
            .text()
            .await
            .unwrap();
    };
    let (recorded, ()) = tokio::join!(waiter, requests);
    assert_eq!(recorded.len(), 2);
    for request in &recorded {
        assert_eq!(request.header("x-session-id"), Some("ses_test"));
        assert_eq!(request.header("authorization"), None);
        assert_eq!(request.header("x-api-key"), None);
        assert!(request.body["messages"].is_array());
    }
    assert!(recorded[0].offered("write") && recorded[1].offered("Write"));
    assert_eq!(recorded.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("not-a-real-key") && !text.contains("also-not-real"));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["api"], "openai");
    assert_eq!(lines[1]["api"], "anthropic");
    assert_eq!(lines[1]["reply"]["tool_call"]["name"], "Write");
    let usage: TokenUsage = serde_json::from_value(lines[1]["reply"]["usage"].clone()).unwrap();
    assert_eq!(Some(usage), recorded[1].reply.usage);
    model.clear_requests();
    assert!(model.requests().is_empty());
}

#[tokio::test]
async fn set_script_takes_effect_and_drop_stops_listening() {
    let model = ScriptedModel::start(Script::new()).await.unwrap();
    let reply: Value = openai(&model, &openai_body("hello.py", &[], false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["choices"][0]["message"]["content"], "Done.");
    model.set_script(
        Script::new()
            .fallback(vec![Step::text("new script")])
            .final_text("Over."),
    );
    let reply: Value = openai(&model, &openai_body("anything", &[], false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["choices"][0]["message"]["content"], "new script");
    let port = model.port();
    assert!(model.openai_base_url().ends_with(&format!(":{port}/v1")));
    drop(model);
    wait_until_refused(port).await;
}

async fn wait_until_refused(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
    {
        assert!(
            Instant::now() < deadline,
            "port {port} still accepts after drop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_tool_less_agent_request_follows_the_script() {
    let model =
        ScriptedModel::start(Script::new().on("summarise", vec![Step::text("A short summary.")]))
            .await
            .unwrap();
    let mut body = openai_body("please summarise this", &[], false);
    body.as_object_mut().unwrap().remove("tools");
    let reply: Value = openai(&model, &body).await.json().await.unwrap();
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "A short summary."
    );
    assert!(!model.requests()[0].side_call);
}
