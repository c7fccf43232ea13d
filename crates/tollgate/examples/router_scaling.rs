//! Measures API lookup time as the number of APIs in an environment grows.
//!
//! `cargo run --release -p tollgate --example router_scaling`
//!
//! For each size it builds one router with that many plain-prefix, exact, priority-prefix
//! and `{var}` APIs, then times lookups of paths that hit each kind and one that matches
//! nothing. The lookup cost should stay roughly flat from 10 to 2,000 APIs, because the
//! router uses a hash map and byte tries rather than a list scan.

use std::hint::black_box;
use std::time::Instant;

use http::Method;
use tollgate::config::ApiMethod;
use tollgate::route::{PathPattern, RouterBuilder};

const LOOKUPS: u32 = 200_000;

fn main() {
    let sizes = [10usize, 100, 1000, 2000];
    println!(
        "{:>6}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}",
        "APIs", "exact ns", "priority ns", "regex ns", "prefix ns", "no match ns"
    );
    let mut first: Option<[f64; 5]> = None;
    for size in sizes {
        let per_kind = size / 4;
        let mut builder = RouterBuilder::default();
        for index in 0..per_kind {
            for path in [
                format!("=/exact{index}/item"),
                format!("^~/priority{index}/"),
                format!("/regex{index}/{{id}}/detail"),
                format!("/prefix{index}/"),
            ] {
                let pattern = PathPattern::parse(&path).expect("valid path");
                builder
                    .insert(&pattern, ApiMethod::Get, index)
                    .expect("no duplicates");
            }
        }
        let router = builder.build();
        let last = per_kind - 1;
        let paths = [
            format!("/exact{last}/item"),
            format!("/priority{last}/a/b"),
            format!("/regex{last}/42/detail"),
            format!("/prefix{last}/a/b/c"),
            "/nothing/here".to_string(),
        ];
        let mut times = [0f64; 5];
        for (slot, path) in paths.iter().enumerate() {
            let started = Instant::now();
            for _ in 0..LOOKUPS {
                let _ = black_box(router.find(black_box(path), &Method::GET));
            }
            times[slot] = started.elapsed().as_nanos() as f64 / f64::from(LOOKUPS);
        }
        println!(
            "{size:>6}  {:>12.0}  {:>12.0}  {:>12.0}  {:>12.0}  {:>12.0}",
            times[0], times[1], times[2], times[3], times[4]
        );
        let baseline = *first.get_or_insert(times);
        if size == *sizes.last().expect("sizes") {
            let ratios: Vec<String> = times
                .iter()
                .zip(baseline)
                .map(|(time, base)| format!("{:.1}", time / base))
                .collect();
            println!("{} APIs against {}: {}", size, sizes[0], ratios.join(" / "));
        }
    }
}
