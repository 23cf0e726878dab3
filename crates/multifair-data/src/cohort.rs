//! A small generated cohort in the manifest format (`datasets/manifest.md`): a skin-lesion
//! photograph (PNG), two tabular blocks (labs, vitals) and a clinical note per patient, with
//! missing entries of every kind, unknown group codes and a fairness problem of known shape.
//!
//! A latent severity drives the label and every modality. The photograph shows it as a dark
//! lesion whose contrast fades for the `dark` skin tone (the group the photo fails); the labs
//! show it for everyone, weakly and with missing cells; the vitals carry a little of it and are
//! missing as a block for some rows; the note names it with words whose choice depends on it.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Skin tones (the attribute the photograph treats unfairly) and sexes, in code order.
pub const SKIN_TONES: [&str; 3] = ["light", "medium", "dark"];
pub const SEXES: [&str; 2] = ["female", "male"];

/// Words of the generated notes.
const CALM: [&str; 6] = [
    "regular",
    "symmetric",
    "stable",
    "uniform",
    "smooth",
    "unchanged",
];
const WORRY: [&str; 6] = [
    "irregular",
    "asymmetric",
    "growing",
    "bleeding",
    "itching",
    "changed",
];
const FILLER: [&str; 8] = [
    "patient", "reports", "lesion", "on", "the", "arm", "back", "since",
];

/// Sizes and seed of a generated cohort.
#[derive(Debug, Clone)]
pub struct CohortConfig {
    pub seed: u64,
    pub n_train: usize,
    pub n_val: usize,
    pub n_test: usize,
    /// Width and height of the photographs.
    pub size: usize,
}

impl CohortConfig {
    pub fn new(seed: u64) -> Self {
        CohortConfig {
            seed,
            n_train: 160,
            n_val: 40,
            n_test: 80,
            size: 24,
        }
    }
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let (u, v) = (rng.random::<f64>().max(1e-12), rng.random::<f64>());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The TOML written beside the manifest.
pub const TOML: &str = r#"# A generated skin-lesion cohort: see datasets/manifest.md.
manifest = "manifest.csv"
id = "id"
split = "split"
label = "diagnosis"
labels = ["benign", "malignant"]

[[attribute]]
name = "skin_tone"
groups = ["light", "medium", "dark"]

[[attribute]]
name = "sex"
groups = ["female", "male"]
unknown = ["not recorded"]

[[modality]]
name = "photo"
type = "image"
column = "photo"

[[modality]]
name = "labs"
type = "tabular"
columns = ["crp", "wbc", "ldh"]

[[modality]]
name = "vitals"
type = "tabular"
columns = ["heart_rate", "temperature"]

[[modality]]
name = "note"
type = "text"
column = "note"
"#;

/// Writes `manifest.toml`, `manifest.csv` and `photos/*.png` under `out`.
pub fn generate(config: &CohortConfig, out: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(out.join("photos"))?;
    std::fs::write(out.join("manifest.toml"), TOML)?;
    let mut csv = csv::Writer::from_path(out.join("manifest.csv"))?;
    csv.write_record([
        "id",
        "split",
        "diagnosis",
        "skin_tone",
        "sex",
        "photo",
        "crp",
        "wbc",
        "ldh",
        "heart_rate",
        "temperature",
        "note",
    ])?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let splits = [
        ("train", config.n_train),
        ("val", config.n_val),
        ("test", config.n_test),
    ];
    let mut i = 0;
    for (split, n) in splits {
        for _ in 0..n {
            let id = format!("p{i:04}");
            i += 1;
            let severity = normal(&mut rng);
            let label = severity + 0.5 * normal(&mut rng) > 0.0;
            let tone = match rng.random::<f64>() {
                u if u < 0.5 => 0,
                u if u < 0.8 => 1,
                _ => 2,
            };
            let sex = match rng.random::<f64>() {
                u if u < 0.03 => "not recorded".to_string(),
                u if u < 0.52 => SEXES[0].into(),
                _ => SEXES[1].into(),
            };
            // The photograph: missing for 5% of rows.
            let photo = if rng.random::<f64>() < 0.05 {
                String::new()
            } else {
                let file = format!("photos/{id}.png");
                let contrast = if tone == 2 { 0.15 } else { 1.0 };
                write_photo(
                    &out.join(&file),
                    config.size,
                    tone,
                    contrast * severity,
                    &mut rng,
                )?;
                file
            };
            let [crp, wbc, ldh] = labs(severity, &mut rng);
            let (heart_rate, temperature) = vitals(severity, &mut rng);
            let note = note(severity, &mut rng);
            csv.write_record([
                id.as_str(),
                split,
                if label { "malignant" } else { "benign" },
                SKIN_TONES[tone],
                &sex,
                &photo,
                &crp,
                &wbc,
                &ldh,
                &heart_rate,
                &temperature,
                &note,
            ])?;
        }
    }
    csv.flush()
}

/// Labs (CRP, WBC, LDH): not taken for 5% of rows, each cell missing 10% of the time
/// otherwise, the weak signal in all three.
fn labs(severity: f64, rng: &mut ChaCha8Rng) -> [String; 3] {
    let taken = rng.random::<f64>() >= 0.05;
    let mut cell = |mean: f64, scale: f64, signal: f64| {
        if !taken || rng.random::<f64>() < 0.1 {
            String::new()
        } else {
            format!("{:.2}", mean + scale * (signal * severity + normal(rng)))
        }
    };
    let crp = cell(5.0, 2.0, 0.4);
    let wbc = cell(7.0, 1.5, 0.3);
    [crp, wbc, cell(180.0, 30.0, 0.3)]
}

/// Vitals (heart rate, temperature): missing as a block for 15% of rows.
fn vitals(severity: f64, rng: &mut ChaCha8Rng) -> (String, String) {
    if rng.random::<f64>() < 0.15 {
        return (String::new(), String::new());
    }
    let heart_rate = format!("{:.0}", 75.0 + 8.0 * (0.2 * severity + normal(rng)));
    (heart_rate, format!("{:.1}", 36.8 + 0.3 * normal(rng)))
}

/// The note, eight words whose worry grows with severity: missing for 10% of rows.
fn note(severity: f64, rng: &mut ChaCha8Rng) -> String {
    if rng.random::<f64>() < 0.1 {
        return String::new();
    }
    let words: Vec<&str> = (0..8)
        .map(|_| {
            let p_worry = 1.0 / (1.0 + (-1.5 * severity).exp());
            match rng.random::<f64>() {
                u if u < 0.5 => FILLER[rng.random_range(0..FILLER.len())],
                _ if rng.random::<f64>() < p_worry => WORRY[rng.random_range(0..WORRY.len())],
                _ => CALM[rng.random_range(0..CALM.len())],
            }
        })
        .collect();
    words.join(" ")
}

/// A skin-coloured square with a lesion whose darkness and size grow with `signal`.
fn write_photo(
    path: &Path,
    size: usize,
    tone: usize,
    signal: f64,
    rng: &mut ChaCha8Rng,
) -> std::io::Result<()> {
    let skin = [
        [235.0, 200.0, 180.0],
        [190.0, 145.0, 110.0],
        [110.0, 75.0, 55.0],
    ][tone];
    let (cx, cy) = (
        size as f64 * (0.4 + 0.2 * rng.random::<f64>()),
        size as f64 * (0.4 + 0.2 * rng.random::<f64>()),
    );
    let radius = size as f64 * (0.18 + 0.04 * signal.clamp(-2.0, 2.0));
    let darkness = (0.35 + 0.12 * signal).clamp(0.05, 0.8);
    let mut image = image::RgbImage::new(size as u32, size as u32);
    for (x, y, pixel) in image.enumerate_pixels_mut() {
        let d = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt();
        let inside = if d < radius { darkness } else { 0.0 };
        let noise = 12.0 * normal(rng);
        for (channel, base) in pixel.0.iter_mut().zip(skin) {
            *channel = (base * (1.0 - inside) + noise).clamp(0.0, 255.0) as u8;
        }
    }
    image
        .save(path)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))
}
