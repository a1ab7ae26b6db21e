//! The side-by-side review before a prescription is written: two columns when the
//! terminal is wide enough, stacked ("in force:" / "new:" under each row) when not.

use thecal_host::view::ComparisonRow;

use super::{pad, width};

/// The width of the terminal the output goes to: `COLUMNS` if it is set to a number,
/// else the width of the terminal on stdout, else 80 (a pipe or a file).
fn terminal_columns() -> usize {
    let from_env = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|c| *c > 0);
    from_env
        .or_else(|| {
            console::Term::stdout()
                .size_checked()
                .map(|(_, cols)| usize::from(cols))
        })
        .unwrap_or(80)
}

/// Old and new side by side; changed rows are marked with `◀`. When the terminal is too
/// narrow for the two columns, each row is stacked instead: its label, then its
/// `in force:` and `new:` lines (see [`comparison_lines`]).
pub fn side_by_side(
    old_title: &str,
    new_title: &str,
    rows: &[ComparisonRow],
) -> std::io::Result<()> {
    for line in comparison_lines(old_title, new_title, rows, terminal_columns()) {
        outln!("{line}")?;
    }
    Ok(())
}

const CHANGED: &str = "  ◀ changed";

/// The comparison as lines of at most `columns` characters where the text allows: two
/// columns if they fit, else stacked. A value is never cut: a line too long for the
/// terminal is wrapped between words, never inside a quantity (`220 µg/day` stays on
/// one line), and a single word longer than the line is printed whole.
fn comparison_lines(
    old_title: &str,
    new_title: &str,
    rows: &[ComparisonRow],
    columns: usize,
) -> Vec<String> {
    let wide = two_columns(old_title, new_title, rows);
    if wide.iter().all(|l| width(l) <= columns) {
        wide
    } else {
        stacked(old_title, new_title, rows, columns)
    }
}

fn two_columns(old_title: &str, new_title: &str, rows: &[ComparisonRow]) -> Vec<String> {
    let column = |title: &str, lines: &dyn Fn(&ComparisonRow) -> &[String]| {
        rows.iter()
            .flat_map(|r| lines(r).iter().map(|l| width(l)))
            .chain([width(title)])
            .max()
            .unwrap_or(0)
    };
    let lw = rows.iter().map(|r| width(&r.label)).max().unwrap_or(0);
    let ow = column(old_title, &|r| &r.old);
    let nw = column(new_title, &|r| &r.new);
    let mut out = vec![
        format!("{}  {}  │ {}", pad("", lw), pad(old_title, ow), new_title)
            .trim_end()
            .to_string(),
        format!(
            "{}──{}──┼─{}",
            "─".repeat(lw),
            "─".repeat(ow),
            "─".repeat(nw)
        ),
    ];
    for r in rows {
        let n = r.old.len().max(r.new.len()).max(1);
        for i in 0..n {
            let label = if i == 0 { r.label.as_str() } else { "" };
            let old = r.old.get(i).map_or("", |s| s.as_str());
            let new = r.new.get(i).map_or("", |s| s.as_str());
            let mark = if i == 0 && r.changed() { CHANGED } else { "" };
            let line = format!(
                "{}  {}  │ {}{}",
                pad(label, lw),
                pad(old, ow),
                pad(new, nw),
                mark
            );
            out.push(line.trim_end().to_string());
        }
    }
    out
}

/// The short name of a column title: `in force (revision 3)` → `in force`.
fn short_title(title: &str) -> &str {
    title.split(" (").next().unwrap_or(title).trim()
}

fn stacked(
    old_title: &str,
    new_title: &str,
    rows: &[ComparisonRow],
    columns: usize,
) -> Vec<String> {
    let names = [short_title(old_title), short_title(new_title)];
    let name_w = names.iter().map(|n| width(n)).max().unwrap_or(0) + 1;
    let indent = 2 + name_w + 1;
    let heading = format!("{old_title} │ {new_title}");
    let mut out = vec![heading.clone(), "─".repeat(width(&heading).min(columns))];
    // A row whose label is indented belongs to the one above (`  with every allowed
    // bolus` under `Low-reservoir alarm date`): stacked, it says whose it is.
    let mut parent = "";
    for r in rows {
        let mark = if r.changed() { CHANGED } else { "" };
        let own = r.label.trim_start();
        let label = if own.len() == r.label.len() || parent.is_empty() {
            parent = r.label.as_str();
            own.to_string()
        } else {
            format!("{parent}, {own}")
        };
        let mut pieces = wrap(&label, columns);
        match pieces.last_mut() {
            Some(last) if width(last) + width(mark) <= columns => last.push_str(mark),
            _ if !mark.is_empty() => pieces.push(mark.trim_start().to_string()),
            _ => {}
        }
        out.extend(pieces);
        for (name, lines) in names.iter().zip([&r.old, &r.new]) {
            let mut prefix = format!("  {}", pad(&format!("{name}:"), name_w));
            if lines.is_empty() {
                out.push(format!("{prefix} (none)"));
            }
            for line in lines.iter() {
                for part in wrap(line, columns.saturating_sub(indent)) {
                    out.push(format!("{prefix} {part}").trim_end().to_string());
                    prefix = " ".repeat(indent - 1);
                }
            }
        }
    }
    out
}

/// `text` in pieces of at most `max` characters, broken only at spaces, and never at
/// the single space after a digit (a number keeps its unit: `220 µg/day`, `in 40 days`);
/// the spacing inside a piece is kept, and a piece that cannot be broken is kept whole,
/// however long.
fn wrap(text: &str, max: usize) -> Vec<String> {
    if width(text) <= max {
        return vec![text.to_string()];
    }
    // (spaces before, word) pairs; a word may hold the unbreakable spaces.
    let chars: Vec<char> = text.chars().collect();
    let mut words: Vec<(String, String)> = Vec::new();
    let (mut gap, mut word) = (String::new(), String::new());
    for (i, c) in chars.iter().enumerate() {
        let after_digit = i
            .checked_sub(1)
            .and_then(|p| chars.get(p))
            .is_some_and(char::is_ascii_digit);
        let single = chars.get(i + 1).is_some_and(|n| *n != ' ');
        if *c == ' ' && !(after_digit && single) {
            if !word.is_empty() {
                words.push((std::mem::take(&mut gap), std::mem::take(&mut word)));
            }
            gap.push(' ');
        } else {
            word.push(*c);
        }
    }
    if !word.is_empty() {
        words.push((gap, word));
    }
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for (gap, w) in words {
        if line.is_empty() {
            line = w;
        } else if width(&line) + width(&gap) + width(&w) > max {
            lines.push(std::mem::replace(&mut line, w));
        } else {
            line.push_str(&gap);
            line.push_str(&w);
        }
    }
    lines.push(line);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, old: &[&str], new: &[&str]) -> ComparisonRow {
        ComparisonRow {
            label: label.into(),
            old: old.iter().map(|s| s.to_string()).collect(),
            new: new.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn review_rows() -> Vec<ComparisonRow> {
        vec![
            row("Drug", &["baclofen"], &["ziconotide"]),
            row(
                "Steps (Mon–Fri)",
                &[
                    "00:00  220 µg/day  (0.44 mL/day)",
                    "07:00  160 µg/day  (0.32 mL/day)",
                ],
                &["00:00  2.4 µg/day  (0.096 mL/day)"],
            ),
            row(
                "Patient bolus",
                &["25 µg per bolus, lockout 2 h, at most 4 per 24 h"],
                &["not allowed"],
            ),
            row("Mode", &["flexible"], &["flexible"]),
            row("Alarm date", &["Monday"], &["Tuesday"]),
            row("  with every allowed bolus", &["Sunday"], &["Monday"]),
        ]
    }

    #[test]
    fn the_review_keeps_two_columns_when_they_fit_and_stacks_them_when_not() {
        let rows = review_rows();
        let wide = comparison_lines("in force (revision 1)", "new", &rows, 200);
        assert!(wide.iter().any(|l| l.contains("│ ziconotide")), "{wide:#?}");
        // The new column is as wide as its own longest line (the ruler too).
        let ruler = wide.get(1).unwrap();
        let longest = wide.iter().map(|l| width(l)).max().unwrap();
        assert!(width(ruler) <= longest, "{wide:#?}");
        let narrow = comparison_lines("in force (revision 1)", "new", &rows, 80);
        assert!(narrow.iter().all(|l| width(l) <= 80), "{narrow:#?}");
        let text = narrow.join("\n");
        for needle in [
            "Drug  ◀ changed\n  in force: baclofen\n  new:      ziconotide",
            "  in force: 00:00  220 µg/day  (0.44 mL/day)\n            07:00  160 µg/day",
            "  new:      00:00  2.4 µg/day  (0.096 mL/day)",
            "Mode\n  in force: flexible\n  new:      flexible",
            "Alarm date, with every allowed bolus  ◀ changed\n  in force: Sunday",
        ] {
            assert!(text.contains(needle), "{needle:?} missing:\n{text}");
        }
    }

    #[test]
    fn a_long_value_wraps_between_words_never_inside_a_quantity() {
        let rows = review_rows();
        let lines = comparison_lines("in force (revision 1)", "new", &rows, 40);
        let text = lines.join("\n");
        assert!(lines.iter().all(|l| width(l) <= 40), "{text}");
        for kept in ["25 µg", "2 h", "4 per", "24 h", "220 µg/day", "0.44 mL/day"] {
            assert!(text.contains(kept), "{kept:?} split:\n{text}");
        }
        // Narrower than a word: the word is printed whole, not cut.
        assert_eq!(wrap("0.096 mL/day", 3), vec!["0.096 mL/day".to_string()]);
        assert_eq!(
            wrap("00:00  2.4 µg/day  (0.096 mL/day)", 16),
            vec!["00:00", "2.4 µg/day", "(0.096 mL/day)"]
        );
        assert_eq!(wrap("short", 80), vec!["short"]);
    }
}
