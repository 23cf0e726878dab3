//! The original's fundus pipeline against Pillow (fixtures/make_pil_resize.py): the
//! antialiased resize and ColorJitter's adjustments on a grey photograph, to 1/255; and the
//! jitter's draws have ColorJitter's statistics.

use multifair_data::preprocess::{Adjust, Augment, jitter_grey, resize_pillow_into};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pil-resize.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn pixels(v: &Value) -> Vec<f32> {
    (v.as_array().unwrap().iter())
        .map(|p| p.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn resize_matches_pillow_to_one_level_in_255() {
    let f = fixture();
    let (h, w) = (
        f["shape"][0].as_u64().unwrap() as usize,
        f["shape"][1].as_u64().unwrap() as usize,
    );
    let image = pixels(&f["pixels"]);
    for case in f["cases"].as_array().unwrap() {
        let (oh, ow) = (
            case["size"][0].as_u64().unwrap() as usize,
            case["size"][1].as_u64().unwrap() as usize,
        );
        let want = pixels(&case["pixels"]);
        let mut got = vec![0.0; oh * ow];
        resize_pillow_into(&image, (h, w), (oh, ow), true, &mut got);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst <= 1.0, "{oh}x{ow}: off by {worst} levels");
        // In floating point on [0, 1] the same filter is within rounding of it.
        let unit: Vec<f32> = image.iter().map(|v| v / 255.0).collect();
        resize_pillow_into(&unit, (h, w), (oh, ow), false, &mut got);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b / 255.0).abs())
            .fold(0.0, f32::max);
        assert!(worst <= 1.0 / 255.0, "{oh}x{ow} (float): off by {worst}");
    }
}

#[test]
fn color_jitter_on_grey_matches_pillow_in_every_order() {
    let f = fixture();
    let image = pixels(&f["pixels"]);
    for case in f["jitters"].as_array().unwrap() {
        let steps: Vec<Adjust> = (case["steps"].as_array().unwrap().iter())
            .map(|s| {
                let factor = s[1].as_f64().unwrap() as f32;
                match s[0].as_str().unwrap() {
                    "brightness" => Adjust::Brightness(factor),
                    "contrast" => Adjust::Contrast(factor),
                    "saturation" => Adjust::Saturation(factor),
                    _ => Adjust::Hue(factor),
                }
            })
            .collect();
        let mut got = image.clone();
        jitter_grey(&mut got, &steps, true, true);
        let want = pixels(&case["pixels"]);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst <= 1.0, "{}: off by {worst} levels", case["steps"]);
    }
}

#[test]
fn color_jitter_draws_have_the_originals_statistics() {
    let color = Augment::ORIGINAL.color.unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let n = 40_000;
    let (mut applied, mut brightness_first) = (0usize, 0usize);
    let mut orders = std::collections::BTreeSet::new();
    let (mut sum, mut lo, mut hi) = (0.0f64, f32::MAX, f32::MIN);
    let mut hue = (f32::MAX, f32::MIN);
    for _ in 0..n {
        let drawn = color.draw(&mut rng);
        if drawn.is_empty() {
            continue;
        }
        applied += 1;
        assert_eq!(drawn.len(), 4, "every adjustment, hue included");
        let kind = |a: &Adjust| std::mem::discriminant(a);
        orders.insert(format!("{:?}", drawn.iter().map(kind).collect::<Vec<_>>()));
        let at = |want: fn(&Adjust) -> bool| drawn.iter().position(want).unwrap();
        if at(|a| matches!(a, Adjust::Brightness(_))) < at(|a| matches!(a, Adjust::Contrast(_))) {
            brightness_first += 1;
        }
        for a in &drawn {
            match *a {
                Adjust::Brightness(b) => {
                    sum += b as f64;
                    (lo, hi) = (lo.min(b), hi.max(b));
                }
                Adjust::Hue(h) => hue = (hue.0.min(h), hue.1.max(h)),
                _ => {}
            }
        }
    }
    let p = applied as f64 / n as f64;
    assert!((p - 0.8).abs() < 0.01, "applied {p}");
    let first = brightness_first as f64 / applied as f64;
    assert!(
        (first - 0.5).abs() < 0.02,
        "brightness before contrast {first}"
    );
    assert_eq!(orders.len(), 24, "every order of the four");
    assert!(
        lo >= 0.6 && hi <= 1.4 && lo < 0.61 && hi > 1.39,
        "{lo}..{hi}"
    );
    assert!((sum / applied as f64 - 1.0).abs() < 0.01);
    assert!(
        hue.0 >= -0.1 && hue.1 <= 0.1 && hue.0 < -0.09 && hue.1 > 0.09,
        "{hue:?}"
    );
}
