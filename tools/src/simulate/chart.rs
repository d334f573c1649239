//! The per-channel figures as a picture: three bar charts side by side
//! (median days to decision, gap days by what was issued, gap days by what
//! had reached the person), Guichet beside the manual baseline for each
//! channel. Plain SVG, written by hand: a few rectangles and labels need no
//! plotting library.

use std::fmt::Write as _;

use guichet_dossier::Channel;

use super::report::{Report, Scenario};

const CHANNELS: [Channel; 4] = [Channel::Web, Channel::Ccc, Channel::Pan, Channel::Postal];
const GUICHET: &str = "#000091"; // DSFR blue France
const BASELINE: &str = "#c9191e"; // DSFR red Marianne
const PANEL_W: f64 = 360.0;
const PANEL_H: f64 = 220.0;
const TOP: f64 = 70.0;
const LEFT: f64 = 50.0;

/// One panel: a title, and what to draw for each channel under each rule set.
struct Panel {
    title: &'static str,
    value: fn(&Scenario, Channel) -> f64,
}

pub fn svg(report: &Report) -> String {
    let panels = [
        Panel {
            title: "median days to decision",
            value: |s, c| s.channels.get(c).median_days_to_decision.unwrap_or(0) as f64,
        },
        Panel {
            title: "gap days (no proof of stay issued)",
            value: |s, c| s.channels.get(c).gap_days as f64,
        },
        Panel {
            title: "gap days (no proof of stay delivered)",
            value: |s, c| s.channels.get(c).gap_days_delivered as f64,
        },
    ];
    let width = LEFT + panels.len() as f64 * (PANEL_W + LEFT);
    let height = TOP + PANEL_H + 60.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let p = &report.params;
    let _ = writeln!(
        out,
        r#"<title>guichet simulate: {} filings from {} ({} days, seed {})</title>"#,
        p.filings, p.start, p.days, p.seed
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="22" font-size="15" font-weight="bold">Per channel: Guichet beside the manual baseline ({} filings from {}, seed {})</text>"#,
        thousands(p.filings as f64),
        p.start,
        p.seed
    );
    legend(&mut out, LEFT, 42.0);
    for (k, panel) in panels.iter().enumerate() {
        let x0 = LEFT + k as f64 * (PANEL_W + LEFT);
        draw_panel(&mut out, report, panel, x0);
    }
    out.push_str("</svg>\n");
    out
}

fn legend(out: &mut String, x: f64, y: f64) {
    for (i, (name, colour)) in [("Guichet", GUICHET), ("manual baseline", BASELINE)]
        .iter()
        .enumerate()
    {
        let x = x + i as f64 * 140.0;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{colour}"/><text x="{}" y="{}">{name}</text>"#,
            y - 10.0,
            x + 18.0,
            y
        );
    }
}

fn draw_panel(out: &mut String, report: &Report, panel: &Panel, x0: f64) {
    let values: Vec<(f64, f64)> = CHANNELS
        .iter()
        .map(|&c| {
            (
                (panel.value)(&report.guichet, c),
                (panel.value)(&report.baseline, c),
            )
        })
        .collect();
    let max = values
        .iter()
        .flat_map(|(a, b)| [*a, *b])
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let base = TOP + PANEL_H;
    let _ = writeln!(
        out,
        r#"<text x="{x0}" y="{}" font-weight="bold">{}</text><line x1="{x0}" y1="{base}" x2="{}" y2="{base}" stroke="grey"/>"#,
        TOP - 6.0,
        panel.title,
        x0 + PANEL_W
    );
    let slot = PANEL_W / CHANNELS.len() as f64;
    let bar = slot * 0.32;
    for (i, (&channel, (guichet, baseline))) in CHANNELS.iter().zip(&values).enumerate() {
        let x = x0 + i as f64 * slot + slot * 0.15;
        for (j, (value, colour)) in [(*guichet, GUICHET), (*baseline, BASELINE)]
            .into_iter()
            .enumerate()
        {
            let h = value / max * (PANEL_H - 20.0);
            let bx = x + j as f64 * bar;
            let _ = writeln!(
                out,
                r#"<rect x="{bx:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{colour}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                base - h,
                bar - 2.0,
                bx + bar / 2.0 - 1.0,
                base - h - 4.0,
                thousands(value)
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x + bar,
            base + 16.0,
            channel.as_str()
        );
    }
}

/// 7271 -> "7,271", as the text report prints figures.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_print_with_thousands_separators() {
        for (value, expected) in [
            (0.0, "0"),
            (53.0, "53"),
            (7271.0, "7,271"),
            (1e6, "1,000,000"),
        ] {
            assert_eq!(thousands(value), expected);
        }
    }

    #[test]
    fn the_chart_shows_every_channel_and_both_rule_sets() {
        let params = crate::simulate::Params {
            filings: 2_000,
            days: 60,
            ..Default::default()
        };
        let report = crate::simulate::simulate(&params).unwrap();
        let svg = svg(&report);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for channel in CHANNELS {
            assert!(
                svg.contains(&format!(">{}</text>", channel.as_str())),
                "{channel}"
            );
        }
        // Two bars per channel per panel, three panels, and the legend.
        assert_eq!(
            svg.matches(&format!(r#"fill="{GUICHET}"/><text"#)).count(),
            12 + 1
        );
        assert_eq!(
            svg.matches(&format!(r#"fill="{BASELINE}"/><text"#)).count(),
            12 + 1
        );
        let baseline_gaps = report.baseline.gap_days;
        assert!(
            svg.contains(&format!(
                ">{}</text>",
                thousands(report.baseline.channels.web.gap_days as f64)
            )),
            "web's baseline gap days are printed ({baseline_gaps} in all)"
        );
    }
}
