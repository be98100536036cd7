//! Property-based robustness: thousands of random and mutated inputs (truncations, bit flips,
//! huge header fields, random text) fed to every loader and parser of user files. Each must
//! return a value or an error, never panic. Fixed seeds keep CI runs repeatable.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use srsnet::stream::stop::Stop;
use std::path::{Path, PathBuf};

/// One change to a file's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    /// Cut the file at this fraction of its length.
    Truncate(f64),
    /// Flip one bit at this fraction of the length.
    FlipBit(f64, u8),
    /// Write a huge little-endian u64 at this fraction of the length (header size fields,
    /// lengths, offsets).
    HugeField(f64, u64),
    /// Overwrite a run of bytes with random ones.
    Garbage(f64, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0.0..1.0f64).prop_map(Mutation::Truncate),
        (0.0..1.0f64, 0u8..8).prop_map(|(p, b)| Mutation::FlipBit(p, b)),
        (
            0.0..1.0f64,
            prop_oneof![Just(u64::MAX), Just(u64::MAX / 2), Just(1u64 << 40), any::<u64>()]
        )
            .prop_map(|(p, v)| Mutation::HugeField(p, v)),
        (0.0..1.0f64, proptest::collection::vec(any::<u8>(), 1..32)).prop_map(|(p, g)| Mutation::Garbage(p, g)),
    ]
}

/// Mutations biased to the start of the file, where the headers are.
fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(mutation(), 1..4)
}

fn apply(base: &[u8], muts: &[Mutation], header_bias: bool) -> Vec<u8> {
    let mut b = base.to_vec();
    for m in muts {
        let at = |p: f64, len: usize| {
            let p = if header_bias { p * p * p } else { p };
            ((p * len as f64) as usize).min(len.saturating_sub(1))
        };
        match m {
            Mutation::Truncate(p) => {
                let n = at(*p, b.len());
                b.truncate(n);
            }
            Mutation::FlipBit(p, bit) if !b.is_empty() => {
                let i = at(*p, b.len());
                b[i] ^= 1 << bit;
            }
            Mutation::HugeField(p, v) if b.len() >= 8 => {
                let i = at(*p, b.len() - 7);
                b[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            Mutation::Garbage(p, g) if !b.is_empty() => {
                let i = at(*p, b.len());
                for (k, &x) in g.iter().enumerate() {
                    if let Some(slot) = b.get_mut(i + k) {
                        *slot = x;
                    }
                }
            }
            _ => {}
        }
    }
    b
}

fn runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("srsnet-fuzz-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join("case")
}

/// Feeds `cases` mutations of `base` to `load`, which must not panic.
fn fuzz_file(name: &str, base: &[u8], cases: u32, load: impl Fn(&Path)) {
    let path = scratch(name);
    runner(cases)
        .run(&(mutations(), any::<bool>()), |(muts, bias)| {
            std::fs::write(&path, apply(base, &muts, bias)).unwrap();
            load(&path);
            Ok(())
        })
        .unwrap();
}

#[test]
fn mutated_weights_files_are_errors_not_panics() {
    let base = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/srsnet-lite.safetensors")).unwrap();
    fuzz_file("weights", &base, 1000, |p| {
        if let Ok(file) = srsnet::model::weights_file::WeightsFile::open(p) {
            // A file that opens must also load (or refuse with an error).
            let _ = file.load_model(&candle_core::Device::Cpu, candle_core::DType::F32, true);
        }
    });
}

#[test]
fn mutated_images_are_errors_not_panics() {
    let dir = scratch("images-src");
    let mut img = image::GrayImage::new(23, 17);
    for (i, p) in img.pixels_mut().enumerate() {
        p.0[0] = (i * 37 % 251) as u8;
    }
    for ext in ["png", "bmp", "tiff", "jpg"] {
        let src = dir.with_extension(ext);
        img.save(&src).unwrap();
        let base = std::fs::read(&src).unwrap();
        fuzz_file(&format!("image-{ext}"), &base, 1500, |p| {
            let _ = srsnet::image_io::read_frame(p, 1);
            let _ = srsnet::image_io::read_frame(p, 3);
        });
    }
}

#[test]
fn calibration_profiles_and_raw_recordings_survive_mutation() {
    let profile = srsnet::calibration::Profile::identity(16, 12);
    let src = scratch("cal-src");
    profile.save(&src).unwrap();
    let base = std::fs::read(&src).unwrap();
    fuzz_file("calibration", &base, 1000, |p| {
        let _ = srsnet::calibration::Profile::load(p);
    });
    // Raw recordings: any length, any claimed size and format.
    let path = scratch("raw");
    runner(1000)
        .run(
            &(0usize..5000, 1usize..200, 1usize..200, any::<bool>(), any::<bool>()),
            |(len, w, h, y16, looping)| {
                std::fs::write(&path, vec![7u8; len]).unwrap();
                let format = if y16 {
                    srsnet::stream::sources::raw::RawFormat::Y16
                } else {
                    srsnet::stream::sources::raw::RawFormat::Y8
                };
                use srsnet::stream::sources::FrameSource;
                if let Ok(mut src) = srsnet::stream::sources::raw::RawSource::open(&path, w, h, format, None, looping) {
                    let stop = Stop::new();
                    for _ in 0..8 {
                        match src.next_frame(&stop) {
                            Some(Ok(f)) => prop_assert_eq!(f.pixels.len(), w * h),
                            Some(Err(_)) => {}
                            None => break,
                        }
                    }
                }
                Ok(())
            },
        )
        .unwrap();
}

proptest! {
    #![proptest_config(Config { cases: 2000, failure_persistence: None, ..Config::default() })]

    #[test]
    fn centroid_csv_parser_never_panics(text in "(frame,x,y\n)?([a-z0-9.,\\-\n ]|nan|inf|1e999){0,200}") {
        let _ = srsnet::dataset::sequence::parse_centroids(&text);
    }

    #[test]
    fn valid_centroid_lines_round_trip(rows in proptest::collection::vec(("[a-z]{1,8}\\.png", 0.0..5000.0f64, 0.0..5000.0f64), 0..20)) {
        let mut text = String::from("frame,x,y\n");
        for (n, x, y) in &rows {
            text.push_str(&format!("{n},{x},{y}\n"));
        }
        let parsed = srsnet::dataset::sequence::parse_centroids(&text).unwrap();
        prop_assert_eq!(parsed.values().map(|(_, p)| p.len()).sum::<usize>(), rows.len());
    }

    #[test]
    fn value_parsers_never_panic(s in "\\PC{0,40}") {
        let _ = srsnet::cli::parse_size(&s);
        let _ = srsnet::cli::parse_threshold(&s);
        let _ = srsnet::stream::postprocess::parse_confirm_window(&s);
        let _ = s.parse::<srsnet::stream::sources::SourceSpec>();
        let _ = s.parse::<srsnet::device::DeviceSpec>();
    }
}
