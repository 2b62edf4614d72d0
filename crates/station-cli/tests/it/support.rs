use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// `stn` with an isolated HOME, config dir and data dir, and no inherited station settings.
pub(crate) fn stn(home: &Path) -> Command {
    let mut cmd = Command::cargo_bin("stn").expect("stn is built");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("STN_DATA_DIR", home.join("data"))
        .current_dir(home);
    cmd
}

pub(crate) fn agents_testdata(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../station-core/testdata/agents")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}
