//! Asking for a password on the terminal without showing it, as `passwd` and `htpasswd` do:
//! the prompt goes to standard error (standard output carries the result), echo is off while
//! the line is typed and restored however the read ends.

use anyhow::Context;
use rustix::termios::{LocalModes, OptionalActions, Termios, tcgetattr, tcsetattr};
use std::io::{BufRead, Write};
use std::os::fd::AsFd;
use zeroize::Zeroizing;

/// Asks twice and returns the password if both answers are the same.
pub fn twice() -> anyhow::Result<Zeroizing<String>> {
    let first = ask("Password: ")?;
    let again = ask("Password again: ")?;
    if first != again {
        anyhow::bail!("the two passwords differ; nothing was hashed");
    }
    Ok(first)
}

/// Restores the terminal's modes when dropped.
struct Restore<'a> {
    stdin: &'a std::io::Stdin,
    saved: Termios,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let _ = tcsetattr(self.stdin.as_fd(), OptionalActions::Now, &self.saved);
    }
}

/// Asks once, without echo.
pub fn ask(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    let stdin = std::io::stdin();
    let saved = tcgetattr(stdin.as_fd()).context("reading the terminal's settings")?;
    let mut quiet = saved.clone();
    // No echo of what is typed, but the newline that ends it, so the next prompt starts on a
    // line of its own.
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    // Off before the prompt shows: nothing typed after it is ever echoed.
    tcsetattr(stdin.as_fd(), OptionalActions::Now, &quiet)
        .context("turning the terminal's echo off")?;
    let _restore = Restore {
        stdin: &stdin,
        saved,
    };
    let mut err = std::io::stderr().lock();
    err.write_all(prompt.as_bytes())
        .and_then(|()| err.flush())
        .context("writing the prompt")?;
    let mut line = Zeroizing::new(String::new());
    let read = stdin
        .lock()
        .read_line(&mut line)
        .context("reading the password")?;
    if read == 0 {
        anyhow::bail!("no password typed (end of input)");
    }
    let typed = line
        .strip_suffix('\n')
        .map_or(line.as_str(), |p| p.strip_suffix('\r').unwrap_or(p));
    Ok(Zeroizing::new(typed.to_string()))
}
