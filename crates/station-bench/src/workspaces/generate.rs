//! Generated workspaces for the workspace benchmarks: seeded, so every run writes the same
//! bytes. A git repository of mixed text and binary files with ignored build output, or a
//! plain tree of many small text files.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use station_core::process::CommandSpec;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// Files that change tracking sees (ignored build output not counted).
    pub(crate) files: usize,
    /// Size range of a text file, in bytes.
    pub(crate) text_bytes: (usize, usize),
    /// Every n-th file is binary (none when 0).
    pub(crate) binary_every: usize,
    /// Bytes shared by all binary files (sizes vary around the mean).
    pub(crate) binary_total: u64,
    /// Files written under the ignored `target/` (build output).
    pub(crate) ignored_files: usize,
    /// A git repository with every file committed (else a plain directory).
    pub(crate) git: bool,
    pub(crate) seed: u64,
}

/// What was generated.
#[derive(Debug, Clone)]
pub(crate) struct Generated {
    pub(crate) root: PathBuf,
    pub(crate) files: usize,
    pub(crate) bytes: u64,
    /// A text file the benchmark's task edits (relative).
    pub(crate) edit: String,
}

/// splitmix64: small, fast and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi.saturating_sub(lo) as u64 + 1)) as usize
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

const WORDS: [&str; 12] = [
    "let",
    "value",
    "workspace",
    "fn",
    "return",
    "tree",
    "index",
    "match",
    "self",
    "patch",
    "file",
    "=",
];

fn text(rng: &mut Rng, len: usize, out: &mut Vec<u8>) {
    out.clear();
    while out.len() < len {
        let words = rng.between(3, 10);
        for w in 0..words {
            if w > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(WORDS[rng.between(0, WORDS.len() - 1)].as_bytes());
        }
        let _ = writeln!(out, " {};", rng.next() % 100_000);
    }
    out.truncate(len.max(1));
    if out.last() != Some(&b'\n') {
        out.push(b'\n');
    }
}

/// Write `shape` under `root` (which must not exist yet). Blocking, except for git.
pub(crate) async fn generate(root: &Path, shape: Shape) -> anyhow::Result<Generated> {
    let (root_owned, s) = (root.to_path_buf(), shape);
    let (files, bytes, edit) = tokio::task::spawn_blocking(move || write_files(&root_owned, s))
        .await
        .context("generating the workspace")??;
    if shape.git {
        commit_all(root).await?;
    }
    Ok(Generated {
        root: root.to_path_buf(),
        files,
        bytes,
        edit,
    })
}

fn write_files(root: &Path, shape: Shape) -> anyhow::Result<(usize, u64, String)> {
    let mut rng = Rng(shape.seed);
    let binaries = shape.files.checked_div(shape.binary_every).unwrap_or(0);
    let binary_mean = shape.binary_total.checked_div(binaries as u64).unwrap_or(0) as usize;
    let mut buf = Vec::new();
    let (mut count, mut bytes) = (1usize, 0u64);
    let gitignore = "/target/\n*.log\n";
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    std::fs::write(root.join(".gitignore"), gitignore)?;
    bytes += gitignore.len() as u64;
    let mut made_dir = None;
    for i in 0..shape.files.saturating_sub(1) {
        let dir_n = i / 100;
        let binary = shape.binary_every > 0 && i % shape.binary_every == shape.binary_every - 1;
        let rel = if binary {
            format!("assets/d{dir_n:04}/b{i:06}.bin")
        } else {
            format!("src/d{dir_n:04}/f{i:06}.rs")
        };
        let path = root.join(&rel);
        let parent = path.parent().expect("a file has a directory").to_path_buf();
        if made_dir.as_ref() != Some(&parent) {
            std::fs::create_dir_all(&parent)?;
            made_dir = Some(parent);
        }
        if binary {
            buf.resize(rng.between(binary_mean / 2, binary_mean * 3 / 2), 0);
            rng.fill(&mut buf);
        } else {
            let len = rng.between(shape.text_bytes.0, shape.text_bytes.1);
            text(&mut rng, len, &mut buf);
        }
        std::fs::write(&path, &buf).with_context(|| format!("writing {}", path.display()))?;
        count += 1;
        bytes += buf.len() as u64;
    }
    // Build output the workspace ignores: never part of a snapshot.
    for i in 0..shape.ignored_files {
        let path = root.join(format!("target/debug/deps/o{i:05}.o"));
        if i == 0 {
            std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        }
        buf.resize(16 * 1024, 0);
        rng.fill(&mut buf);
        std::fs::write(&path, &buf)?;
    }
    if shape.ignored_files > 0 {
        std::fs::write(root.join("build.log"), "compiling\n")?;
    }
    Ok((count, bytes, "src/d0000/f000000.rs".to_string()))
}

async fn commit_all(root: &Path) -> anyhow::Result<()> {
    let git = |args: &[&str]| {
        CommandSpec::new("git", root)
            .args([
                "-c",
                "user.name=Station Bench",
                "-c",
                "user.email=bench@station.invalid",
                "-c",
                "core.compression=1",
                "-c",
                "gc.auto=0",
            ])
            .args(args)
    };
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &["commit", "-q", "-m", "generated"],
    ] {
        git(args)
            .output(Duration::from_secs(600), None)
            .await
            .with_context(|| format!("git {} in {}", args.join(" "), root.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_same_seed_writes_the_same_files() {
        let shape = Shape {
            files: 50,
            text_bytes: (100, 400),
            binary_every: 10,
            binary_total: 20_000,
            ignored_files: 3,
            git: false,
            seed: 7,
        };
        let dir = tempfile::tempdir().unwrap();
        let a = generate(&dir.path().join("a"), shape).await.unwrap();
        let b = generate(&dir.path().join("b"), shape).await.unwrap();
        assert_eq!((a.files, a.bytes), (b.files, b.bytes));
        assert_eq!(a.files, 50);
        let read = |g: &Generated, rel: &str| std::fs::read(g.root.join(rel)).unwrap();
        assert_eq!(
            read(&a, "assets/d0000/b000009.bin"),
            read(&b, "assets/d0000/b000009.bin")
        );
        assert_eq!(read(&a, &a.edit), read(&b, &b.edit));
        assert!(a.root.join("target/debug/deps/o00002.o").is_file());
    }
}
