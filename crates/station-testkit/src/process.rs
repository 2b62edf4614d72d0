//! Process checks for tests: prove that no child outlives its task (Linux `/proc`; empty or
//! false elsewhere).

/// Live (non-zombie) processes whose process group is `pgid`.
pub fn live_group_members(pgid: u32) -> Vec<u32> {
    live_where(|stat| stat.pgrp == pgid)
}

/// Live (non-zombie) processes whose parent is `pid`.
pub fn live_children_of(pid: u32) -> Vec<u32> {
    live_where(|stat| stat.ppid == pid)
}

/// Whether `pid` is a live (non-zombie) process.
pub fn is_alive(pid: u32) -> bool {
    stat_of(pid).is_some_and(|s| s.alive)
}

struct Stat {
    alive: bool,
    ppid: u32,
    pgrp: u32,
}

fn live_where(matches: impl Fn(&Stat) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat_of(*pid).is_some_and(|s| s.alive && matches(&s)))
        .collect()
}

fn stat_of(pid: u32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = *fields.first()?;
    Some(Stat {
        alive: state != "Z" && state != "X",
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
    })
}
