//! The frame every screen is drawn in: the pump's identity, the navigation, the
//! messages; and the pieces screens share (fields, alarms, the side-by-side review, the
//! confirmation form).

use maud::{html, Markup, PreEscaped, DOCTYPE};
use thecal_host::report::Review;

/// The screens, in the order of the navigation: path, name.
const SCREENS: [(&str, &str); 9] = [
    ("/", "Interrogation"),
    ("/prescription", "Prescription"),
    ("/schedule", "Schedule"),
    ("/refill", "Refill"),
    ("/bolus", "Bolus"),
    ("/therapy", "Stop / resume / clock"),
    ("/log", "Event log"),
    ("/link", "Link"),
    ("/report", "Session report"),
];

/// What the header says about the pump.
pub struct Banner {
    /// `duplex TH-0001`.
    pub pump: String,
    /// `baclofen 500 µg/mL`.
    pub drug: String,
    /// `clinician`.
    pub role: String,
    /// Why the session report could not be saved in the records, if it could not.
    pub unsaved: Option<String>,
}

/// A whole page: `title`, the screen at `path` highlighted, `body` inside.
pub fn page(banner: &Banner, path: &str, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — thecal programmer" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header.banner {
                    span.brand { "thecal" }
                    span.pump data-testid="pump" { (banner.pump) }
                    span.drug { (banner.drug) }
                    span.role { "as " (banner.role) }
                    form.end method="post" action="/end" {
                        button type="submit" { "End session" }
                    }
                }
                nav {
                    @for (href, name) in SCREENS {
                        a href=(href) class=[(href == path).then_some("here")] { (name) }
                    }
                }
                main {
                    @if let Some(e) = &banner.unsaved {
                        (warning(&format!("the session report is NOT saved in the session records: {e}; print the report before ending the session")))
                    }
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page that stands alone (no pump behind it: refused, ended).
pub fn bare(title: &str, text: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " — thecal programmer" }
                style { (PreEscaped(CSS)) }
            }
            body { main { h1 { (title) } p { (text) } } }
        }
    }
}

/// Label–value rows.
pub fn fields(rows: &[(&str, String)]) -> Markup {
    html! {
        dl.fields {
            @for (k, v) in rows {
                dt { (k) } dd { (v) }
            }
        }
    }
}

/// An error box: what went wrong and, if any, what to do.
pub fn problem(text: &str) -> Markup {
    html! { div.problem role="alert" data-testid="problem" { (text) } }
}

/// A warning box the clinician must read before confirming.
pub fn warning(text: &str) -> Markup {
    html! { div.warning role="alert" { "WARNING: " (text) } }
}

/// A success box.
pub fn done(text: &str) -> Markup {
    html! { div.done role="status" data-testid="done" { (text) } }
}

/// Old and new side by side, changed rows marked (the comparison's rows include both
/// low-reservoir alarm dates, nominal and with every allowed bolus).
pub fn review(r: &Review, old_title: &str, new_title: &str) -> Markup {
    html! {
        table.review data-testid="review" {
            thead { tr { th { "" } th { (old_title) } th { (new_title) } } }
            tbody {
                @for row in &r.rows {
                    tr class=[row.changed.then_some("changed")] {
                        th { (row.label) }
                        td { @for l in &row.old { (l) br; } }
                        td { @for l in &row.new { (l) br; } }
                    }
                }
            }
        }
    }
}

/// The confirmation step: the server holds the plan under `nonce`; this form carries it
/// back. Nothing is sent to the pump before this form is posted.
pub fn confirm(nonce: &str, question: &str, button: &str) -> Markup {
    html! {
        form.confirm method="post" action="/confirm" {
            input type="hidden" name="nonce" value=(nonce);
            p { strong { (question) } }
            button.primary type="submit" name="confirm" value="yes" data-testid="confirm" { (button) }
            " "
            a href="/" { "Cancel" }
        }
    }
}

/// An RFC 3339 time as the screens show it: `2026-12-03 14:05 (+01:00)`.
pub fn date(rfc3339: &str) -> String {
    match (
        rfc3339.get(..10),
        rfc3339.get(11..16),
        rfc3339.get(rfc3339.len().saturating_sub(6)..),
    ) {
        (Some(d), Some(t), Some(z)) if rfc3339.len() >= 22 => format!("{d} {t} ({z})"),
        _ => rfc3339.to_string(),
    }
}

/// The style sheet (also the final report's).
pub fn css() -> &'static str {
    CSS
}

const CSS: &str = r#"
:root { --ink:#1b2430; --muted:#5b6675; --line:#d5dae1; --accent:#0b5cad; --bad:#a4161a; --warn:#8a5a00; --good:#1f6f3a; }
* { box-sizing: border-box; }
body { margin:0; font: 16px/1.45 system-ui, "DejaVu Sans", sans-serif; color:var(--ink); background:#f5f7fa; }
header.banner { display:flex; gap:1em; align-items:center; padding:.6em 1em; background:#14324f; color:#fff; flex-wrap:wrap; }
header .brand { font-weight:700; letter-spacing:.05em; }
header .pump { font-weight:600; }
header form.end { margin-left:auto; }
header button { background:#fff; color:#14324f; border:0; padding:.35em .8em; border-radius:4px; cursor:pointer; }
nav { display:flex; flex-wrap:wrap; gap:.2em; padding:.4em 1em; background:#fff; border-bottom:1px solid var(--line); }
nav a { padding:.45em .8em; border-radius:4px; color:var(--accent); text-decoration:none; }
nav a.here { background:var(--accent); color:#fff; }
main { max-width:1100px; margin:0 auto; padding:1em 1.2em 3em; }
h1 { font-size:1.5em; margin:.4em 0 .6em; } h2 { font-size:1.15em; margin:1.2em 0 .4em; }
dl.fields { display:grid; grid-template-columns:max-content 1fr; gap:.25em 1.2em; background:#fff; padding:.8em 1em; border:1px solid var(--line); border-radius:6px; }
dl.fields dt { color:var(--muted); } dl.fields dd { margin:0; font-weight:500; }
table { border-collapse:collapse; background:#fff; width:100%; }
th, td { text-align:left; vertical-align:top; padding:.35em .6em; border:1px solid var(--line); }
table.review tr.changed td { background:#fff4d6; font-weight:600; }
table.review tr.alarm td { background:#eef5ff; font-weight:600; }
.problem { border-left:5px solid var(--bad); background:#fdecec; padding:.7em 1em; margin:.8em 0; white-space:pre-wrap; }
.warning { border-left:5px solid var(--warn); background:#fff4d6; padding:.7em 1em; margin:.8em 0; font-weight:600; }
.done { border-left:5px solid var(--good); background:#e8f5ec; padding:.7em 1em; margin:.8em 0; }
.critical { color:var(--bad); font-weight:700; }
form.stack label { display:block; margin:.6em 0 .2em; font-weight:600; }
form.stack label.day, form.stack label.check { display:inline-block; font-weight:400; margin:.3em 1em .3em 0; }
form.stack label.check { display:block; }
.group { border-top:1px solid var(--line); margin-top:.6em; }
.group h3 { font-size:1em; margin:.6em 0 .2em; }
input[type=text], select, textarea { font:inherit; padding:.4em .5em; border:1px solid #9aa4b1; border-radius:4px; min-width:12em; }
input.bad, textarea.bad { border:2px solid var(--bad); background:#fdecec; }
.hint { color:var(--muted); font-size:.9em; }
.fieldmsg { color:var(--bad); font-weight:600; font-size:.95em; }
button { font:inherit; padding:.5em 1.1em; border-radius:5px; border:1px solid #9aa4b1; background:#fff; cursor:pointer; }
button.primary { background:var(--accent); color:#fff; border-color:var(--accent); }
fieldset { border:1px solid var(--line); border-radius:6px; background:#fff; margin:.8em 0; }
.steps td input { min-width:7em; }
.plot { background:#fff; border:1px solid var(--line); border-radius:6px; padding:.5em; max-width:100%; }
@media print { header.banner, nav, form, .noprint { display:none !important; } body { background:#fff; } main { max-width:none; } }
"#;
