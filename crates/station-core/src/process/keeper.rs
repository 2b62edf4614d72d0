//! Children die with this process, even when it is killed outright (SIGKILL, OOM).
//!
//! Each child asks the kernel for SIGKILL when its parent dies (`PR_SET_PDEATHSIG`). Linux
//! sends that signal when the *thread* that forked the child exits, and tokio's blocking
//! threads come and go, so every child is forked from one thread that lives as long as the
//! process.

use std::io;
use std::sync::LazyLock;
use std::sync::mpsc;

use nix::sys::signal::Signal;
use tokio::process::{Child, Command};
use tokio::runtime::Handle;

type Job = (Command, Handle, mpsc::SyncSender<io::Result<Child>>);

static SPAWNER: LazyLock<io::Result<mpsc::Sender<Job>>> = LazyLock::new(|| {
    let (jobs, queue) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("stn-child-spawner".into())
        .spawn(move || {
            for (mut command, runtime, reply) in queue {
                // The child is registered with the caller's runtime, which reaps it.
                let _entered = runtime.enter();
                let _ = reply.send(command.spawn());
            }
        })?;
    Ok(jobs)
});

/// Spawn `command` (inside a tokio runtime) so that it is killed when this process dies.
pub(super) fn spawn(mut command: Command) -> io::Result<Child> {
    die_with_parent(&mut command);
    let runtime = Handle::try_current().map_err(io::Error::other)?;
    let spawner = SPAWNER
        .as_ref()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start the spawner thread: {e}")))?;
    let (reply, answer) = mpsc::sync_channel(1);
    spawner
        .send((command, runtime, reply))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec. It only makes two
    // async-signal-safe system calls (prctl, getppid) and builds errors from raw OS codes, which
    // does not allocate.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            // The parent may have died between fork and prctl.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::from(nix::errno::Errno::ESRCH));
            }
            Ok(())
        });
    }
}
