//! The HTML report in a real browser: Debian's `chromium`, headless, loads
//! the page from a file, takes a screenshot, and must log no console error
//! (a blocked fetch, a CSP violation, a script error). Needs `chromium`
//! (scripts/deps.sh installs it); fails, not skips, without it.
//!
//! The screenshots stay in the target directory for a person to look at:
//! `report-small.png` (the fixture cluster) and `report-200-groups.png`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{fixture, run};

const WINDOW: [&str; 4] = [
    "--since",
    "2026-11-29T00:00:00Z",
    "--until",
    "2026-12-02T00:00:00Z",
];
const SIZE: (u32, u32) = (1400, 3000);

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-browser");
    std::fs::create_dir_all(&dir).expect("output directory");
    dir
}

fn render(flows: &Path, page: &Path) {
    let c = fixture("reports/cluster");
    let mut args = vec![
        "report",
        c.as_str(),
        "--flows",
        flows.to_str().expect("path"),
    ];
    args.extend(WINDOW);
    args.extend(["--format", "html", "--out", page.to_str().expect("path")]);
    let out = run(&args);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

/// Screenshots `page`; returns the PNG's bytes, asserting a clean console.
fn screenshot(page: &Path, png: &Path) -> Vec<u8> {
    let _ = std::fs::remove_file(png);
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            &format!("--window-size={},{}", SIZE.0, SIZE.1),
            &format!("--screenshot={}", png.display()),
            &format!("file://{}", page.display()),
        ])
        .output()
        .unwrap_or_else(|e| panic!("chromium does not run ({e}); install it with scripts/deps.sh"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "chromium failed: {stderr}");
    // Page messages are logged as CONSOLE(...) lines; loads the page's CSP
    // blocks as "Refused to ...". The browser's own noise (no D-Bus in a
    // container) is neither.
    let console: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Refused to") || l.contains("Uncaught"))
        .collect();
    assert!(
        console.is_empty(),
        "console errors:\n{}",
        console.join("\n")
    );
    std::fs::read(png).expect("chromium wrote no screenshot")
}

fn dom(page: &Path) -> String {
    let output = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_html_report_renders_in_headless_chromium() {
    let dir = out_dir();
    let page = dir.join("report-small.html");
    render(Path::new(&fixture("reports/history.jsonl")), &page);
    let png = screenshot(&page, &dir.join("report-small.png"));
    assert_eq!(png_size(&png), SIZE);
    // A blank page of that size compresses to a few kilobytes; charts, text
    // and the map take far more.
    assert!(png.len() > 60_000, "screenshot is only {} bytes", png.len());
    // The browser parsed what we wrote: the cards, the SVG charts, the map.
    let d = dom(&page);
    assert!(d.contains("endpoints in full enforcement"), "{d}");
    assert_eq!(d.matches("<svg").count(), 5, "four charts and the map");
    assert!(d.contains("aria-label=\"traffic map\""));
}

/// 50 apps × 4 envs = 200 groups, each talking to three others (one in
/// another env), with denies and would-be denies among them.
fn big_history(path: &Path) {
    let envs = ["prod", "staging", "dev", "qa"];
    let mut lines = String::new();
    let mut id = 0u32;
    for (e, env) in envs.iter().enumerate() {
        for a in 0..50u32 {
            for k in 1..=3u32 {
                id += 1;
                let (peer_app, peer_env) = if k == 3 {
                    (a, envs[(e + 1) % 4])
                } else {
                    ((a + k * 7) % 50, *env)
                };
                let (verdict, would) = match id % 9 {
                    0 => ("deny", "deny"),
                    1 | 2 => ("allow", "deny"),
                    _ => ("allow", "allow"),
                };
                let side = |app: u32, env: &str, last: u32| {
                    format!(
                        r#"{{"address":"10.{}.{}.{}","identity":{},"labels":{{"app":"app-{app:02}","env":"{env}"}},"kind":"pod","name":"{env}/app-{app:02}","namespace":"{env}","reported":true}}"#,
                        e,
                        app,
                        last,
                        300 + app
                    )
                };
                lines.push_str(&format!(
                    r#"{{"schema":"flow/v1","start":"2026-11-30T10:00:00Z","end":"2026-11-30T10:01:00Z","node":"node-1","source":{},"destination":{},"port":{},"protocol":"TCP","direction":"egress","verdict":"{verdict}","wouldVerdict":"{would}","mode":"visibility","reason":"default","flows":{},"packets":1,"bytes":100}}"#,
                    side(a, env, 1),
                    side(peer_app, peer_env, 2),
                    8000 + k,
                    1 + (id * 37) % 500
                ));
                lines.push('\n');
            }
        }
    }
    std::fs::write(path, lines).expect("history");
}

#[test]
fn a_map_of_200_groups_stays_legible_in_headless_chromium() {
    let dir = out_dir();
    let flows = dir.join("200-groups.jsonl");
    big_history(&flows);
    let page = dir.join("report-200-groups.html");
    render(&flows, &page);
    let png = screenshot(&page, &dir.join("report-200-groups.png"));
    assert_eq!(png_size(&png), SIZE);
    let html = std::fs::read_to_string(&page).expect("page");
    // Four clusters (one per env) of 50, every group drawn and labeled, and
    // the edges between clusters bundled.
    for env in ["prod", "staging", "dev", "qa"] {
        assert!(
            html.contains(&format!(">{env} (50)</text>")),
            "cluster {env}"
        );
    }
    assert!(html.contains("edges between clusters are bundled (200 groups"));
    assert_eq!(html.matches("flows</title></circle>").count(), 200);
}
