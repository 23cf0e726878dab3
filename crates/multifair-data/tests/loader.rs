//! The loader: deterministic batches whatever the workers, and load-time errors that name the
//! file and key.

use std::path::{Path, PathBuf};

use multifair_data::loader::{Cells, Loader, LoaderConfig, ModalityBatch};
use multifair_data::preprocess::Augment;
use multifair_data::synthetic::{NOTE_WORDS, SyntheticConfig, generate};
use multifair_data::tokenizer::WordPiece;
use multifair_data::{BadFilePolicy, DatasetIndex, DatasetKind, Split};

fn generated(kind: DatasetKind, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("multifair-loader-{}-{name}", std::process::id()));
    let mut config = SyntheticConfig::new(kind, 5);
    (
        config.n_train,
        config.n_val,
        config.n_test,
        config.size,
        config.depth,
    ) = (37, 5, 6, 12, 6);
    generate(&config, &dir).unwrap();
    dir
}

fn train_loader(dir: &Path, kind: DatasetKind, workers: usize, seed: u64) -> Loader {
    let index = DatasetIndex::open(kind, dir, BadFilePolicy::Fail).unwrap();
    let mut config = LoaderConfig::new(8, 10, 4);
    (config.shuffle, config.seed, config.workers, config.augment) =
        (true, seed, workers, Some(Augment::default()));
    config.max_tokens = 48;
    let tokenizer = (kind == DatasetKind::FairVlmed).then(|| WordPiece::builtin(&NOTE_WORDS));
    Loader::new(
        &index.schema,
        index.split(Split::Train).unwrap(),
        config,
        tokenizer,
    )
    .unwrap()
}

#[test]
fn same_seed_same_batches_whatever_the_workers() {
    let dir = generated(DatasetKind::FairVision, "fv");
    let collect = |workers, seed, epoch| {
        train_loader(&dir, DatasetKind::FairVision, workers, seed)
            .epoch(epoch)
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };
    let first = collect(2, 1, 0);
    assert_eq!(first.len(), 5); // 37 samples in batches of 8
    assert_eq!(first, collect(2, 1, 0));
    assert_eq!(first, collect(0, 1, 0));
    assert_eq!(first, collect(3, 1, 0));
    assert_ne!(first, collect(2, 2, 0));
    assert_ne!(first, collect(2, 1, 1));
    // Every sample once per epoch; shapes as configured.
    let mut seen: Vec<usize> = first.iter().flat_map(|b| b.indices.clone()).collect();
    seen.sort();
    assert_eq!(seen, (0..37).collect::<Vec<_>>());
    let batch = &first[0];
    assert_eq!(batch.modalities[0].0, "slo");
    match &batch.modalities[1].1 {
        ModalityBatch::Float { shape, values } => {
            assert_eq!(shape, &vec![8, 4, 10, 10]);
            assert_eq!(values.len(), 8 * 4 * 100);
        }
        other => panic!("oct batch {other:?}"),
    }
    assert_eq!(batch.codes.len(), 4);
    let tensor = batch.modalities[1]
        .1
        .float_tensor::<4>(&burn::tensor::Device::flex())
        .unwrap();
    assert_eq!(tensor.dims(), [8, 4, 10, 10]);
    assert_eq!(batch.available, vec![vec![true; 8]; 2]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn notes_are_tokenized() {
    let dir = generated(DatasetKind::FairVlmed, "vl");
    let loader = train_loader(&dir, DatasetKind::FairVlmed, 1, 0);
    let batch = loader.epoch(0).next().unwrap().unwrap();
    match &batch.modalities[1].1 {
        ModalityBatch::Tokens { shape, ids, mask } => {
            assert_eq!(shape, &[8, 48]);
            assert_eq!(ids[0], 2); // [CLS]
            assert!(!ids.contains(&1), "no [UNK] in synthetic notes");
            assert!(mask.iter().sum::<u32>() > 8 * 20);
            let (ids, _) = batch.modalities[1]
                .1
                .token_tensors(&burn::tensor::Device::flex())
                .unwrap();
            assert_eq!(ids.dims(), [8, 48]);
        }
        other => panic!("notes batch {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nan_pixels_and_short_members_fail_at_load_naming_file_and_key() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad");
    let root = std::env::temp_dir().join(format!("multifair-loader-bad-{}", std::process::id()));
    for split in ["train", "val", "test"] {
        std::fs::create_dir_all(root.join(split)).unwrap();
        std::fs::copy(fixtures.join("good.npz"), root.join(split).join("good.npz")).unwrap();
    }
    for (file, key, message) in [
        (
            "nan_pixels.npz",
            "slo_fundus",
            "contains NaN or infinite values",
        ),
        (
            "short_member.npz",
            "oct_bscans",
            "needs 144 data bytes; the array has 136",
        ),
    ] {
        let path = root.join("train").join(file);
        std::fs::copy(fixtures.join(file), &path).unwrap();
        let index =
            DatasetIndex::open(DatasetKind::FairVision, &root, BadFilePolicy::Fail).unwrap();
        let split = index.split(Split::Train).unwrap();
        let position = split.samples.iter().position(|s| s.path == path).unwrap();
        let loader = Loader::new(&index.schema, split, LoaderConfig::new(1, 6, 2), None).unwrap();
        let err = loader.load(position, 0).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(
            err.contains(&format!("key '{key}'")) && err.contains(message),
            "{err}"
        );
        // In an epoch the error ends the iteration.
        let results: Vec<_> = loader.epoch(0).collect();
        assert!(results.last().unwrap().is_err());
        std::fs::remove_file(&path).unwrap();
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn balanced_sampling_draws_every_group_about_equally_and_no_unknowns() {
    // Race in the generator follows the real marginals (about 8/15/77 %), so plain order is
    // far from balanced; balanced draws over a larger split come out near 1/3 each.
    let dir = std::env::temp_dir().join(format!("multifair-loader-{}-bal", std::process::id()));
    let mut config = SyntheticConfig::new(DatasetKind::FairVision, 9);
    (
        config.n_train,
        config.n_val,
        config.n_test,
        config.size,
        config.depth,
    ) = (600, 5, 6, 8, 4);
    generate(&config, &dir).unwrap();
    let index = DatasetIndex::open(DatasetKind::FairVision, &dir, BadFilePolicy::Fail).unwrap();
    let split = index.split(Split::Train).unwrap();
    let mut lc = LoaderConfig::new(8, 8, 2);
    (lc.shuffle, lc.seed, lc.balance) = (true, 3, Some((0, Cells::Group))); // race
    let loader = Loader::new(&index.schema, split, lc, None).unwrap();
    let order = loader.order(0);
    assert_eq!(order.len(), split.samples.len());
    assert_eq!(order, loader.order(0), "same seed and epoch, same draws");
    assert_ne!(order, loader.order(1));
    let mut counts = [0usize; 3];
    for &i in &order {
        let code = split.samples[i].codes[0];
        assert!(code >= 0, "an unknown-race sample was drawn");
        counts[code as usize] += 1;
    }
    for c in counts {
        let share = c as f64 / order.len() as f64;
        assert!((share - 1.0 / 3.0).abs() < 0.07, "{counts:?}");
    }
    // MEDFAIR's other cells: group x label (six cells), then the label alone.
    for (cells, n) in [(Cells::Balanced, 6), (Cells::Class, 2)] {
        let mut lc = LoaderConfig::new(8, 8, 2);
        (lc.shuffle, lc.seed, lc.balance) = (true, 3, Some((0, cells)));
        let order = Loader::new(&index.schema, split, lc, None)
            .unwrap()
            .order(0);
        let mut counts = std::collections::BTreeMap::<(i64, u8), usize>::new();
        for &i in &order {
            let s = &split.samples[i];
            assert!(s.codes[0] >= 0, "an unknown-race sample was drawn");
            let cell = match cells {
                Cells::Balanced => (s.codes[0], s.label),
                _ => (0, s.label),
            };
            *counts.entry(cell).or_default() += 1;
        }
        assert_eq!(counts.len(), n, "{cells:?}: {counts:?}");
        for c in counts.values() {
            let share = *c as f64 / order.len() as f64;
            assert!(
                (share - 1.0 / n as f64).abs() < 0.06,
                "{cells:?}: {counts:?}"
            );
        }
    }
}
