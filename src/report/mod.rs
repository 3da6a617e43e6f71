//! The only module that writes to the terminal. stdout carries data (tables, `--json`, paths); stderr
//! carries status, warnings, hints and errors. Colour follows `--color`, then `NO_COLOR`, then whether the
//! stream is a terminal, and never carries meaning alone.

pub mod progress;
pub mod prompt;
pub mod table;

use std::io::Write;

use console::Style;
use serde::Serialize;

use crate::cli::{ColorChoice, OutputArgs};
use crate::compose::Tier;

/// Writes everything the user sees.
#[derive(Debug, Clone)]
pub struct Printer {
    json: bool,
    quiet: bool,
    verbose: bool,
    color_stdout: bool,
    color_stderr: bool,
}

impl Printer {
    pub fn new(output: &OutputArgs) -> Printer {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let decide = |is_tty: bool| match output.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => !no_color && is_tty,
        };
        Printer {
            json: output.json,
            quiet: output.quiet,
            verbose: output.verbose,
            color_stdout: decide(console::Term::stdout().is_term()),
            color_stderr: decide(console::Term::stderr().is_term()),
        }
    }

    /// A printer for errors that happen before arguments are parsed.
    pub fn plain() -> Printer {
        Printer::new(&OutputArgs::default())
    }

    /// The same printer without `--json`: for a command run inside another whose own JSON is the output.
    pub fn without_json(&self) -> Printer {
        Printer {
            json: false,
            ..self.clone()
        }
    }

    pub fn json_mode(&self) -> bool {
        self.json
    }

    /// Whether progress bars may be drawn: stderr is a terminal, and neither `--quiet` nor `--json`.
    pub fn progress_enabled(&self) -> bool {
        !self.quiet && !self.json && console::Term::stderr().is_term()
    }

    pub fn color_stdout(&self) -> bool {
        self.color_stdout
    }

    /// A status line on stderr ("Loaded 2 Compose files"); hidden by `--quiet`.
    pub fn status(&self, message: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", message.as_ref());
        }
    }

    /// A line only `--verbose` shows.
    pub fn verbose(&self, message: impl AsRef<str>) {
        if self.verbose {
            let style = self.err_style(Style::new().dim());
            eprintln!("{}", style.apply_to(message.as_ref()));
        }
    }

    /// `warning: …` on stderr; shown even with `--quiet`.
    pub fn warn(&self, message: impl AsRef<str>) {
        let label = self.err_style(Style::new().yellow().bold());
        eprintln!("{} {}", label.apply_to("warning:"), message.as_ref());
    }

    /// `error: …` with its causes, then `hint: …` lines.
    pub fn error(&self, message: &str, causes: &[String], hints: &[String]) {
        let label = self.err_style(Style::new().red().bold());
        let hint = self.err_style(Style::new().cyan().bold());
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{} {message}", label.apply_to("error:"));
        for cause in causes {
            let _ = writeln!(err, "  caused by: {cause}");
        }
        for h in hints {
            let _ = writeln!(err, "{} {h}", hint.apply_to("hint:"));
        }
    }

    /// Data on stdout, as is.
    pub fn data(&self, text: impl AsRef<str>) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_ref().as_bytes());
        let _ = out.flush();
    }

    /// A JSON document on stdout.
    pub fn json<T: Serialize>(&self, value: &T) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(value)?;
        text.push('\n');
        self.data(text);
        Ok(())
    }

    /// A tier name styled for stdout (colour adds to the word, never replaces it).
    pub fn tier(&self, tier: Tier) -> String {
        let style = match tier {
            Tier::Critical => Style::new().red().bold(),
            Tier::Important => Style::new().yellow(),
            Tier::Regenerable => Style::new().green(),
            Tier::Optional => Style::new().dim(),
        };
        self.out_style(style).apply_to(tier.as_str()).to_string()
    }

    /// Dim text on stdout, for secondary columns.
    pub fn dim(&self, text: &str) -> String {
        self.out_style(Style::new().dim())
            .apply_to(text)
            .to_string()
    }

    fn out_style(&self, style: Style) -> Style {
        style.force_styling(self.color_stdout)
    }

    fn err_style(&self, style: Style) -> Style {
        style.force_styling(self.color_stderr)
    }
}

/// Bytes as people read them: `48.2 MB`.
pub fn human_size(bytes: u64) -> String {
    humansize::format_size(bytes, humansize::DECIMAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_decimal_with_units() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(48_200_000), "48.20 MB");
    }
}
