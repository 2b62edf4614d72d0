//! The scripted fake ACP agent (`fake-acp-agent`, a binary of this crate) for the corner cases
//! real agents do not produce on demand. Its behaviour is chosen with `FAKE_ACP_MODE`:
//!
//! | mode | what it does |
//! |---|---|
//! | `ok` | answers everything; a prompt gets `fake answer` and `end_turn`; the model option refuses `no-such-model` |
//! | `garbage` | prints lines that are not JSON-RPC and never answers `initialize` |
//! | `crash` | a prompt gets one chunk, then the agent exits 3 with a message on stderr |
//! | `hang` | a prompt is never answered, and `session/cancel` is ignored |
//! | `storm` | a prompt sends `FAKE_ACP_STORM` (default 500) permission requests, then answers how many were allowed |
//! | `permission` | a prompt sends one permission request for `FAKE_ACP_TOOL_CALL` (JSON; default: the command `rm -rf data`) with options `always`, `yes`, `no`, and answers `selected <optionId>` or the outcome |
//! | `huge` | a prompt gets one 10 MB update |
//! | `unknown` | a prompt gets an update of an unknown kind, then `after unknown` |
//! | `terminal` | a prompt runs `printf 0123456789` through `terminal/*` with a 4-byte output limit and answers what it got |
//! | `write_outside` | a prompt asks the client to write `FAKE_ACP_PATH` and answers with the result |

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use station_core::process::CommandSpec;

use crate::peers::repo_root;

/// The `fake-acp-agent` binary, built once per test process (`cargo build -p station-testkit
/// --bin fake-acp-agent`), because a dependency's binaries are not built for other crates' tests.
pub fn fake_acp_agent_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target"));
        let spec = CommandSpec::new(env!("CARGO"), repo_root()).args([
            "build",
            "--quiet",
            "-p",
            "station-testkit",
            "--bin",
            "fake-acp-agent",
        ]);
        // A runtime of its own on its own thread: callers are often inside a runtime.
        std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime to build the fake agent")
                    .block_on(spec.output(Duration::from_secs(600), None))
            })
            .join()
            .expect("building the fake agent")
        })
        .unwrap_or_else(|e| panic!("building fake-acp-agent failed: {e}"));
        let bin = target.join("debug/fake-acp-agent");
        assert!(bin.is_file(), "fake-acp-agent is not at {}", bin.display());
        bin
    })
    .clone()
}
