//! Questions to the user, only on a terminal. Off a terminal a command that needs an answer refuses and
//! names the flag that gives it (`--yes`).

use anyhow::Context as _;
use dialoguer::theme::ColorfulTheme;
use dialoguer::{Confirm, Input, Select};

/// Whether questions can be asked: stdin and stderr are both terminals.
pub fn interactive() -> bool {
    console::Term::stderr().is_term()
        && console::user_attended_stderr()
        && std::io::IsTerminal::is_terminal(&std::io::stdin())
}

/// Asks a yes/no question on stderr; the default answer is no.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    Confirm::with_theme(&ColorfulTheme::default())
        .with_prompt(question)
        .default(false)
        .interact_on(&console::Term::stderr())
        .context("failed to read the answer")
}

/// Lets the user pick one of `items`; `None` when they cancel (Esc, q).
pub fn select(prompt: &str, items: &[String]) -> anyhow::Result<Option<usize>> {
    Select::with_theme(&ColorfulTheme::default())
        .with_prompt(prompt)
        .items(items)
        .default(0)
        .interact_on_opt(&console::Term::stderr())
        .context("failed to read the choice")
}

/// Asks for `expected` to be typed (for the most destructive actions); `true` only when it was, exactly.
pub fn type_to_confirm(prompt: &str, expected: &str) -> anyhow::Result<bool> {
    let typed: String = Input::with_theme(&ColorfulTheme::default())
        .with_prompt(prompt)
        .allow_empty(true)
        .interact_text_on(&console::Term::stderr())
        .context("failed to read the answer")?;
    Ok(typed.trim() == expected)
}
