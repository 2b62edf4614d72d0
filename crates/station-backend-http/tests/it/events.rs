//! The captured real `/event` stream mapped onto core events.

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use station_backend_http::{EventMapper, Progress};
use station_core::{EventKind, EventSink};

use crate::support::{SAMPLE_SESSION, fixture};

#[tokio::test]
async fn sample_event_stream_maps_to_core_events() {
    let bytes = bytes::Bytes::from(fixture("opencode-events.sse"));
    let mut frames =
        futures_util::stream::iter([Ok::<_, std::convert::Infallible>(bytes)]).eventsource();
    let (sink, mut rx) = EventSink::channel();
    let mut mapper = EventMapper::new(SAMPLE_SESSION);
    let mut idle_after_frames = Vec::new();
    let mut count = 0;
    while let Some(frame) = frames.next().await {
        count += 1;
        if mapper.handle_data(&frame.unwrap().data, &sink) == Progress::Idle {
            idle_after_frames.push(count);
        }
    }
    drop(sink);
    let mut events = Vec::new();
    while let Some(ev) = rx.recv().await {
        events.push(ev);
    }
    // The capture holds a sync prompt (write a file, then answer) and a slow prompt that was
    // aborted; idle is announced as `session.status idle` + `session.idle`, once after the first
    // prompt and twice after the abort.
    assert_eq!(count, 125);
    assert_eq!(idle_after_frames, [93, 94, 120, 121, 124, 125]);
    assert!(mapper.errors().iter().any(|e| e.is_abort()));
    let deltas: String = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        deltas.starts_with(
            "I'll create api_hello.py.Created api_hello.py, which prints Hello API.tick tick"
        ),
        "{deltas}"
    );
    insta::assert_yaml_snapshot!(events, { "[].at" => "[at]" });
}
