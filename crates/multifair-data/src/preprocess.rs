//! The reference preprocessing (docs/data-formats.md): OCT slice sampling, bilinear resize and per-slice
//! z-score; fundus resize, train-time flip and colour jitter, ImageNet normalisation.

use rand::Rng;
use rand::seq::SliceRandom;

use crate::npy::{ArrayData, NpyArray};

/// ImageNet channel statistics (torchvision's `Normalize`).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The reference adds this to each slice's standard deviation.
pub const ZSCORE_EPS: f32 = 1e-6;

/// `floor(linspace(0, depth - 1, n))`: the B-scans the reference keeps.
pub fn slice_indices(depth: usize, n: usize) -> Vec<usize> {
    match n {
        0 => Vec::new(),
        1 => vec![0],
        _ => (0..n)
            .map(|i| ((i as f64) * (depth as f64 - 1.0) / (n as f64 - 1.0)).floor() as usize)
            .collect(),
    }
}

/// Bilinear resize of a row-major [h, w] image to [oh, ow], as torch's
/// `F.interpolate(mode="bilinear", align_corners=False)` without antialiasing.
pub fn resize_bilinear(src: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let mut out = vec![0.0; oh * ow];
    resize_bilinear_into(src, h, w, oh, ow, &mut out);
    out
}

/// [`resize_bilinear`] into `out` (length `oh * ow`).
pub fn resize_bilinear_into(
    src: &[f32],
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    out: &mut [f32],
) {
    debug_assert_eq!(src.len(), h * w);
    debug_assert_eq!(out.len(), oh * ow);
    if (h, w) == (oh, ow) {
        out.copy_from_slice(src);
        return;
    }
    // Source coordinate, lower index, upper index and weight of the upper one, per output index.
    let axis = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32)> {
        let scale = n_in as f32 / n_out as f32;
        (0..n_out)
            .map(|o| {
                let x = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
                let lo = (x.floor() as usize).min(n_in - 1);
                let hi = (lo + 1).min(n_in - 1);
                (lo, hi, x - lo as f32)
            })
            .collect()
    };
    let (rows, cols) = (axis(h, oh), axis(w, ow));
    // Separable: each source row that is used is interpolated horizontally once, then output
    // rows blend two of those (contiguous, so the compiler vectorises the blend).
    let mut horizontal = vec![f32::NAN; h * ow];
    let mut done = vec![false; h];
    for (o, &(r0, r1, fr)) in rows.iter().enumerate() {
        for r in [r0, r1] {
            if !done[r] {
                let src_row = &src[r * w..(r + 1) * w];
                for (dst, &(c0, c1, fc)) in horizontal[r * ow..(r + 1) * ow].iter_mut().zip(&cols) {
                    *dst = src_row[c0] + (src_row[c1] - src_row[c0]) * fc;
                }
                done[r] = true;
            }
        }
        let (top, bottom) = (
            &horizontal[r0 * ow..(r0 + 1) * ow],
            &horizontal[r1 * ow..(r1 + 1) * ow],
        );
        for ((dst, &t), &b) in out[o * ow..(o + 1) * ow].iter_mut().zip(top).zip(bottom) {
            *dst = t + (b - t) * fr;
        }
    }
}

/// How images (not B-scans) are resized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resize {
    /// torch's bilinear interpolation without antialiasing (ours).
    #[default]
    Bilinear,
    /// Pillow's `Image.resize(size, BILINEAR)`, what torchvision's `Resize` runs on the
    /// original's fundus photographs: antialiased when shrinking, 8-bit rounding on 8-bit images.
    Pillow,
}

/// Pillow's bilinear resize of a row-major [h, w] image to [oh, ow]: a triangle filter
/// widened by the scale when shrinking (so every source pixel counts), applied horizontally
/// then vertically. With `eight_bit` the values are 0–255 and each pass rounds and clips them
/// to 8 bits in Pillow's fixed point (22 fractional bits), as it does on an 8-bit image, so
/// the result is Pillow's exactly; otherwise the arithmetic is in floating point.
pub fn resize_pillow_into(
    src: &[f32],
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    eight_bit: bool,
    out: &mut [f32],
) {
    debug_assert_eq!(src.len(), h * w);
    debug_assert_eq!(out.len(), oh * ow);
    let horizontal = match ow == w {
        true => src.to_vec(),
        false => pillow_pass(src, h, 1, w, &pillow_taps(w, ow), eight_bit),
    };
    match oh == h {
        true => out.copy_from_slice(&horizontal),
        false => out.copy_from_slice(&pillow_pass(
            &horizontal,
            ow,
            ow,
            1,
            &pillow_taps(h, oh),
            eight_bit,
        )),
    }
}

/// Pillow's `precompute_coeffs` for the bilinear filter: per output index, the first source
/// index and the normalised weights.
fn pillow_taps(input: usize, output: usize) -> Vec<(usize, Vec<f64>)> {
    let scale = input as f64 / output as f64;
    let widen = scale.max(1.0);
    let support = widen;
    (0..output)
        .map(|o| {
            let center = (o as f64 + 0.5) * scale;
            // C's (int) truncates toward zero.
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let end = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let mut k: Vec<f64> = (first..end)
                .map(|x| (1.0 - ((x as f64 - center + 0.5) / widen).abs()).max(0.0))
                .collect();
            let total: f64 = k.iter().sum();
            if total != 0.0 {
                k.iter_mut().for_each(|v| *v /= total);
            }
            (first, k)
        })
        .collect()
}

/// One separable pass over `lines` lines (`line_stride` apart, their samples `step` apart);
/// the output is row-major with the resized axis last for a horizontal pass (`step` 1), first
/// for a vertical one.
fn pillow_pass(
    src: &[f32],
    lines: usize,
    step: usize,
    line_stride: usize,
    taps: &[(usize, Vec<f64>)],
    eight_bit: bool,
) -> Vec<f32> {
    const BITS: u32 = 22;
    let fixed: Vec<Vec<i64>> = (taps.iter())
        .map(|(_, k)| {
            k.iter()
                .map(|&w| match w < 0.0 {
                    true => (w * (1i64 << BITS) as f64 - 0.5) as i64,
                    false => (w * (1i64 << BITS) as f64 + 0.5) as i64,
                })
                .collect()
        })
        .collect();
    let horizontal = step == 1;
    let mut out = vec![0.0; lines * taps.len()];
    for line in 0..lines {
        for (o, ((first, k), kf)) in taps.iter().zip(&fixed).enumerate() {
            let at = |i: usize| src[line * line_stride + (first + i) * step];
            let value = match eight_bit {
                true => {
                    let sum = (kf.iter().enumerate())
                        .fold(1i64 << (BITS - 1), |acc, (i, &c)| acc + at(i) as i64 * c);
                    (sum >> BITS).clamp(0, 255) as f32
                }
                false => (k.iter().enumerate())
                    .map(|(i, &c)| at(i) as f64 * c)
                    .sum::<f64>() as f32,
            };
            let index = match horizontal {
                true => line * taps.len() + o,
                false => o * lines + line,
            };
            out[index] = value;
        }
    }
    out
}

/// In place: (x - mean) / (std + 1e-6), with torch's default unbiased std.
pub fn zscore(values: &mut [f32]) {
    let n = values.len() as f64;
    let mean = (lane_sum(values, |v| v) / n) as f32;
    let var = lane_sum(values, |v| (v - mean) * (v - mean)) / (n - 1.0).max(1.0);
    let scale = 1.0 / (var.sqrt() as f32 + ZSCORE_EPS);
    for v in values {
        *v = (*v - mean) * scale;
    }
}

/// Sum of `f(v)` in 8 f32 lanes (vectorised), each chunk of lanes flushed to f64 so that large
/// images keep their precision.
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut total = 0.0f64;
    for block in values.chunks(4096) {
        let mut lanes = [0.0f32; 8];
        let chunks = block.chunks_exact(8);
        let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
        for chunk in chunks {
            for (lane, &v) in lanes.iter_mut().zip(chunk) {
                *lane += f(v);
            }
        }
        total += lanes.iter().map(|&l| l as f64).sum::<f64>() + tail as f64;
    }
    total
}

/// A preprocessing failure on an array's values (the caller names file and key).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PixelError {
    #[error("has shape {0:?}; expected {1}")]
    Shape(Vec<usize>, &'static str),
    #[error("contains NaN or infinite values")]
    NotFinite,
    #[error("holds text; expected pixel values")]
    Text,
}

/// Elements `start..start + len` of a numeric array as f32 (only what is used is converted).
fn to_f32_range(array: &NpyArray, start: usize, len: usize) -> Result<Vec<f32>, PixelError> {
    macro_rules! cast {
        ($v:expr) => {
            $v[start..start + len].iter().map(|&x| x as f32).collect()
        };
    }
    Ok(match &array.data {
        ArrayData::U8(v) => cast!(v),
        ArrayData::I8(v) => cast!(v),
        ArrayData::I16(v) => cast!(v),
        ArrayData::U16(v) => cast!(v),
        ArrayData::I32(v) => cast!(v),
        ArrayData::U32(v) => cast!(v),
        ArrayData::I64(v) => cast!(v),
        ArrayData::U64(v) => cast!(v),
        ArrayData::F32(v) => v[start..start + len].to_vec(),
        ArrayData::F64(v) => cast!(v),
        ArrayData::F16(v) => v[start..start + len].iter().map(|x| x.to_f32()).collect(),
        ArrayData::Bool(v) => v[start..start + len]
            .iter()
            .map(|&b| b as u8 as f32)
            .collect(),
        ArrayData::Unicode(_) => return Err(PixelError::Text),
    })
}

/// Integer pixels are always finite; float ones are checked.
fn check_finite(array: &NpyArray, values: &[f32]) -> Result<(), PixelError> {
    let float = matches!(
        array.data,
        ArrayData::F16(_) | ArrayData::F32(_) | ArrayData::F64(_)
    );
    if !float || values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(PixelError::NotFinite)
    }
}

/// OCT volume [D, H, W] -> [slices, size, size]: sampled slices, resized, z-scored each.
pub fn prepare_volume(
    array: &NpyArray,
    slices: usize,
    size: usize,
) -> Result<Vec<f32>, PixelError> {
    let mut out = vec![0.0; slices * size * size];
    prepare_volume_into(array, slices, size, &mut out)?;
    Ok(out)
}

/// [`prepare_volume`] into `out` (length `slices * size * size`), e.g. a slot of a batch.
pub fn prepare_volume_into(
    array: &NpyArray,
    slices: usize,
    size: usize,
    out: &mut [f32],
) -> Result<(), PixelError> {
    let &[d, h, w] = array.shape.as_slice() else {
        return Err(PixelError::Shape(array.shape.clone(), "[D,H,W]"));
    };
    if d == 0 || h == 0 || w == 0 {
        return Err(PixelError::Shape(
            array.shape.clone(),
            "[D,H,W] with D, H, W > 0",
        ));
    }
    for (index, slot) in slice_indices(d, slices)
        .into_iter()
        .zip(out.chunks_mut(size * size))
    {
        let slice = to_f32_range(array, index * h * w, h * w)?;
        check_finite(array, &slice)?;
        resize_bilinear_into(&slice, h, w, size, size, slot);
        zscore(slot);
    }
    Ok(())
}

/// How an image's values are brought to a common scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageNorm {
    /// Fundus photographs: to [0, 1] (integers / 255; floats above 1 are taken as 0–255),
    /// three channels, ImageNet mean and std.
    ImageNet,
    /// Measurement maps (RNFLT thickness in microns): one z-score over the map, three channels.
    ZScore,
}

/// Train-time augmentation of one image, drawn from the sample's own seeded generator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// Probability of a horizontal flip.
    pub flip: f32,
    /// Ours: brightness and contrast factors drawn from [1 - jitter, 1 + jitter], contrast
    /// around the brightened mean, one clamp at the end.
    pub jitter: f32,
    /// torchvision's ColorJitter in place of `jitter`.
    pub color: Option<ColorJitter>,
}

impl Default for Augment {
    fn default() -> Self {
        Augment {
            flip: 0.5,
            jitter: 0.2,
            color: None,
        }
    }
}

impl Augment {
    /// The original's fundus transform: RandomHorizontalFlip, then
    /// RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), p = 0.8).
    pub const ORIGINAL: Augment = Augment {
        flip: 0.5,
        jitter: 0.0,
        color: Some(ColorJitter {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
            p: 0.8,
        }),
    };
}

/// torchvision's `RandomApply(ColorJitter(brightness, contrast, saturation, hue), p)`: with
/// probability `p`, the four adjustments in a random order, brightness, contrast and saturation
/// factors uniform in [1 - s, 1 + s] and the hue shift in [-hue, hue]; a strength of 0 leaves
/// its adjustment out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColorJitter {
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
    pub p: f32,
}

/// One colour adjustment with its drawn factor (the hue's is a shift in turns).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Adjust {
    Brightness(f32),
    Contrast(f32),
    Saturation(f32),
    Hue(f32),
}

impl ColorJitter {
    /// One image's adjustments in the order they apply; none when RandomApply skips them.
    pub fn draw(&self, rng: &mut impl Rng) -> Vec<Adjust> {
        if rng.random::<f32>() >= self.p {
            return Vec::new();
        }
        let mut order = [0, 1, 2, 3];
        order.shuffle(rng);
        let mut factor = |s: f32, centre: f32| centre + s * (2.0 * rng.random::<f32>() - 1.0);
        let drawn = [
            (self.brightness > 0.0).then(|| Adjust::Brightness(factor(self.brightness, 1.0))),
            (self.contrast > 0.0).then(|| Adjust::Contrast(factor(self.contrast, 1.0))),
            (self.saturation > 0.0).then(|| Adjust::Saturation(factor(self.saturation, 1.0))),
            (self.hue > 0.0).then(|| Adjust::Hue(factor(self.hue, 0.0))),
        ];
        order.iter().filter_map(|&i| drawn[i]).collect()
    }
}

/// Applies `adjustments` to a grey image (one plane standing for equal R, G and B, as the
/// original converts its grey fundus to RGB). Saturation and hue leave grey unchanged (its
/// grey conversion is itself; its saturation is 0), so brightness and contrast act: brightness
/// scales, contrast blends with the mean. `eight_bit`: values 0–255, each step computed as
/// Pillow's `ImageEnhance` blends in single precision and truncated to 8 bits (contrast around
/// the rounded mean); else in floating point, clamped to [0, 1] when `clamp`.
pub fn jitter_grey(image: &mut [f32], adjustments: &[Adjust], eight_bit: bool, clamp: bool) {
    let finish = |t: f32| match (eight_bit, clamp) {
        (true, _) => t.clamp(0.0, 255.0).trunc(),
        (false, true) => t.clamp(0.0, 1.0),
        (false, false) => t,
    };
    for adjust in adjustments {
        match *adjust {
            Adjust::Brightness(b) => image.iter_mut().for_each(|v| *v = finish(b * *v)),
            Adjust::Contrast(c) => {
                let mean = image.iter().map(|&v| v as f64).sum::<f64>() / image.len() as f64;
                let m = if eight_bit {
                    (mean + 0.5).floor() as f32
                } else {
                    mean as f32
                };
                image.iter_mut().for_each(|v| *v = finish(m + c * (*v - m)));
            }
            Adjust::Saturation(_) | Adjust::Hue(_) => {}
        }
    }
}

/// Applies `adjustments` to three [0, 1] planes, as torchvision's tensor functions: brightness
/// scales, contrast blends with the mean grey level, saturation with each pixel's grey level,
/// hue rotates the HSV hue; clamped to [0, 1] after each.
pub fn jitter_rgb(rgb: &mut [f32], adjustments: &[Adjust]) {
    let area = rgb.len() / 3;
    let grey =
        |rgb: &[f32], i: usize| 0.299 * rgb[i] + 0.587 * rgb[area + i] + 0.114 * rgb[2 * area + i];
    for adjust in adjustments {
        match *adjust {
            Adjust::Brightness(b) => rgb.iter_mut().for_each(|v| *v = (b * *v).clamp(0.0, 1.0)),
            Adjust::Contrast(c) => {
                let mean = (0..area).map(|i| grey(rgb, i)).sum::<f32>() / area as f32;
                rgb.iter_mut()
                    .for_each(|v| *v = (mean + c * (*v - mean)).clamp(0.0, 1.0));
            }
            Adjust::Saturation(f) => {
                for i in 0..area {
                    let g = grey(rgb, i);
                    for c in 0..3 {
                        let v = &mut rgb[c * area + i];
                        *v = (g + f * (*v - g)).clamp(0.0, 1.0);
                    }
                }
            }
            Adjust::Hue(shift) => {
                for i in 0..area {
                    let (r, g, b) = (rgb[i], rgb[area + i], rgb[2 * area + i]);
                    let (h, s, v) = rgb_to_hsv(r, g, b);
                    let (r, g, b) = hsv_to_rgb((h + shift).rem_euclid(1.0), s, v);
                    (rgb[i], rgb[area + i], rgb[2 * area + i]) = (r, g, b);
                }
            }
        }
    }
}

/// Hue in turns, saturation and value, all in [0, 1].
fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    let delta = max - min;
    let s = if max > 0.0 { delta / max } else { 0.0 };
    if delta == 0.0 {
        return (0.0, s, max);
    }
    let h = if max == r {
        ((g - b) / delta).rem_euclid(6.0)
    } else if max == g {
        (b - r) / delta + 2.0
    } else {
        (r - g) / delta + 4.0
    };
    (h / 6.0, s, max)
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let sector = (h * 6.0).floor();
    let f = h * 6.0 - sector;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match sector as i32 % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// 2-D image [H, W] -> [3, size, size].
pub fn prepare_image(
    array: &NpyArray,
    size: usize,
    norm: ImageNorm,
    resize: Resize,
    augment: Option<(&Augment, &mut impl Rng)>,
) -> Result<Vec<f32>, PixelError> {
    let mut out = vec![0.0; 3 * size * size];
    prepare_image_into(array, size, norm, resize, augment, &mut out)?;
    Ok(out)
}

/// [`prepare_image`] into `out` (length `3 * size * size`), e.g. a slot of a batch.
/// Train-time augmentation of a resized grey image (one plane, `size` wide): a horizontal
/// flip, then the original's colour jitter or the light brightness / contrast one (clamped to
/// [0, 1] for photographs).
fn augment_grey(
    image: &mut [f32],
    size: usize,
    augment: &Augment,
    rng: &mut impl Rng,
    eight_bit: bool,
    photograph: bool,
) {
    if rng.random::<f32>() < augment.flip {
        image.chunks_mut(size).for_each(|row| row.reverse());
    }
    if let Some(color) = &augment.color {
        let adjustments = color.draw(rng);
        jitter_grey(image, &adjustments, eight_bit, photograph);
    } else if augment.jitter > 0.0 {
        let mut factor = || 1.0 + augment.jitter * (2.0 * rng.random::<f32>() - 1.0);
        let (brightness, contrast) = (factor(), factor());
        let mean = image.iter().sum::<f32>() / image.len() as f32 * brightness;
        for v in image.iter_mut() {
            // torchvision order: brightness, then contrast around the mean.
            let c = mean + (*v * brightness - mean) * contrast;
            *v = if photograph { c.clamp(0.0, 1.0) } else { c };
        }
    }
}

pub fn prepare_image_into(
    array: &NpyArray,
    size: usize,
    norm: ImageNorm,
    resize: Resize,
    augment: Option<(&Augment, &mut impl Rng)>,
    out: &mut [f32],
) -> Result<(), PixelError> {
    let &[h, w] = array.shape.as_slice() else {
        return Err(PixelError::Shape(array.shape.clone(), "[H,W]"));
    };
    if h == 0 || w == 0 {
        return Err(PixelError::Shape(
            array.shape.clone(),
            "[H,W] with H, W > 0",
        ));
    }
    let mut pixels = to_f32_range(array, 0, h * w)?;
    check_finite(array, &pixels)?;
    let integer = !matches!(
        array.data,
        ArrayData::F16(_) | ArrayData::F32(_) | ArrayData::F64(_)
    );
    // An 8-bit photograph resized as Pillow stays in 0–255 until after the colour jitter, as
    // the original's PIL image does.
    let eight_bit = norm == ImageNorm::ImageNet && integer && resize == Resize::Pillow;
    if norm == ImageNorm::ImageNet && !eight_bit && (integer || pixels.iter().any(|&v| v > 1.0)) {
        pixels.iter_mut().for_each(|v| *v /= 255.0);
    }
    // The first channel holds the resized image until the channels are written.
    let (image, rest) = out.split_at_mut(size * size);
    match resize {
        Resize::Bilinear => resize_bilinear_into(&pixels, h, w, size, size, image),
        Resize::Pillow => resize_pillow_into(&pixels, (h, w), (size, size), eight_bit, image),
    }
    if let Some((augment, rng)) = augment {
        augment_grey(
            image,
            size,
            augment,
            rng,
            eight_bit,
            norm == ImageNorm::ImageNet,
        );
    }
    if eight_bit {
        image.iter_mut().for_each(|v| *v /= 255.0);
    }
    match norm {
        ImageNorm::ImageNet => {
            for (c, channel) in rest.chunks_mut(size * size).enumerate() {
                for (dst, &v) in channel.iter_mut().zip(image.iter()) {
                    *dst = (v - IMAGENET_MEAN[c + 1]) / IMAGENET_STD[c + 1];
                }
            }
            image
                .iter_mut()
                .for_each(|v| *v = (*v - IMAGENET_MEAN[0]) / IMAGENET_STD[0]);
        }
        ImageNorm::ZScore => {
            zscore(image);
            for channel in rest.chunks_mut(size * size) {
                channel.copy_from_slice(image);
            }
        }
    }
    Ok(())
}

/// A colour photograph (manifest images) -> [3, size, size]: `rgb` holds three planes
/// [3, H, W] in [0, 1]. The same flip and brightness / contrast factors apply to every channel,
/// then ImageNet mean and std per channel.
pub fn prepare_rgb_into(
    rgb: &[f32],
    h: usize,
    w: usize,
    size: usize,
    resize: Resize,
    augment: Option<(&Augment, &mut impl Rng)>,
    out: &mut [f32],
) {
    let area = size * size;
    for (plane, slot) in rgb.chunks(h * w).zip(out.chunks_mut(area)) {
        match resize {
            Resize::Bilinear => resize_bilinear_into(plane, h, w, size, size, slot),
            Resize::Pillow => resize_pillow_into(plane, (h, w), (size, size), false, slot),
        }
    }
    if let Some((augment, rng)) = augment {
        if rng.random::<f32>() < augment.flip {
            out.chunks_mut(size).for_each(|row| row.reverse());
        }
        if let Some(color) = &augment.color {
            jitter_rgb(out, &color.draw(rng));
        } else if augment.jitter > 0.0 {
            let mut factor = || 1.0 + augment.jitter * (2.0 * rng.random::<f32>() - 1.0);
            let (brightness, contrast) = (factor(), factor());
            let mean = out.iter().sum::<f32>() / out.len() as f32 * brightness;
            for v in out.iter_mut() {
                *v = (mean + (*v * brightness - mean) * contrast).clamp(0.0, 1.0);
            }
        }
    }
    for (c, channel) in out.chunks_mut(area).enumerate() {
        channel
            .iter_mut()
            .for_each(|v| *v = (*v - IMAGENET_MEAN[c]) / IMAGENET_STD[c]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn slice_indices_match_numpy() {
        // np.floor(np.linspace(0, 199, 10)).astype(int)
        assert_eq!(
            slice_indices(200, 10),
            vec![0, 22, 44, 66, 88, 110, 132, 154, 176, 199]
        );
        assert_eq!(slice_indices(5, 1), vec![0]);
        assert_eq!(slice_indices(3, 5), vec![0, 0, 1, 1, 2]);
    }

    #[test]
    fn bilinear_matches_torch_align_corners_false() {
        // torch.nn.functional.interpolate(torch.arange(16.).view(1,1,4,4), size=(2,2),
        // mode="bilinear", align_corners=False) -> [[2.5, 4.5], [10.5, 12.5]]
        let src: Vec<f32> = (0..16).map(|v| v as f32).collect();
        assert_eq!(
            resize_bilinear(&src, 4, 4, 2, 2),
            vec![2.5, 4.5, 10.5, 12.5]
        );
        // Upsampling [[0, 1], [2, 3]] to 4x4: first row [0, 0.25, 0.75, 1].
        let up = resize_bilinear(&[0.0, 1.0, 2.0, 3.0], 2, 2, 4, 4);
        assert_eq!(&up[..4], &[0.0, 0.25, 0.75, 1.0]);
        assert_eq!(&up[12..], &[2.0, 2.25, 2.75, 3.0]);
        // Non-square, non-integer scale: torch's output for arange(35).view(5, 7) -> (3, 4).
        let torch = [
            2.708333, 4.458333, 6.208333, 7.958333, 14.375, 16.125, 17.875, 19.625, 26.041666,
            27.791664, 29.541666, 31.291666,
        ];
        let src: Vec<f32> = (0..35).map(|v| v as f32).collect();
        for (a, b) in resize_bilinear(&src, 5, 7, 3, 4).iter().zip(torch) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn zscore_uses_the_unbiased_std() {
        let mut v = vec![1.0, 2.0, 3.0, 4.0];
        zscore(&mut v);
        let std = (5.0f32 / 3.0).sqrt();
        assert!((v[0] - (-1.5 / (std + ZSCORE_EPS))).abs() < 1e-6);
        assert!(v.iter().sum::<f32>().abs() < 1e-6);
    }

    #[test]
    fn volume_and_image_shapes_and_nan() {
        let volume = NpyArray {
            shape: vec![4, 6, 6],
            data: ArrayData::U8((0..144).map(|v| v as u8).collect()),
        };
        let out = prepare_volume(&volume, 3, 5).unwrap();
        assert_eq!(out.len(), 3 * 25);
        let image = NpyArray {
            shape: vec![6, 6],
            data: ArrayData::U8(vec![255; 36]),
        };
        let out = prepare_image(
            &image,
            4,
            ImageNorm::ImageNet,
            Resize::Bilinear,
            None::<(&Augment, &mut ChaCha8Rng)>,
        )
        .unwrap();
        assert_eq!(out.len(), 3 * 16);
        assert!((out[0] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
        let nan = NpyArray {
            shape: vec![2, 2],
            data: ArrayData::F32(vec![f32::NAN; 4]),
        };
        let err = prepare_image(
            &nan,
            4,
            ImageNorm::ImageNet,
            Resize::Bilinear,
            None::<(&Augment, &mut ChaCha8Rng)>,
        );
        assert_eq!(err, Err(PixelError::NotFinite));
    }

    #[test]
    fn rgb_jitter_as_torchvision_on_hand_worked_pixels() {
        // Two pixels, planes R, G, B: (0.8, 0.2, 0.2) and (0.1, 0.5, 0.9).
        let base = [0.8, 0.1, 0.2, 0.5, 0.2, 0.9];
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
        // A whole turn of hue changes nothing; saturation 0 gives each pixel's grey level.
        let mut rgb = base;
        jitter_rgb(&mut rgb, &[Adjust::Hue(1.0)]);
        assert!(close(&rgb, &base), "{rgb:?}");
        let mut rgb = base;
        jitter_rgb(&mut rgb, &[Adjust::Saturation(0.0)]);
        let grey = [
            0.299 * 0.8 + 0.587 * 0.2 + 0.114 * 0.2,
            0.299 * 0.1 + 0.587 * 0.5 + 0.114 * 0.9,
        ];
        assert!(
            close(
                &rgb,
                &[grey[0], grey[1], grey[0], grey[1], grey[0], grey[1]]
            ),
            "{rgb:?}"
        );
        // A third of a turn moves red to green; brightness 2 clamps at 1.
        let mut rgb = base;
        jitter_rgb(&mut rgb, &[Adjust::Hue(1.0 / 3.0), Adjust::Brightness(2.0)]);
        assert!(
            close(&rgb[..2], &[0.4, 1.0]) && close(&rgb[2..4], &[1.0, 0.2]),
            "{rgb:?}"
        );
    }

    #[test]
    fn augmentation_is_a_function_of_the_seed() {
        let image = NpyArray {
            shape: vec![8, 8],
            data: ArrayData::U8((0..64).map(|v| v as u8 * 3).collect()),
        };
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            prepare_image(
                &image,
                8,
                ImageNorm::ImageNet,
                Resize::Bilinear,
                Some((&Augment::default(), &mut rng)),
            )
            .unwrap()
        };
        assert_eq!(run(1), run(1));
        assert!((0..20).any(|s| run(s) != run(s + 1)));
    }
}
