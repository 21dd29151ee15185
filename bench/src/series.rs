//! The scaling series (`--only series`): how extraction grows with the
//! number of files and with the bytes, for `par extract` against Python's
//! `zipfile` and against the guest's code run natively, and how a warm
//! redeploy grows with the bytes. Prints a Markdown table and writes an
//! SVG plot of time against size (`scaling.svg` in the work directory).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::process::Command;

use anyhow::Result;
use par_tests::Apkg;

use super::{Bench, Series, measure, millis};

/// Files of the file series: 1 KiB of source-like text each, deflated.
const FILE_COUNTS: [usize; 5] = [100, 1_000, 3_000, 6_000, 9_000];
/// Bytes of a file of the file series.
const SMALL_FILE_BYTES: usize = 1024;
/// MiB of the byte series: 8 stored files of incompressible bytes in all.
const SIZES_MIB: [usize; 5] = [1, 16, 64, 128, 256];
/// Files the byte series splits its bytes into.
const BIG_FILES: usize = 8;

/// One point of a series: its size and the medians measured there.
struct Point {
    size: usize,
    par: Series,
    native: Series,
    zipfile: Series,
    /// `par load` of the same archive again (byte series only).
    warm: Option<Series>,
}

/// The APKG of a series point, by name: `files-N` or `stored-M` (MiB).
pub(super) fn build(name: &str) -> Option<Apkg> {
    if let Some(count) = name.strip_prefix("files-").and_then(|n| n.parse::<usize>().ok()) {
        let text = super::source_text(0);
        return Some((0..count).fold(Apkg::valid_agent(), |apkg, i| {
            apkg.file(&format!("data/f{i:05}.py"), &text.as_bytes()[..SMALL_FILE_BYTES])
        }));
    }
    let mib = name.strip_prefix("stored-")?.parse::<usize>().ok()?;
    let per_file = mib * 1024 * 1024 / BIG_FILES;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    Some((0..BIG_FILES).fold(Apkg::valid_agent(), |apkg, i| {
        let bytes: Vec<u8> = (0..per_file / 8)
            .flat_map(|_| {
                // xorshift64: incompressible, and the same every run.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()
            })
            .collect();
        apkg.file_with_method(&format!("data/blob{i}.bin"), bytes, zip::CompressionMethod::Stored)
    }))
}

impl Bench {
    /// Both series, their table and the plot.
    pub(super) fn series(&self, runs: usize) -> Result<()> {
        let files = FILE_COUNTS
            .iter()
            .map(|&count| self.point(&format!("files-{count}"), count, runs, false))
            .collect::<Result<Vec<_>>>()?;
        let bytes = SIZES_MIB
            .iter()
            .map(|&mib| self.point(&format!("stored-{mib}"), mib, runs, true))
            .collect::<Result<Vec<_>>>()?;
        println!();
        println!(
            "| series | size | `par extract` | native extraction | Python `zipfile` | zipfile ÷ par | `par load` warm | par peak RSS |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for (series, unit, points) in [
            ("files (1 KiB, deflated)", "files", &files),
            ("bytes (8 stored files)", "MiB", &bytes),
        ] {
            for point in points {
                let (par, zipfile) = (point.par.median(), point.zipfile.median());
                let warm = point.warm.as_ref().map_or("—".to_owned(), |warm| millis(warm.median()));
                let rss = point
                    .par
                    .peak_rss_mib()
                    .max(point.warm.as_ref().map_or(0.0, Series::peak_rss_mib));
                println!(
                    "| {series} | {} {unit} | {} | {} | {} | {:.1}x | {warm} | {rss:.1} MiB |",
                    point.size,
                    millis(par),
                    millis(point.native.median()),
                    millis(zipfile),
                    zipfile.as_secs_f64() / par.as_secs_f64().max(1e-9),
                );
            }
        }
        let svg = self.workdir.join("scaling.svg");
        std::fs::write(&svg, plot(&files, &bytes))?;
        println!("\nPlot: {}", svg.display());
        Ok(())
    }

    /// Measures one point, alternating the three extractions `runs` times,
    /// then (with `warm`) `par load` of the same archive again.
    fn point(&self, name: &str, size: usize, runs: usize, warm: bool) -> Result<Point> {
        let apkg = self.workdir.join(format!("{name}.apkg"));
        self.write_apkg(name, &apkg)?;
        let log = self.workdir.join("last.log");
        let apkg_arg = OsString::from(&apkg);
        let extract: [&OsString; 2] = [&"extract".into(), &apkg_arg];
        let unzip = "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])";
        let mut point = Point {
            size,
            par: Series::default(),
            native: Series::default(),
            zipfile: Series::default(),
            warm: None,
        };
        // Untimed: the compiled guest into its cache, the archive into the page cache.
        measure(&mut self.par(&self.fresh("extract-root")?, &extract), &log)?;
        for _ in 0..runs {
            let root = self.fresh("extract-root")?;
            point.par.0.push(measure(&mut self.par(&root, &extract), &log)?);
            let dest = self.fresh("native")?;
            std::fs::create_dir_all(&dest)?;
            let mut native = Command::new(&self.this);
            point
                .native
                .0
                .push(measure(native.arg("native-extract").arg(&apkg).arg(&dest), &log)?);
            let dest = self.fresh("zipfile")?;
            let mut zipfile = Command::new("python3");
            point
                .zipfile
                .0
                .push(measure(zipfile.args(["-c", unzip]).arg(&apkg).arg(&dest), &log)?);
        }
        if warm {
            let load: [&OsString; 2] = [&"load".into(), &apkg_arg];
            let root = self.fresh("warm-root")?;
            // The first load hashes and installs; the ones timed find it unchanged.
            measure(&mut self.par(&root, &load), &log)?;
            let mut series = Series::default();
            for _ in 0..runs {
                series.0.push(measure(&mut self.par(&root, &load), &log)?);
            }
            point.warm = Some(series);
        }
        Ok(point)
    }
}

/// Two panels side by side, time against files and time against MiB, one
/// line per extractor (and the warm redeploy on the byte panel).
fn plot(files: &[Point], bytes: &[Point]) -> String {
    const PANEL: (f64, f64) = (420.0, 300.0);
    const MARGIN: f64 = 60.0;
    let mut svg = String::new();
    let width = 2.0 * (PANEL.0 + MARGIN) + MARGIN;
    let height = PANEL.1 + 2.0 * MARGIN;
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (index, (points, unit, title)) in [
        (files, "files", "Extraction time against files (1 KiB each)"),
        (bytes, "MiB", "Extraction time against bytes (8 stored files)"),
    ]
    .into_iter()
    .enumerate()
    {
        let left = MARGIN + index as f64 * (PANEL.0 + MARGIN);
        panel(&mut svg, points, (left, MARGIN), PANEL, unit, title);
    }
    svg.push_str("</svg>\n");
    svg
}

/// One line of a panel.
struct Line<'a> {
    label: &'a str,
    colour: &'a str,
    points: Vec<(f64, f64)>,
}

/// One panel: axes from 0 to the largest value, a polyline per series, a legend.
fn panel(svg: &mut String, points: &[Point], (left, top): (f64, f64), (w, h): (f64, f64), unit: &str, title: &str) {
    let ms = |series: &Series| series.median().as_secs_f64() * 1000.0;
    let line = |label, colour, points: Vec<(f64, f64)>| Line { label, colour, points };
    let lines: Vec<Line> = [
        line(
            "par extract",
            "#1f77b4",
            points.iter().map(|p| (p.size as f64, ms(&p.par))).collect(),
        ),
        line(
            "Python zipfile",
            "#d62728",
            points.iter().map(|p| (p.size as f64, ms(&p.zipfile))).collect(),
        ),
        line(
            "native extraction",
            "#7f7f7f",
            points.iter().map(|p| (p.size as f64, ms(&p.native))).collect(),
        ),
        line(
            "par load, warm",
            "#2ca02c",
            points
                .iter()
                .filter_map(|p| p.warm.as_ref().map(|warm| (p.size as f64, ms(warm))))
                .collect(),
        ),
    ]
    .into_iter()
    .filter(|line| !line.points.is_empty())
    .collect();
    let max_x = points.iter().map(|p| p.size as f64).fold(1.0, f64::max);
    let max_y = lines
        .iter()
        .flat_map(|line| line.points.iter().map(|&(_, y)| y))
        .fold(1.0, f64::max)
        * 1.1;
    let at = |(x, y): (f64, f64)| (left + x / max_x * w, top + h - y / max_y * h);
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">{title}</text>"##,
        left + w / 2.0,
        top - 20.0
    );
    let _ = writeln!(
        svg,
        r##"<path d="M{left},{top} V{} H{}" fill="none" stroke="black"/>"##,
        top + h,
        left + w
    );
    for tick in 0..=4 {
        let (x, y) = (max_x * f64::from(tick) / 4.0, max_y * f64::from(tick) / 4.0);
        let (tx, _) = at((x, 0.0));
        let (_, ty) = at((0.0, y));
        let _ = writeln!(
            svg,
            r##"<text x="{tx:.1}" y="{:.1}" text-anchor="middle">{x:.0}</text><text x="{:.1}" y="{:.1}" text-anchor="end">{y:.0}</text>"##,
            top + h + 16.0,
            left - 6.0,
            ty + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle">{unit}</text><text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">ms</text>"##,
        left + w / 2.0,
        top + h + 36.0,
        left - 44.0,
        top + h / 2.0,
        left - 44.0,
        top + h / 2.0
    );
    for (row, Line { label, colour, points }) in lines.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .map(|&point| {
                let (x, y) = at(point);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"##,
            path.join(" ")
        );
        let legend_y = top + 14.0 + row as f64 * 16.0;
        let _ = writeln!(
            svg,
            r##"<rect x="{}" y="{}" width="12" height="4" fill="{colour}"/><text x="{}" y="{}">{label}</text>"##,
            left + 12.0,
            legend_y - 4.0,
            left + 30.0,
            legend_y
        );
    }
}
