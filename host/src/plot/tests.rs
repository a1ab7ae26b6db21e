//! The plots rendered to SVG and read back as text: titles, labels and marks present,
//! every text inside the picture.

use super::reservoir::HALTED_SPAN_MS;
use super::*;
use thecal_protocol::message::{AlarmKind, TherapyState};
use thecal_protocol::projection::{project, ReservoirState};
use thecal_protocol::time::{Timestamp, UtcOffset};
use thecal_protocol::units::Nanolitres;

fn example(name: &str) -> Prescription {
    let path = format!(
        "{}/../examples/schedules/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    crate::schedule::load(Path::new(&path)).unwrap()
}

fn state(volume: u32) -> ReservoirState {
    ReservoirState {
        volume: Nanolitres(volume),
        // Thursday 3 December 2026 18:20 UTC.
        now: Timestamp(1_796_322_000_000),
        offset: UtcOffset(60),
        therapy: TherapyState::Running,
        carry: 0,
        bolus: None,
    }
}

/// One `<text>` of an SVG: position, size, anchor, content.
#[derive(Debug)]
struct SvgText {
    x: f64,
    y: f64,
    size: f64,
    anchor: String,
    rotated: bool,
    text: String,
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let rest = tag.get(at..)?;
    Some(rest.get(..rest.find('"')?)?.to_string())
}

/// `(width, height, texts)` of an SVG written by plotters.
fn svg_texts(svg: &str) -> (f64, f64, Vec<SvgText>) {
    let head = svg.get(..svg.find('>').unwrap()).unwrap();
    let w: f64 = attr(head, "width").unwrap().parse().unwrap();
    let h: f64 = attr(head, "height").unwrap().parse().unwrap();
    assert_eq!(
        attr(head, "viewBox").as_deref(),
        Some(format!("0 0 {w} {h}").as_str())
    );
    let mut texts = Vec::new();
    for part in svg.split("<text").skip(1) {
        let end = part.find('>').unwrap();
        let tag = part.get(..end).unwrap();
        let body = part.get(end + 1..part.find("</text>").unwrap()).unwrap();
        let num = |n: &str| attr(tag, n).map_or(0.0, |v| v.parse::<f64>().unwrap());
        texts.push(SvgText {
            x: num("x"),
            y: num("y"),
            size: num("font-size"),
            anchor: attr(tag, "text-anchor").unwrap_or_else(|| "start".into()),
            rotated: tag.contains("rotate("),
            text: body
                .trim()
                .replace("&amp;", "&")
                .replace("&lt;", "<")
                .replace("&gt;", ">"),
        });
    }
    (w, h, texts)
}

/// Asserts every text's anchor point, and its extent measured with the font, lie
/// inside the picture; returns the texts.
fn texts_inside(file: &Path) -> Vec<SvgText> {
    let svg = std::fs::read_to_string(file).unwrap();
    let (w, h, texts) = svg_texts(&svg);
    assert!(!texts.is_empty());
    for t in &texts {
        assert!(
            (0.0..=w).contains(&t.x) && (0.0..=h).contains(&t.y),
            "{t:?} outside {w}×{h}"
        );
        if t.rotated {
            continue;
        }
        let font = FontDesc::new(FontFamily::SansSerif, t.size, FontStyle::Normal);
        let ((x0, _), (x1, _)) = font.layout_box(&t.text).unwrap();
        let tw = f64::from(x1 - x0);
        let (left, right) = match t.anchor.as_str() {
            "middle" => (t.x - tw / 2.0, t.x + tw / 2.0),
            "end" => (t.x - tw, t.x),
            _ => (t.x, t.x + tw),
        };
        assert!(
            left >= -0.5 && right <= w + 0.5 && t.y + t.size <= h + 0.5,
            "{t:?} ({left:.0}..{right:.0}) leaves the {w}×{h} picture"
        );
    }
    texts
}

/// Renders `draw` to SVG (returned, checked) and to PNG; the PNG is kept in
/// `$THECAL_PLOT_REVIEW/NAME.png` when that is set, to be looked at.
fn render(name: &str, draw: impl Fn(&Path) -> Result<(), PlotError>) -> Vec<SvgText> {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join(format!("{name}.svg"));
    let png = dir.path().join(format!("{name}.png"));
    draw(&svg).unwrap();
    draw(&png).unwrap();
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    if let Some(keep) = std::env::var_os("THECAL_PLOT_REVIEW") {
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&png, Path::new(&keep).join(format!("{name}.png"))).unwrap();
    }
    texts_inside(&svg)
}

fn has(texts: &[SvgText], needle: &str) -> bool {
    texts.iter().any(|t| t.text.contains(needle))
}

#[test]
fn a_halted_pump_is_drawn_flat() {
    let p = example("flexible-baclofen-day.toml");
    let state = state(10_000_000);
    let flat = halted_curve(&p, state);
    assert!(flat.basal.iter().all(|(_, v)| *v == state.volume));
    assert_eq!(flat.basal.last().map(|(t, _)| *t), Some(HALTED_SPAN_MS));
    // Running, it drains.
    let running = reservoir_curve(&p, state);
    assert!(running
        .basal
        .last()
        .is_some_and(|(_, v)| v.0 < state.volume.0));
}

#[test]
fn the_curve_passes_through_the_projected_dates() {
    let p = example("continuous-morphine.toml");
    let s = state(18_000_000);
    let c = reservoir_curve(&p, s);
    let proj = project(&p, s);
    let at = |curve: &[(u64, Nanolitres)], level: u32| {
        curve
            .iter()
            .find(|(_, v)| v.0 == level)
            .map(|(t, _)| s.now.plus_ms(*t))
    };
    assert_eq!(at(&c.basal, c.low.0), proj.low_at);
    assert_eq!(at(&c.basal, 0), proj.empty_at);
    assert_eq!(at(&c.worst, c.low.0), proj.worst_low_at);
    assert_eq!(at(&c.worst, 0), proj.worst_empty_at);
    assert!(proj.worst_empty_at < proj.empty_at);
}

#[test]
fn the_reservoir_plot_shows_both_cases_now_and_midnight_ticks_inside_the_picture() {
    let p = example("continuous-morphine.toml");
    let s = state(18_000_000);
    let texts = render("reservoir", |f| {
        plot_reservoir(&p, s, None, "Pump SIM000001, prescription revision 1", f)
    });
    let proj = project(&p, s);
    let spelled = |t: Option<Timestamp>| crate::clock::spelled(t.unwrap(), s.offset);
    for needle in [
        "Pump SIM000001, prescription revision 1 — morphine 10 mg/mL: projected reservoir volume",
        "low-reservoir alarm:",
        "empty:",
        "low, every bolus taken:",
        "empty, every bolus taken:",
        &spelled(proj.low_at),
        &spelled(proj.empty_at),
        &spelled(proj.worst_low_at),
        &spelled(proj.worst_empty_at),
        "every allowed patient bolus taken",
        "now: Thursday 3 December 2026 at 19:20",
        "now (pump clock at reading)",
        "low-reservoir alarm threshold (2 mL)",
        // The first tick is the local midnight before now, with its year.
        "3 Dec 2026",
        "ticks at midnight",
    ] {
        assert!(has(&texts, needle), "{needle:?} missing: {texts:#?}");
    }
    // The ticks are local midnights, labelled with the date alone (`10 Dec`).
    let is_tick = |t: &&SvgText| {
        let words: Vec<&str> = t.text.split(' ').collect();
        matches!(words.as_slice(), [d, m] | [d, m, _]
            if d.parse::<u8>().is_ok() && m.len() == 3)
    };
    let ticks = texts.iter().filter(is_tick).count();
    assert!((5..=12).contains(&ticks), "{ticks} ticks: {texts:#?}");
}

#[test]
fn a_halted_pump_is_labelled_halted_with_no_dates() {
    let p = example("flexible-baclofen-day.toml");
    let s = ReservoirState {
        therapy: TherapyState::Halted(AlarmKind::MotorStall),
        ..state(9_000_000)
    };
    let halt = Halt {
        by: AlarmKind::MotorStall,
        since: Some(Timestamp(s.now.0 - 3_600_000)),
    };
    let texts = render("reservoir-halted", |f| {
        plot_reservoir(&p, s, Some(halt), "Pump SIM000001", f)
    });
    for needle in [
        "halted: motor stall",
        "no projected drain",
        "DELIVERY HALTED by the motor stall alarm since Thursday 3 December 2026 at 18:20",
        "baclofen 500 µg/mL",
        "now: ",
    ] {
        assert!(has(&texts, needle), "{needle:?} missing: {texts:#?}");
    }
    for absent in ["empty", "low-reservoir alarm:", "every bolus"] {
        assert!(!has(&texts, absent), "{absent:?} drawn: {texts:#?}");
    }
}

#[test]
fn the_schedule_plot_names_drug_and_concentration_inside_the_picture() {
    for (name, week, drug) in [
        ("weekday-ziconotide.toml", true, "ziconotide 25 µg/mL"),
        ("flexible-baclofen-day.toml", false, "baclofen 500 µg/mL"),
    ] {
        let p = example(name);
        let texts = render(&format!("schedule-{name}"), |f| {
            plot_schedule(&p, week, name, f)
        });
        assert!(
            has(&texts, &format!("{name} — {drug}: basal dose profile")),
            "{texts:#?}"
        );
        assert!(has(&texts, "hard daily limit"), "{texts:#?}");
    }
}

#[test]
fn a_long_title_is_drawn_smaller_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("long.svg");
    let heading = "a-very-long-schedule-file-name-that-a-clinic-might-well-use-2026-12.toml";
    plot_schedule(&example("weekday-ziconotide.toml"), true, heading, &file).unwrap();
    let texts = texts_inside(&file);
    assert!(has(&texts, heading), "{texts:#?}");
}

#[test]
fn a_reservoir_already_low_says_so_and_stays_inside() {
    let p = example("continuous-morphine.toml");
    let texts = render("reservoir-low", |f| {
        plot_reservoir(&p, state(1_000_000), None, "Pump SIM000001", f)
    });
    for needle in ["low-reservoir alarm:", "reached now", "empty:", "now: "] {
        assert!(has(&texts, needle), "{needle:?} missing: {texts:#?}");
    }
}

#[test]
fn a_stopped_pump_says_so_and_a_date_beyond_the_horizon_is_named() {
    let p = example("continuous-morphine.toml");
    let s = ReservoirState {
        therapy: TherapyState::Stopped,
        ..state(18_000_000)
    };
    let proj = project(&p, s);
    let texts = render("reservoir-stopped", |f| {
        plot_reservoir(&p, s, None, "Pump SIM000001", f)
    });
    assert!(
        has(&texts, "therapy stopped by a clinician: minimum flow only"),
        "{texts:#?}"
    );
    let beyond = "empty: not within the 400-day projection";
    assert_eq!(has(&texts, beyond), proj.empty_at.is_none(), "{texts:#?}");
    assert!(has(&texts, "empty:"), "{texts:#?}");
}
